"""The dashboard's endpoints on folders made by the real writers (capture, eval reports) and on run manifests in
every state: statuses (a run whose process is gone is interrupted), metrics read incrementally, the next
command, run links from an eval's rows, the loop's counts, paths confined to the folders, the API key."""

import json
import os

import pytest
from starlette.testclient import TestClient

from gemfuse.capture import CaptureWriter
from gemfuse.config import ServerSettings
from gemfuse.messages import Message
from gemfuse.serve.app import create_app
from gemfuse.testing.scripted import ScriptedModel, scripted_registry
from gemfuse.tune.run_folder import this_process


def write_run(folder, status="done", process=None, lines=(), **extra):
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"status": status, "process": process or this_process(), "base_model": "tiny", "family": "gemma3",
                "device": "cpu", "dtype": "float32", "rows": {"train": 8, "val": 2}, "total_steps": 10,
                "config": {"train": {"lr": 2e-3}}, "memory_estimate": {"total_gib": 1.5}, **extra}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def steps(start, end, seconds_from=0.0):
    return [{"step": s, "loss": 3.0 / s, "lr": 1e-3, "grad_norm": 1.0, "tokens": 100 * s,
             "seconds": seconds_from + s * 0.5, "peak_gib": 0.9} for s in range(start, end + 1)]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("runs", "evals", "distil", "capture"):
        (tmp_path / name).mkdir()
    return tmp_path


def client(workspace, registry=None, key=None):
    settings = ServerSettings(runs_dir="runs", evals_dir="evals", distil_dir="distil", capture_dir="capture")
    app = create_app(registry or scripted_registry({"a": ScriptedModel("x")}), settings)
    return TestClient(app, headers={"Authorization": f"Bearer {key}"} if key else {})


def test_runs_in_every_state_with_their_next_command(workspace):
    write_run(workspace / "runs" / "done", lines=steps(1, 10), result={"steps": 10, "best_val_loss": 0.4,
              "memory": {"peak_gib": 1.2, "measured_by": "peak resident memory (VmHWM)"}})
    write_run(workspace / "runs" / "live", status="running", lines=steps(1, 4))
    gone = dict(this_process(), start=-1)  # this pid, another start time: the process that wrote it is gone
    write_run(workspace / "runs" / "killed", status="running", process=gone, lines=steps(1, 3))
    (workspace / "runs" / "killed" / "checkpoints" / "step-000002").mkdir(parents=True)
    (workspace / "runs" / "killed" / "checkpoints" / "step-000002" / "state.pt").write_bytes(b"")
    write_run(workspace / "runs" / "nan", status="failed", error="training diverged: steps 5, 6, 7 ...")
    write_run(workspace / "runs" / "stopped", status="interrupted")
    (workspace / "runs" / "not-a-run").mkdir()

    runs = {r["name"]: r for r in client(workspace).get("/v1/gemfuse/runs").json()["data"]}
    assert set(runs) == {"done", "live", "killed", "nan", "stopped"}
    assert {n: r["status"] for n, r in runs.items()} == {"done": "done", "live": "running", "killed": "interrupted",
                                                          "nan": "failed", "stopped": "interrupted"}
    assert "gone" in runs["killed"]["why"] and "step 2" in runs["killed"]["why"]
    assert runs["killed"]["next"] == ["gemfuse tune --resume runs/killed"]
    assert runs["nan"]["why"].startswith("training diverged")
    assert runs["nan"]["next"] == ["start again with a lower learning rate: gemfuse tune CONFIG --set train.lr=0.0005"]
    done = runs["done"]
    assert done["id"] == "runs/done" and done["step"] == 10 and done["last_loss"] == pytest.approx(0.3)
    assert done["tokens_per_s"] == pytest.approx(200.0) and done["best_val_loss"] == 0.4
    assert done["memory"] == {"peak_gib": 1.2, "estimate_gib": 1.5, "measured_by": "peak resident memory (VmHWM)",
                              "estimate_over_peak": 1.25, "per_rank_gib": None}
    assert done["processes"] == 1 and not done["sharded"]
    assert 'gemfuse ask -m runs/done "..."' in done["next"] and "gemfuse export runs/done --to gguf" in done["next"]
    assert runs["live"]["memory"]["peak_gib"] == 0.9, "while training, the latest logged high-water mark"


def test_a_sharded_run_is_one_run_of_several_processes_with_each_ones_peak(workspace):
    write_run(workspace / "runs" / "fsdp", world_size=2, config={"train": {"lr": 2e-3, "shard": "fsdp"}},
              result={"steps": 10, "memory": {"peak_gib": 1.9, "measured_by": "VmHWM", "per_rank_gib": [1.9, 1.8]}})
    [run] = client(workspace).get("/v1/gemfuse/runs").json()["data"]
    assert run["processes"] == 2 and run["sharded"] and run["memory"]["per_rank_gib"] == [1.9, 1.8]


