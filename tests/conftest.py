import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption("--fast", action="store_true",
                     help="the inner loop: only tests that load no model and start no subprocess (make test-fast)")


HEAVY_FIXTURES = {"tiny_model", "upstream_process"}  # fixtures that build models or start processes


def pytest_collection_modifyitems(config, items):
    """A test is heavy if marked so (or slow) or if it uses a heavy fixture; --fast leaves heavy tests out."""
    kept, dropped = [], []
    for item in items:
        heavy = (item.get_closest_marker("heavy") or item.get_closest_marker("slow")
                 or HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())))
        if heavy:
            item.add_marker(pytest.mark.heavy)
        (dropped if heavy and config.getoption("--fast") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True)
def fast_lane_guard(request, monkeypatch):
    """In the fast lane, starting a process or loading a model fails the test: it belongs in the heavy lane."""
    if not request.config.getoption("--fast"):
        return
    import subprocess

    def refuse(what):
        def fail(*args, **kwargs):
            raise AssertionError(f"{request.node.nodeid} {what}: mark it @pytest.mark.heavy (or the module with "
                                 "pytestmark = pytest.mark.heavy) so the fast lane leaves it out")
        return fail

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("starts a subprocess"))
    from gemfuse.models.llamacpp import LlamaCppModel
    from gemfuse.models.transformers import TransformersModel

    monkeypatch.setattr(LlamaCppModel, "load", refuse("loads a llama.cpp model"))
    monkeypatch.setattr(TransformersModel, "load", refuse("loads a transformers model"))


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # one of several test processes: the cores shared out, or they fight
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // workers)))  # read when torch loads
    # Converted copies of the built-in models are slow to make: keep them between runs, apart from the user's.
    os.environ.setdefault("GEMFUSE_CACHE_DIR", str(ROOT / ".test-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@pytest.fixture(autouse=True)
def isolated_config(tmp_path, monkeypatch):
    """No test reads or writes the user's own config."""
    path = tmp_path / "gemfuse.toml"
    monkeypatch.setenv("GEMFUSE_CONFIG", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Build each tiny family once per session: tiny_model("gemma3n") -> folder."""
    from gemfuse.testing import build_tiny_model

    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_model(family, tmp_path_factory.mktemp(f"tiny-{family}"))
        return built[family]

    return get


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    from gemfuse.testing.media import write_png, write_wav

    folder = tmp_path_factory.mktemp("media")
    return {"png": write_png(folder / "red.png"), "wav": write_wav(folder / "tone.wav"),
            "wav44k": write_wav(folder / "tone44k.wav", rate=44_100, seconds=1.0), "folder": folder}


@pytest.fixture(scope="module")
def upstream():
    """A fault-injecting OpenAI-compatible server on 127.0.0.1 (see gemfuse.testing.upstream)."""
    from gemfuse.testing.upstream import create_app, serve_in_thread

    app = create_app()
    with serve_in_thread(app) as base_url:
        yield base_url, app.state.calls


# A small chat dataset the tuner tests train on (tiny models learn it in a few steps).
QUESTIONS = ["What is two plus two?", "Name the capital of France, please.", "Say yes.",
             "Describe a red square on a white background in a few words.", "Is this a test?",
             "Transcribe this: hello world.", "What is the capital of Italy?", "Answer with one word: no."]
ANSWERS = ["Four.", "Paris is the capital of France.", "Yes.", "A red square sits on white.", "Yes, a test.",
           "Hello world.", "Rome.", "No."]


@pytest.fixture
def text_data(tmp_path):
    import json

    path = tmp_path / "train.jsonl"
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in zip(QUESTIONS, ANSWERS, strict=True)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
