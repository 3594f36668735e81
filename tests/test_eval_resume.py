"""Kill an eval midway (SIGKILL), run it again: it completes, no request is answered twice by the upstream, and
the report equals an uninterrupted run's."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from gemfuse.testing.upstream import create_app, serve_in_thread

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only

HELD_AFTER = 25


def config_for(base_url: str) -> str:
    return "".join(f"""
[models.{name}]
backend = "openai"
base_url = "{base_url}"
model = "{behaviour}"
price = {{ input = 1.0, output = 2.0 }}
""" for name, behaviour in (("a", "slow-20"), ("b", "slow-40"), ("j", "judge-10")))


def command(tmp_path, cache, out):
    return [sys.executable, "-m", "gemfuse.cli", "eval", "builtin:math", "--n", "24", "--models", "a,b", "--pool", "a,b",
            "--judge", "j", "--systems", "members,vote,best-of", "--cache", str(cache), "--out", str(out),
            "--concurrency", "8", "-c", str(tmp_path / "config.toml")]


def cached_calls(path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def comparable(report_path):
    data = json.loads(report_path.read_text())
    data.pop("calls")
    for system in data["systems"]:  # measured times differ between two runs; everything else must not
        system.pop("latency_p50_s"), system.pop("latency_p95_s")
    return data


def test_killed_eval_resumes_without_paying_twice(tmp_path):
    app = create_app()
    env = {**os.environ, "CI": "true"}
    with serve_in_thread(app) as base_url:
        (tmp_path / "config.toml").write_text(config_for(base_url))
        app.state.hold_after = HELD_AFTER
        cache, out = tmp_path / "cache.sqlite", tmp_path / "out"
        proc = subprocess.Popen(command(tmp_path, cache, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        # wait until the upstream has let HELD_AFTER requests through and the eval has stored every answer
        while not (sum(app.state.answered.values()) == HELD_AFTER and cached_calls(cache) == HELD_AFTER):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, (sum(app.state.answered.values()), cached_calls(cache))
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert not (out / "report.json").exists(), "killed before it finished"
        while app.state.held:  # the held requests of the dead process see their client gone
            assert time.monotonic() < deadline
            time.sleep(0.02)
        app.state.hold_after = None
        again = subprocess.run(command(tmp_path, cache, out), env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr[-3000:]
        answered_twice = {key: n for key, n in app.state.answered.items() if n > 1}
        assert not answered_twice, f"{len(answered_twice)} requests were answered twice"
        total = sum(app.state.answered.values())
        assert total > HELD_AFTER
        # an uninterrupted run on a fresh cache asks the same requests once each, and reports the same
        app.state.answered.clear()
        fresh = subprocess.run(command(tmp_path, tmp_path / "fresh.sqlite", tmp_path / "fresh"), env=env,
                               capture_output=True, text=True, timeout=120)
        assert fresh.returncode == 0, fresh.stderr[-3000:]
        assert sum(app.state.answered.values()) == total
    assert comparable(out / "report.json") == comparable(tmp_path / "fresh" / "report.json")
    report = json.loads((out / "report.json").read_text())
    assert report["calls"]["results_reused"] > 0, "the resumed run took finished items from the cache"
    assert {s["name"] for s in report["systems"]} == {"a", "b", "vote", "best-of"}
    assert all(s["cost"] > 0 for s in report["systems"])
