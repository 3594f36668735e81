"""Eval reports as the dashboard shows them: the report's own table and findings, the figures the page plots, and
a link from a fine-tune's row to its run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from ..evals.render import Report
from ..shapes import MANIFEST, REPORT, EvalReport, read_json_object, report_kind
from .folders import Folders

EVAL_ROOTS = ("evals", "distil")


def read_report(folder: Path) -> dict[str, Any] | None:
    """An eval's report.json, or None for another kind of report (a distil run's) or one being written."""
    data = read_json_object(folder / REPORT)
    return data if data is not None and report_kind(data) == "eval" and isinstance(data.get("systems"), list) else None


def eval_summaries(folders: Folders) -> list[dict[str, Any]]:
    found = []
    for ident, folder in folders.find(REPORT, *EVAL_ROOTS):
        data = read_report(folder)
        if data is None:
            continue
        systems = data["systems"]
        top = max((s for s in systems if s.get("accuracy") is not None), key=lambda s: s["accuracy"], default=None)
        found.append({"id": ident, "name": folder.name, "dataset": data.get("dataset"), "test": data.get("test"),
                      "systems": [s["name"] for s in systems], "best_member": data.get("best_member"),
                      "top": {"name": top["name"], "accuracy": top["accuracy"]} if top else None})
    return found


def run_links(folders: Folders, systems: list[dict], models: dict[str, dict]) -> dict[str, str]:
    """A system name -> the run it was trained in: a run folder given as a path, or a configured model whose
    `run` (or `adapter`) is one, when that folder is under the dashboard's folders."""
    links = {}
    for s in systems:
        name = s["name"]
        body = models.get(name) or {}
        for candidate in (name, body.get("run"), body.get("adapter")):
            if not isinstance(candidate, str):
                continue
            path = Path(candidate).expanduser()
            ident = folders.ident(path) if (path / MANIFEST).is_file() else None
            if ident:
                links[name] = ident
                break
    return links


def eval_detail(folders: Folders, ident: str, models: dict[str, dict] | None = None) -> dict[str, Any] | None:
    folder = folders.resolve(ident, EVAL_ROOTS)
    data = read_report(folder)
    if data is None:
        return None
    report = Report(cast(EvalReport, data), [])  # an older file may lack keys: the report reads them with .get
    return {"id": ident, "heading": report.heading(), "columns": report.columns(), "rows": report.rows(),
            "findings": data.get("findings", []), "report": data,
            "runs": run_links(folders, data["systems"], models or {})}
