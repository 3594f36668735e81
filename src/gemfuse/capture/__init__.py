"""Answers kept as training rows: what a server, `gemfuse ask` or `fuse()` answered (capture), in gemfuse's JSONL
format with its provenance, for distillation into a model of your own."""

from typing import TYPE_CHECKING

from .._lazy import lazy_face

lazy_face(__name__, {
    "agreement": ".provenance", "fusion_meta": ".provenance", "model_meta": ".provenance",
    "CaptureWriter": ".writer", "Scrubber": ".writer", "capture_files": ".writer", "repair_tail": ".writer",
    "training_row": ".writer", "fusion_name": ".keep", "keep_fusion": ".keep", "keep_model": ".keep",
})

if TYPE_CHECKING:
    from .keep import fusion_name, keep_fusion, keep_model
    from .provenance import agreement, fusion_meta, model_meta
    from .writer import CaptureWriter, Scrubber, capture_files, repair_tail, training_row

__all__ = ["CaptureWriter", "Scrubber", "agreement", "capture_files", "fusion_meta", "fusion_name", "keep_fusion",
           "keep_model", "model_meta", "repair_tail", "training_row"]
