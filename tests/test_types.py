"""The type checker is clean (mypy, configured in pyproject.toml), so CI fails on a type error as on a test."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_is_clean():
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(ROOT / ".test-cache" / "mypy")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Success" in done.stdout