def test_a_run_is_read_incrementally_and_again_after_a_resume_rewrote_it(workspace):
    run = write_run(workspace / "runs" / "r", status="running", lines=steps(1, 6))
    api = client(workspace)
    first = api.get("/v1/gemfuse/runs/runs/r").json()
    assert first["metrics_from"] == 0 and first["metrics_count"] == 6 and len(first["metrics"]) == 6
    assert first["manifest"]["base_model"] == "tiny" and first["run"]["status"] == "running"
    assert first["run"]["base_model"] == "tiny"  # no name in the config: the path it was given
    write_run(workspace / "runs" / "named", base_model="/home/u/.cache/gemma3_270m", config={"model": "gemma-3-270m"})
    named = api.get("/v1/gemfuse/runs/runs/named").json()["run"]
    assert named["base_model"] == "gemma-3-270m" and named["base_path"] == "/home/u/.cache/gemma3_270m"
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write("".join(json.dumps(line) + "\n" for line in steps(7, 8)) + '{"step": 9, "lo')  # mid-write
    more = api.get("/v1/gemfuse/runs/runs/r", params={"since": 6}).json()
    assert more["metrics_from"] == 6 and [m["step"] for m in more["metrics"]] == [7, 8]
    # a resume from step 4 keeps lines up to it; the new process's clock starts again
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in steps(1, 4) + steps(5, 5, -2.0)))
    again = api.get("/v1/gemfuse/runs/runs/r", params={"since": 8}).json()
    assert again["metrics_from"] == 0 and len(again["metrics"]) == 5
    assert again["run"]["tokens_per_s"] is None, "one line of the new process is not a rate"


def test_paths_outside_the_folders_are_refused(workspace, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere")
    write_run(outside / "secret-run")
    (outside / "report.json").write_text("{}")
    os.symlink(outside, workspace / "runs" / "link")
    write_run(workspace / "runs" / "ok")
    api = client(workspace)
    assert api.get("/v1/gemfuse/runs/runs/ok").status_code == 200
    for path in ("runs/../../elsewhere/secret-run", "runs/link/secret-run", "runs/%2e%2e/x", "etc/passwd",
                 "runs//etc/passwd", "evals/%2e%2e", "runs/ok/%2e%2e/%2e%2e/runs/ok"):
        response = api.get(f"/v1/gemfuse/runs/{path}")
        assert response.status_code in (403, 404), path
        if response.status_code == 403:
            assert response.json()["error"]["code"] == "outside_folders"
    assert api.get("/v1/gemfuse/runs/runs/link/secret-run").status_code == 403
    assert api.get("/v1/gemfuse/runs/runs/nothing-here").status_code == 404
    assert api.get("/v1/gemfuse/evals/runs/ok").status_code == 403, "a run is not an eval report's folder"
    names = [r["id"] for r in api.get("/v1/gemfuse/runs").json()["data"]]
    assert names == ["runs/ok"], "a symlinked folder is not entered while listing"


def test_the_dashboard_is_behind_the_api_key_and_cannot_change_anything(workspace, monkeypatch):
    monkeypatch.setenv("GEMFUSE_API_KEY", "k" * 20)
    write_run(workspace / "runs" / "r")
    assert client(workspace).get("/v1/gemfuse/runs").status_code == 401
    assert client(workspace).get("/dashboard.js").status_code == 200
    api = client(workspace, key="k" * 20)
    assert api.get("/v1/gemfuse/runs").status_code == 200
    for method in ("post", "put", "delete", "patch"):
        assert getattr(api, method)("/v1/gemfuse/runs/runs/r").status_code == 405
    assert (workspace / "runs" / "r" / "manifest.json").exists()


def test_an_eval_report_with_its_table_findings_and_a_link_to_the_run(workspace):
    from gemfuse.evals import run as run_eval

    data = workspace / "numbers.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} plus 1?", "answer": i + 1}) + "\n" for i in range(20)))
    write_run(workspace / "runs" / "my-lora")
    models = {"good": ScriptedModel(lambda m: "The answer is " + str(int(m[-1].text.split()[2]) + 1)),
              "runs/my-lora": ScriptedModel("The answer is 0.")}
    registry = scripted_registry(models)
    report = run_eval(data, registry=registry, models=list(models), systems=["members"], cache="off",
                      out=workspace / "evals" / "numbers", seed=3)
    api = client(workspace, registry)
    [summary] = api.get("/v1/gemfuse/evals").json()["data"]
    assert summary["id"] == "evals/numbers" and summary["top"] == {"name": "good", "accuracy": 1.0}
    found = api.get("/v1/gemfuse/evals/evals/numbers").json()
    assert found["columns"] == report.columns() and found["rows"] == report.rows()
    assert found["findings"] == report.data["findings"] and found["findings"]
    assert found["report"]["systems"][0]["interval"] == list(report.data["systems"][0]["interval"])
    assert found["runs"] == {"runs/my-lora": "runs/my-lora"}


