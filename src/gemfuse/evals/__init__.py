"""Evaluation: does a fine-tune beat its base, does fusion beat the best single model, at what cost?"""

from .datasets import EvalItem, EvalSet, load_eval_set
from .harness import EvalSettings, Progress, arun, run
from .report import Report

__all__ = ["EvalItem", "EvalSet", "EvalSettings", "Progress", "Report", "arun", "load_eval_set", "run"]
