"""Answers kept as training rows: what a server, `gemfuse ask` or `fuse()` answered (capture), in gemfuse's JSONL
format with its provenance, for distillation into a model of your own."""

from .provenance import agreement, fusion_meta, model_meta
from .writer import CaptureWriter, Scrubber, capture_files, repair_tail, training_row

__all__ = ["CaptureWriter", "Scrubber", "agreement", "capture_files", "fusion_meta", "model_meta", "repair_tail",
           "training_row"]
