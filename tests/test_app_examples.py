"""The docs' app examples (examples/apps/, shown on the "Use gemfuse from your app" page) run as users run them:
each script against a real server on 127.0.0.1, on a built-in model and on a fusion."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gemfuse.registry import Registry
from gemfuse.serve.app import create_app
from gemfuse.testing.upstream import serve_in_thread

pytestmark = pytest.mark.heavy

APPS = sorted((Path(__file__).resolve().parent.parent / "examples" / "apps").glob("*.py"))


@pytest.fixture(scope="module")
def base_url():
    with serve_in_thread(create_app(Registry.load())) as url:
        yield url


def test_every_app_example_is_on_the_page():
    page = (Path(__file__).resolve().parent.parent / "docs" / "apps.md").read_text()
    assert APPS and all(f"examples/apps/{app.name}" in page for app in APPS)


@pytest.mark.parametrize("model", ["smollm2-135m", "fusion/default"])
@pytest.mark.parametrize("app", APPS, ids=lambda p: p.stem)
def test_the_app_example_runs(base_url, app, model):
    done = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GEMFUSE_URL": base_url, "GEMFUSE_MODEL": model})
    assert done.returncode == 0, done.stderr[-2000:]
    expected = {"openai_client": ["parsed: name=", "call: get_weather", "answer:"],
                "langchain_app": ["'name': 'get_weather'", "structured: name="],
                "agents_sdk": ["tool called: get_weather", "final:"]}[app.stem]
    assert all(text in done.stdout for text in expected), done.stdout
