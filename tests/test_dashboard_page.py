"""The dashboard on real work: the endpoints against a run folder from a real 2-step tune of a tiny Gemma and a
real eval report; in headless Chromium, a finished run's curve, a run training in another process whose curve
grows while the page is open (then is killed, and the page says so), the eval's table and plot, the loop.
Screenshots are left in the test's folder for a reviewer."""

import json
import os
import signal
import subprocess
import sys

import pytest
from starlette.testclient import TestClient

from gemfuse.capture import CaptureWriter
from gemfuse.config import ServerSettings
from gemfuse.messages import Message
from gemfuse.serve.app import create_app
from gemfuse.testing.scripted import ScriptedModel, scripted_registry
from gemfuse.testing.upstream import serve_in_thread
from test_web import CHROMEDRIVER, CHROMIUM
from test_web import browser as browser  # noqa: F401  (the fixture)

pytestmark = pytest.mark.heavy


def tune_toml(model, folder, out, **train) -> str:
    settings = {"max_steps": 2, "batch_size": 4, "lr": 1e-2, "dtype": "float32", "seed": 1, **train}
    return "\n".join([f'model = "{model}"', f'out = "{out}"', "[data]", f'train = "{folder / "train.jsonl"}"',
                      f'val = "{folder / "val.jsonl"}"',
                      "[lora]", "r = 4", "alpha = 8", "[train]", *[f"{k} = {json.dumps(v)}" for k, v in settings.items()],
                      "[run]", "progress = false", "log_every = 1"]) + "\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model):
    """runs/finished (a real 2-step tune), evals/numbers (a real eval naming that run), capture/ (real rows)."""
    from conftest import ANSWERS, QUESTIONS
    from gemfuse.evals import run as run_eval
    from gemfuse.tune import load_tune_config, train

    root = tmp_path_factory.mktemp("workspace")
    rows = [json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
            for q, a in zip(QUESTIONS, ANSWERS, strict=True)]
    (root / "train.jsonl").write_text("".join(rows[:6]))
    (root / "val.jsonl").write_text("".join(rows[6:]))
    (root / "finished.toml").write_text(tune_toml(tiny_model("gemma3"), root, root / "runs" / "finished"))
    result = train(load_tune_config(root / "finished.toml"))
    assert result.steps == 2 and not result.interrupted

    numbers = root / "numbers.jsonl"
    numbers.write_text("".join(json.dumps({"prompt": f"What is {i} plus 1?", "answer": i + 1}) + "\n" for i in range(20)))
    right = ScriptedModel(lambda m: "The answer is " + str(int(m[-1].text.split()[2]) + 1))
    half = ScriptedModel(lambda m: "The answer is " + str(int(m[-1].text.split()[2]) + 1 - int(m[-1].text.split()[2]) % 2))
    down = ScriptedModel(RuntimeError("upstream down"))  # every item errors: reported as failed, never drawn
    registry = scripted_registry({"big-model": right, str(root / "runs" / "finished"): half, "down": down})
    run_eval(numbers, registry=registry, models=["big-model", str(root / "runs" / "finished"), "down"],
             systems=["members"], cache="off", out=root / "evals" / "numbers", seed=3)

    distil = root / "distil" / "capitals"  # the files a finished `gemfuse distil run` leaves, in brief
    (distil / "data").mkdir(parents=True)
    (distil / "data" / "labelled.jsonl").write_text("{}\n")
    (distil / "data" / "label.json").write_text(json.dumps({"labelled": 30}))
    (distil / "data" / "filter.json").write_text(json.dumps({"train": 30}))
    (distil / "report.json").write_text(json.dumps({
        "teacher": "fusion/t", "student": {"name": "distil-capitals"}, "gain_kept": {"value": 0.8, "interval": [0.6, 1]},
        "eval": {"accuracy": {"distil-capitals": 0.9}},
        "cost_fraction": {"student": 0.0, "teacher": None, "fraction": None, "why": "the teacher's cost is partly unknown"},
        "latency_fraction": {"student": 0.1, "teacher": 0.5, "fraction": 0.2}}))

    writer = CaptureWriter(root / "capture")
    for i, model in enumerate(["fusion/default", "fusion/default", "gemma-3-270m"]):
        writer.add([Message.user(f"q{i}")], "a", {"model": model, "time": f"2026-11-2{8 + i // 2}T10:00:00Z"})
    return root


def app_for(root):
    settings = ServerSettings(runs_dir=str(root / "runs"), evals_dir=str(root / "evals"),
                              distil_dir=str(root / "distil"), capture_dir=str(root / "capture"))
    return create_app(scripted_registry({"a": ScriptedModel("x")}), settings)


