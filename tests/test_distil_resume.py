"""`gemfuse distil label` killed with SIGKILL mid-run: the re-run asks the upstream nothing it already answered
and writes the rows an uninterrupted run writes."""

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from gemfuse.testing.upstream import create_app, serve_in_thread

pytestmark = pytest.mark.heavy

GEMFUSE = os.path.join(os.path.dirname(sys.executable), "gemfuse")


def label(prompts, out, cache, *extra):
    return [GEMFUSE, "distil", "label", str(prompts), "--teacher", "fusion/pair", "--out", str(out),
            "--cache", str(cache), *extra]


def stored_calls(cache) -> int:
    try:
        with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    except sqlite3.Error:
        return 0


def comparable(out):
    rows = [json.loads(line) for line in (out / "labelled.jsonl").read_text().splitlines()]
    for row in rows:
        for moment in ("time", "latency_s"):  # when it ran and how long it took
            row["meta"].pop(moment)
    return rows


def test_a_killed_label_run_resumes_without_paying_twice(tmp_path, isolated_config):
    app = create_app()
    with serve_in_thread(app) as base_url:
        isolated_config.write_text(
            f'[models.a]\nbackend = "openai"\nbase_url = "{base_url}"\nmodel = "ok"\n\n'
            f'[models.b]\nbackend = "openai"\nbase_url = "{base_url}"\nmodel = "slow-20"\n\n'
            '[presets.pair]\npool = ["a", "b"]\nmode = "vote"\n')
        prompts = tmp_path / "prompts.jsonl"
        prompts.write_text("".join(json.dumps({"prompt": f"Question number {i}?"}) + "\n" for i in range(16)))
        done = subprocess.run(label(prompts, tmp_path / "whole", tmp_path / "whole.sqlite"), capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert sum(app.state.answered.values()) == 32

        app.state.answered.clear()
        app.state.hold_after = 10
        cache = tmp_path / "run.sqlite"
        run = subprocess.Popen(label(prompts, tmp_path / "run", cache, "--concurrency", "4"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while stored_calls(cache) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored_calls(cache) == 10 and app.state.held > 0, "killed with answers stored and calls waiting"
        run.kill()
        run.wait(timeout=10)
        while app.state.held and time.monotonic() < deadline:  # calls in flight when it died: never answered
            time.sleep(0.05)
        app.state.hold_after = None
        assert not (tmp_path / "run" / "labelled.jsonl").exists()

        again = subprocess.run(label(prompts, tmp_path / "run", cache), capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert sum(app.state.answered.values()) == 32 and max(app.state.answered.values()) == 1, \
            "every member call answered exactly once across the killed run and its re-run"
        assert comparable(tmp_path / "run") == comparable(tmp_path / "whole")
