"""The terminal shows gemfuse's own progress and results. What the libraries underneath say (loaders' warnings,
deprecation notices, their progress bars) goes to a log file instead; `gemfuse --verbose` (or
GEMFUSE_VERBOSE=1) shows it all. Only the command line calls this: a Python user's logging is left alone."""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path
from typing import Any

from .paths import cache_dir

VERBOSE_ENV = "GEMFUSE_VERBOSE"
LIBRARIES = ("torch", "torchao", "transformers", "accelerate", "peft", "huggingface_hub", "datasets", "timm",
             "bitsandbytes", "PIL", "matplotlib", "urllib3", "filelock", "jupytext", "py.warnings", "llama_cpp",
             "gemfuse.patches")  # the last: a patch that stepped aside for a library that changed
_state: dict[str, Any] = {"quiet": False, "llama_callback": None}
# Set before the libraries are imported (they read them then); a value the user set wins.
QUIET_ENV = {
    "TORCH_LOGS": "-torch",  # torch's own loggers at ERROR (it resets their levels when it is imported)
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",  # transformers' and datasets' loading bars; gemfuse draws its own
}


def log_file() -> Path:
    return cache_dir() / "logs" / "libraries.log"


def quiet_libraries(verbose: bool = False) -> Path | None:
    """Route library chatter to the log file (returned), or leave everything on the terminal when verbose."""
    if verbose or os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
        os.environ[VERBOSE_ENV] = "1"  # subprocesses we start (the GGUF converter) inherit the choice
        return None
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    path = log_file()
    handler: logging.Handler
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=1, encoding="utf-8",
                                                       delay=True)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    except OSError:  # an unwritable cache: the chatter is dropped rather than shown
        handler = logging.NullHandler()
    for name in LIBRARIES:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
    logging.captureWarnings(True)  # warnings.warn from libraries -> the py.warnings logger -> the file
    _state["quiet"] = True
    return path if isinstance(handler, logging.handlers.RotatingFileHandler) else None


def quiet_llama_cpp() -> None:
    """llama.cpp prints some loader lines even with verbose=False (its KV cache notes); when the command line
    is quiet, send them to the log file too. Called before a model is loaded."""
    if not _state["quiet"] or _state["llama_callback"] is not None:
        return
    import ctypes

    import llama_cpp

    log = logging.getLogger("llama_cpp")

    def forward(level: int, text: bytes, user_data) -> None:
        log.info(text.decode("utf-8", errors="replace").rstrip())

    callback = llama_cpp.llama_log_callback(forward)
    _state["llama_callback"] = callback  # kept alive: C holds only the pointer
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