def test_endpoints_on_a_real_run_and_a_real_report(workspace):
    api = TestClient(app_for(workspace))
    [run] = api.get("/v1/gemfuse/runs").json()["data"]
    assert run["id"] == "runs/finished" and run["status"] == "done" and run["why"] is None
    assert run["step"] == 2 and run["total_steps"] == 2 and run["rows"] == {"train": 6, "val": 2}
    assert run["last_loss"] > 0 and run["best_val_loss"] > 0 and run["family"] == "gemma3"
    memory = run["memory"]
    assert 0 < memory["peak_gib"] and memory["estimate_gib"] > 0 and memory["measured_by"]
    detail = api.get("/v1/gemfuse/runs/runs/finished").json()
    assert [m["step"] for m in detail["metrics"] if "loss" in m] == [1, 2]
    assert [m["step"] for m in detail["metrics"] if "val_loss" in m] == [2]
    assert detail["manifest"]["process"]["pid"] == os.getpid() and detail["manifest"]["status"] == "done"
    assert api.get("/v1/gemfuse/runs/runs/finished", params={"since": 3}).json()["metrics"] == []
    assert api.get("/v1/gemfuse/runs/runs/%2e%2e/evals/numbers").status_code == 403
    assert api.get("/v1/gemfuse/runs/evals/numbers").status_code == 403
    [report] = api.get("/v1/gemfuse/evals").json()["data"]
    assert report["id"] == "evals/numbers" and report["top"]["name"] == "big-model"
    found = api.get("/v1/gemfuse/evals/evals/numbers").json()
    assert found["runs"] == {str(workspace / "runs" / "finished"): "runs/finished"}
    assert found["columns"][0] == "system" and len(found["rows"]) == 3
    assert found["rows"][2][:2] == ["down", "failed"]


def text(driver, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector).text


def polyline_points(driver, series):
    from selenium.webdriver.common.by import By

    lines = driver.find_elements(By.CSS_SELECTOR, f'#loss-chart polyline[data-series="{series}"]')
    return int(lines[0].get_attribute("data-points")) if lines else 0


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_the_page_shows_runs_live_evals_and_the_loop(workspace, tiny_model, browser, tmp_path):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    live = workspace / "runs" / "live"
    (workspace / "live.toml").write_text(tune_toml(tiny_model("gemma3"), workspace, live,
                                                   max_steps=100000, batch_size=2))
    gemfuse = os.path.join(os.path.dirname(sys.executable), "gemfuse")
    trainer = subprocess.Popen([gemfuse, "tune", str(workspace / "live.toml")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        with serve_in_thread(app_for(workspace)) as base:
            page = base.removesuffix("/v1")
            # The page re-renders as it polls: every read waits and finds its element anew, and one found just
            # before a re-render (stale) or just after it (not there yet) is looked for again.
            wait = WebDriverWait(browser, 90, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException))
            browser.get(page + "/#runs/runs/finished")
            wait.until(lambda d: polyline_points(d, "training loss") == 2)
            dots = browser.find_elements(By.CSS_SELECTOR, '#loss-chart circle[data-series="validation loss"]')
            assert len(dots) == 1, "the validation loss at the last step"
            wait.until(lambda d: "gemfuse ask -m" in text(d, ".hint"))
            browser.save_screenshot(str(tmp_path / "run-finished.png"))

            wait.until(lambda d: trainer.poll() is None and (live / "metrics.jsonl").exists()
                       and (live / "metrics.jsonl").stat().st_size > 0)
            browser.get(page + "/#runs")
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs-table tr[data-run]")) == 2)
            wait.until(lambda d: d.find_element(By.CSS_SELECTOR, 'tr[data-run="runs/live"]').click() or True)
            wait.until(lambda d: polyline_points(d, "training loss") >= 2)
            first = polyline_points(browser, "training loss")
            wait.until(lambda d: polyline_points(d, "training loss") >= first + 5)  # polled, no reload
            wait.until(lambda d: "running" in text(d, "h2 .badge"))
            browser.save_screenshot(str(tmp_path / "run-live.png"))

            trainer.send_signal(signal.SIGKILL)
            trainer.wait(timeout=30)
            wait.until(lambda d: "interrupted" in text(d, "h2 .badge"))
            wait.until(lambda d: "gone" in text(d, "#run-why"))
            wait.until(lambda d: "gemfuse tune --resume" in text(d, ".hint"))

            browser.get(page + "/#evals")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-eval="evals/numbers"]'))
            wait.until(lambda d: d.find_element(By.CSS_SELECTOR, 'tr[data-eval="evals/numbers"]').click() or True)
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#eval-table tr")) == 4)
            assert len(browser.find_elements(By.CSS_SELECTOR, "#accuracy-chart circle.dot")) == 2
            assert "down failed: every one of its" in text(browser, "#findings") and "NaN" not in text(browser, "body")
            assert browser.find_elements(By.CSS_SELECTOR, "#findings li")
            browser.save_screenshot(str(tmp_path / "eval.png"))
            wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "a.run-link").click() or True)  # the row leads to its run
            wait.until(lambda d: "runs/finished" in text(d, "#view-runs h2"))

            browser.get(page + "/#loop")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#capture-table tr"))
            wait.until(lambda d: "Captured rows: 3" in text(d, "#view-loop h2"))
            wait.until(lambda d: text(d, "#distil-table td.gain") == "80.0% (60.0%-100.0%)")
            assert "not known / 20.0%" in text(browser, "#distil-table") and "NaN" not in text(browser, "body")
            browser.save_screenshot(str(tmp_path / "loop.png"))
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait(timeout=30)
    for shot in ("run-finished", "run-live", "eval", "loop"):
        assert (tmp_path / f"{shot}.png").stat().st_size > 10_000
