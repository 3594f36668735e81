"""Evaluation: does a fine-tune beat its base, does fusion beat the best single model, at what cost?
`gemfuse.evaluate()` runs one on the configured models; `run` / `arun` here take any ModelRegistry."""

from typing import TYPE_CHECKING

from .._lazy import lazy_face

lazy_face(__name__, {
    "EvalItem": ".datasets", "EvalSet": ".datasets", "load_eval_set": ".datasets", "Progress": ".harness",
    "arun": ".harness", "run": ".harness", "Report": ".render", "EvalSettings": ".settings",
})

if TYPE_CHECKING:
    from .datasets import EvalItem, EvalSet, load_eval_set
    from .harness import Progress, arun, run
    from .render import Report
    from .settings import EvalSettings

__all__ = ["EvalItem", "EvalSet", "EvalSettings", "Progress", "Report", "arun", "load_eval_set", "run"]