def test_an_eval_folder_is_listed_only_once_its_report_is_whole(workspace, monkeypatch):
    """write_report publishes each file at once and report.json last: a write that fails part-way (here the plot)
    leaves no report.json and no staging file, so the dashboard lists no half-written eval; a later write does."""
    from gemfuse.evals import render
    from gemfuse.evals import run as run_eval

    data = workspace / "numbers.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} plus 1?", "answer": i + 1}) + "\n" for i in range(6)))
    registry = scripted_registry({"good": ScriptedModel("The answer is 2.")})
    report = run_eval(data, registry=registry, models=["good"], systems=["members"], cache="off",
                      out=workspace / "evals" / "first", seed=3)
    folder = workspace / "evals" / "again"

    def broken_plot(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(render.Report, "plot", broken_plot)
    with pytest.raises(OSError, match="disk full"):
        render.write_report(folder, report.data, report.records)
    assert not (folder / "report.json").exists() and not [p for p in folder.iterdir() if p.name.startswith(".")]
    api = client(workspace, registry)
    assert [s["id"] for s in api.get("/v1/gemfuse/evals").json()["data"]] == ["evals/first"]
    monkeypatch.undo()
    render.write_report(folder, report.data, report.records)
    assert sorted(p.name for p in folder.iterdir()) == ["accuracy_cost.png", "records.jsonl", "report.json", "report.md"]
    assert sorted(s["id"] for s in api.get("/v1/gemfuse/evals").json()["data"]) == ["evals/again", "evals/first"]


def test_the_loop_counts_captured_rows_per_day_and_model_as_they_arrive(workspace):
    writer = CaptureWriter(workspace / "capture")
    for i, model in enumerate(["fusion/default", "fusion/default", "gemma-3-270m"]):
        writer.add([Message.user(f"q{i}")], "a", {"model": model, "time": "2026-11-28T10:00:00Z"})
    api = client(workspace)
    first = api.get("/v1/gemfuse/loop").json()["capture"]
    assert first["rows"] == 3 and first["per_day"] == [
        {"day": "2026-11-28", "model": "fusion/default", "rows": 2}, {"day": "2026-11-28", "model": "gemma-3-270m", "rows": 1}]
    writer.add([Message.user("q")], "a", {"model": "gemma-3-270m", "time": "2026-11-29T08:00:00Z"})
    [file] = sorted((workspace / "capture").glob("capture-*.jsonl"))
    with open(file, "ab") as handle:
        handle.write(b'{"messages": [')  # a row being written is not counted yet
    later = api.get("/v1/gemfuse/loop").json()["capture"]
    assert later["rows"] == 4 and later["per_day"][-1] == {"day": "2026-11-29", "model": "gemma-3-270m", "rows": 1}


def test_a_distil_run_shows_its_stages_and_the_gain_it_kept(workspace):
    folder = workspace / "distil" / "capitals"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "labelled.jsonl").write_text("{}\n")
    (folder / "data" / "label.json").write_text(json.dumps({"labelled": 30, "failed": []}))
    api = client(workspace)
    [partial] = api.get("/v1/gemfuse/loop").json()["distil"]
    assert [(s["stage"], s["state"]) for s in partial["stages"]] == [
        ("label", "done"), ("filter", "waiting"), ("tune", "waiting"), ("eval", "waiting")]
    assert partial["finished"] is False and partial["gain_kept"] is None
    (folder / "data" / "filter.json").write_text(json.dumps({"rows": 30, "train": 30}))
    write_run(folder / "student", lines=steps(1, 10))
    (folder / "eval").mkdir()
    (folder / "eval" / "report.json").write_text(json.dumps({"systems": []}))
    report = {"teacher": "fusion/t", "student": {"name": "distil-capitals"}, "gain_kept": {"value": 0.8,
              "interval": [0.6, 1.0]}, "eval": {"accuracy": {"distil-capitals": 0.9}}, "cost_fraction": 0.01,
              "latency_fraction": 0.2, "stage_seconds": {"label": 1.0}, "registered": "distil-capitals"}
    (folder / "report.json").write_text(json.dumps(report))
    [done] = api.get("/v1/gemfuse/loop").json()["distil"]
    assert done["id"] == "distil/capitals" and done["finished"] and done["gain_kept"]["value"] == 0.8
    assert [s["state"] for s in done["stages"]] == ["done", "done", "done", "done"]
    assert done["student_run"] == "distil/capitals/student" and done["eval"] == "distil/capitals/eval"
    runs = [r["id"] for r in api.get("/v1/gemfuse/runs").json()["data"]]
    assert runs == ["distil/capitals/student"], "a distil run's student is a run like any other"
    evals = [e["id"] for e in api.get("/v1/gemfuse/evals").json()["data"]]
    assert evals == ["distil/capitals/eval"], "the distil report itself is not an eval report"


