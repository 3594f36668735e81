"""The terminal shows gemfuse's own output; the libraries' warnings, logs and progress bars go to a log file,
and `--verbose` brings them back."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.heavy  # processes: the full suite only

PROBE = """
import logging, sys, warnings
from gemfuse.quiet import quiet_libraries
path = quiet_libraries(verbose={verbose})
logging.getLogger("torchao").warning("Failed to load _C_mxfp8.so")
logging.getLogger("transformers.modeling_utils").warning("a transformers warning")
warnings.warn("some FutureWarning from a library", FutureWarning)
from tqdm import tqdm
for _ in tqdm(range(3), desc="Loading weights"):
    pass
print("our own result")
print(path)
"""


def run_probe(tmp_path, verbose: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "TORCH_LOGS", "GEMFUSE_VERBOSE")}
    env["GEMFUSE_CACHE_DIR"] = str(tmp_path / "cache")
    return subprocess.run([sys.executable, "-c", PROBE.format(verbose=verbose)], capture_output=True, text=True,
                          env=env, timeout=60)


def test_library_chatter_goes_to_the_log_file(tmp_path):
    done = run_probe(tmp_path, verbose=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines()[0] == "our own result"
    log = (tmp_path / "cache" / "logs" / "libraries.log").read_text()
    assert "Failed to load" in log and "a transformers warning" in log and "FutureWarning" in log


def test_verbose_shows_it(tmp_path):
    done = run_probe(tmp_path, verbose=True)
    assert "Failed to load" in done.stderr and "FutureWarning" in done.stderr and "Loading weights" in done.stderr


def test_a_real_transformers_answer_prints_no_library_lines(tmp_path, tiny_model):
    config = tmp_path / "config.toml"
    config.write_text(f'[models.tiny]\nbackend = "transformers"\npath = "{tiny_model("gemma3")}"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "TORCH_LOGS", "GEMFUSE_VERBOSE")}
    env.update(GEMFUSE_CONFIG=str(config), GEMFUSE_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-m", "gemfuse.cli", "ask", "-m", "tiny", "Hi", "--max-tokens", "3"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("[tiny: "), done.stderr  # only our own summary line
