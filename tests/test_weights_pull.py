"""`gemfuse pull` from a local GGUF and a local folder: resumable copies, the config entry, then `ask`."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gemfuse.errors import ConfigError
from gemfuse.files import resolve_path
from gemfuse.models.builtin import SMOLLM2
from gemfuse.weights.pull import PullError, models_dir, pull, resumable_copy


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMFUSE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.heavy
def test_pull_a_gguf_registers_it_and_ask_answers(tmp_path, cache, isolated_config):
    isolated_config.write_text('# my models\ndefault_model = "smollm2-135m"  # keep this comment\n')
    source = resolve_path(SMOLLM2)
    pulled = pull(str(source), name="tiny-chat")
    assert pulled.backend == "llamacpp" and pulled.path == models_dir() / "tiny-chat" / source.name
    assert digest(pulled.path) == digest(source) and pulled.copied == source.stat().st_size
    text = isolated_config.read_text()
    assert "# keep this comment" in text and "[models.tiny-chat]" in text and 'backend = "llamacpp"' in text
    again = pull(str(source), name="tiny-chat", force=True)
    assert again.copied == 0  # already there, whole
    with pytest.raises(ConfigError, match="exists already"):
        pull(str(source), name="tiny-chat")
    with pytest.raises(ConfigError, match="built-in"):
        pull(str(source), name="smollm2-135m")
    env = {**os.environ, "GEMFUSE_CONFIG": str(isolated_config), "GEMFUSE_CACHE_DIR": str(cache)}
    question = "What is the capital of France? Answer in one sentence."
    answer = subprocess.run([sys.executable, "-m", "gemfuse.cli", "ask", question, "-m", "tiny-chat",
                             "--max-tokens", "24", "--temperature", "0"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert answer.returncode == 0, answer.stderr
    assert "Paris" in answer.stdout


def test_an_interrupted_copy_resumes_and_a_foreign_part_restarts(tmp_path):
    source = resolve_path(SMOLLM2)
    size = source.stat().st_size
    target = tmp_path / "out" / source.name
    target.parent.mkdir()
    part = target.with_name(target.name + ".part")
    half = size // 2
    with open(source, "rb") as reader:
        part.write_bytes(reader.read(half))  # what a killed copy leaves behind
    seen = []
    assert resumable_copy(source, target, seen.append) == size - half
    assert digest(target) == digest(source) and not part.exists() and seen[0] > half
    part.write_bytes(b"\0" * half)  # bytes that are not this file's: the copy starts over
    target.unlink()
    assert resumable_copy(source, target) == size and digest(target) == digest(source)


def test_pull_a_model_folder_is_a_transformers_model(tmp_path, cache, isolated_config, tiny_model):
    folder = tiny_model("gemma3")
    pulled = pull(str(folder), name="tiny-gemma")
    assert pulled.backend == "transformers" and (pulled.path / "config.json").is_file()
    assert sorted(p.name for p in pulled.path.iterdir()) == sorted(p.name for p in folder.iterdir())
    from gemfuse.config import load_config

    spec = load_config().specs["tiny-gemma"]
    assert spec.backend == "transformers" and Path(spec.path) == pulled.path
    only = pull(str(folder), name="only-config", include=["config.json"])
    assert [p.name for p in only.path.iterdir()] == ["config.json"]


def test_pull_errors_name_the_problem(tmp_path, cache):
    with pytest.raises(PullError, match="no such file or folder"):
        pull(str(tmp_path / "missing"))
    (tmp_path / "two").mkdir()
    for quant in ("Q4_K_M", "Q8_0"):
        (tmp_path / "two" / f"m-{quant}.gguf").write_bytes(b"GGUF")
    with pytest.raises(PullError, match="--gguf"):
        pull(str(tmp_path / "two"), name="two")
    with pytest.raises(PullError, match="no GGUF for Q2_K"):
        pull(str(tmp_path / "two"), name="two", gguf="Q2_K")
    picked = pull(str(tmp_path / "two"), name="two", gguf="q8_0")
    assert picked.path.name == "m-Q8_0.gguf" and not (picked.path.parent / "m-Q4_K_M.gguf").exists()


def test_hub_failures_become_clear_messages():
    from gemfuse.weights.pull import hub_error

    class GatedRepoError(Exception):
        pass

    class RepositoryNotFoundError(Exception):
        pass

    assert "accept its licence" in str(hub_error("google/gemma-3-27b-it", GatedRepoError("401")))
    assert "HF_TOKEN" in str(hub_error("me/private", RepositoryNotFoundError("404")))
    offline = pull.__globals__["download"]
    with pytest.raises(PullError, match="cannot be reached|download failed"):
        offline("google/gemma-3-270m", None, None, None)  # HF_HUB_OFFLINE=1 in the test run