def test_every_endpoint_answers_valid_json_for_undefined_figures(workspace):
    """An eval without dev items (its members' dev accuracy undefined), one where every system scores 0, an older
    report.json written with NaN, and a distil report whose cost fraction is undefined: 200, and JSON a strict
    parser takes (no NaN); report.json itself holds none."""
    from gemfuse.evals import run as run_eval

    data = workspace / "numbers.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} plus 1?", "answer": i + 1}) + "\n" for i in range(6)))
    registry = scripted_registry({"wrong": ScriptedModel("The answer is 0."), "also": ScriptedModel("No idea.")})
    run_eval(data, registry=registry, models=["wrong", "also"], systems=["members"], cache="off", dev_fraction=0.0,
             out=workspace / "evals" / "zeros", seed=3)
    written = (workspace / "evals" / "zeros" / "report.json").read_text()
    json.loads(written, parse_constant=lambda name: pytest.fail(f"report.json holds {name}"))
    assert json.loads(written)["kind"] == "eval" and json.loads(written)["answers"] == "number"
    old = json.loads(written)
    old["kind"] = old.pop("answers")  # the previous layout: the answers' kind under `kind`
    old["systems"][0]["dev_accuracy"] = float("nan")
    (workspace / "evals" / "older").mkdir()
    (workspace / "evals" / "older" / "report.json").write_text(json.dumps(old))  # Python writes NaN
    folder = workspace / "distil" / "undefined"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "labelled.jsonl").write_text("{}\n")
    (folder / "report.json").write_text(json.dumps({"teacher": "fusion/t", "student": {"name": "s"}, "gain_kept": None,
                                                    "eval": {}, "cost_fraction": float("nan"),
                                                    "latency_fraction": float("inf")}))
    api = client(workspace, registry)

    def strict(path):
        answer = api.get(path)
        assert answer.status_code == 200, (path, answer.text)
        return json.loads(answer.text, parse_constant=lambda name: pytest.fail(f"{path} answered {name}"))

    assert {e["id"] for e in strict("/v1/gemfuse/evals")["data"]} == {"evals/zeros", "evals/older"}
    for ident in ("evals/zeros", "evals/older"):
        assert strict(f"/v1/gemfuse/evals/{ident}")["rows"]
    [distilled] = strict("/v1/gemfuse/loop")["distil"]  # written before reports had a `kind`: still a distil run
    assert distilled["cost_fraction"] is None and distilled["latency_fraction"] is None


def test_an_older_report_missing_keys_renders_with_dashes(workspace):
    folder = workspace / "evals" / "old"
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"kind": "eval", "dataset": "old.jsonl", "systems": [
        {"name": "a", "kind": "member", "accuracy": 0.5}, {"name": "b", "kind": "fusion"}]}))
    api = client(workspace)
    assert api.get("/v1/gemfuse/evals").status_code == 200
    found = api.get("/v1/gemfuse/evals/evals/old")
    assert found.status_code == 200, found.text
    rows = found.json()["rows"]
    assert rows[0][0] == "a" and rows[0][1].startswith("50.0%") and "-" in rows[1]


def test_a_long_run_is_listed_from_its_tail_and_plotted_thinned_with_its_spikes(workspace):
    lines = steps(1, 2500)
    lines[1233]["loss"] = 99.0  # one spike among 2,500 steps
    lines.append({"step": 2500, "val_loss": 0.5})
    write_run(workspace / "runs" / "long", status="running", lines=lines, total_steps=3000)
    api = client(workspace)
    [row] = api.get("/v1/gemfuse/runs").json()["data"]
    assert row["step"] == 2500 and row["last_loss"] == lines[-2]["loss"] and row["tokens_per_s"] == 200.0
    found = api.get("/v1/gemfuse/runs/runs/long").json()
    plotted = [m for m in found["metrics"] if "loss" in m]
    assert 900 <= len(plotted) <= 1000 and found["metrics_count"] == 2501
    assert max(m["loss"] for m in plotted) == 99.0 and plotted[0]["step"] == 1, "the spike and the start stay"
    assert any("val_loss" in m for m in found["metrics"])
    with open(workspace / "runs" / "long" / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"step": 2501, "loss": 0.1, "seconds": 1251.0, "tokens": 250100}) + "\n")
    more = api.get("/v1/gemfuse/runs/runs/long?since=2501").json()
    assert more["metrics_from"] == 2501 and [m["step"] for m in more["metrics"]] == [2501]
