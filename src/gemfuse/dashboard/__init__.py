"""What the page's dashboard reads: fine-tune run folders, eval reports, capture folders and distil runs, found
under the folders the server was given, read and never changed."""

from .evals import eval_detail, eval_summaries
from .folders import Folders, OutsideFolders
from .loop import CaptureCounts, loop_view
from .runs import run_detail, run_summaries

__all__ = ["CaptureCounts", "Folders", "OutsideFolders", "eval_detail", "eval_summaries", "loop_view", "run_detail",
           "run_summaries"]
