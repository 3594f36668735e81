"""The fine-tuning benchmark reads a run's metrics as the trainer writes them: skipped steps count for time and
tokens, validation lines for neither, losses only where logged."""

import importlib.util
import json
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "tune_throughput.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("tune_throughput", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_metrics_with_skipped_and_validation_lines():
    lines = [{"step": 1, "loss": 5.0, "grad_norm": 1.0, "tokens": 10, "seconds": 1.0},
             {"step": 2, "skipped": "loss nan", "tokens": 20, "seconds": 2.0},
             {"step": 2, "val_loss": 4.0},
             {"step": 3, "loss": 3.0, "grad_norm": 1.0, "tokens": 30, "seconds": 3.0}]
    steps, losses = _benchmark().read_metrics("".join(json.dumps(m) + "\n" for m in lines) + "\n")
    assert [m["step"] for m in steps] == [1, 2, 3] and losses == [5.0, 3.0]
