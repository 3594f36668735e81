"""`gemfuse serve --workers N`: N processes share one port for remote models and their fusions; in-process
models are refused (each worker would load its own copy)."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gemfuse.testing.upstream import create_app, free_port, serve_in_thread, wait_until_up

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
def remote_config(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", "sk-test")
    with serve_in_thread(create_app()) as base_url:
        config = tmp_path / "remote.toml"
        config.write_text("".join(
            f'[models.{name}]\nbackend = "openai"\nbase_url = "{base_url}"\nmodel = "slow-50"\n'
            f'api_key_env = "UPSTREAM_KEY"\n\n' for name in ("r1", "r2", "r3"))
            + '[presets.remote]\npool = ["r1", "r2", "r3"]\nmode = "vote"\n')
        yield config


def test_two_workers_serve_remote_fusions_and_refuse_local_models(remote_config):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gemfuse.cli", "serve", "--port", str(port), "--workers", "2",
                             "--config", str(remote_config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", proc)
        assert len(children(proc.pid)) >= 2  # the workers (and uvicorn's own helper, if any)
        listed = {m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]}
        assert {"r1", "fusion/remote"} <= listed and not listed & {"smollm2-135m", "fusion/default"}

        async def ask_many() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                return await asyncio.gather(*(client.post("/v1/chat/completions", json={
                    "model": "fusion/remote", "messages": [{"role": "user", "content": f"q{i}"}]})
                    for i in range(16)))

        replies = asyncio.run(ask_many())
        assert [r.status_code for r in replies] == [200] * 16
        assert all(r.json()["choices"][0]["message"]["content"] == f"echo: q{i}" for i, r in enumerate(replies))
        local = httpx.post(f"{url}/v1/chat/completions", json={"model": "smollm2-135m",
                                                               "messages": [{"role": "user", "content": "hi"}]})
        assert local.status_code == 404 and "serve local models from a one-worker" in local.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_workers_refuse_a_configured_local_model(tmp_path):
    config = tmp_path / "local.toml"
    config.write_text('[models.mine]\nbackend = "llamacpp"\npath = "/models/x.gguf"\n')
    done = subprocess.run([sys.executable, "-m", "gemfuse.cli", "serve", "--workers", "2", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, env={**os.environ})
    assert done.returncode == 1 and "mine run in-process" in done.stderr and "one-worker" in done.stderr
