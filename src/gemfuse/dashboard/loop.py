"""The loop as the dashboard shows it: rows captured per day and model, and each distil run's stages with the
gain it kept."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from ..capture.writer import capture_files
from ..shapes import LABELLED, MANIFEST, REPORT, manifest_if_readable, read_json_object, report_kind
from .folders import Folders
from .runs import status


class CaptureCounts:
    """Rows per (day, model) in a capture folder, read incrementally: only bytes appended since the last look."""

    def __init__(self) -> None:
        self.seen: dict[Path, tuple[int, Counter]] = {}  # file -> (bytes counted, counts)
        self.lock = threading.Lock()

    def count(self, folder: Path) -> Counter:
        total: Counter = Counter()
        with self.lock:
            for file in capture_files(folder):
                done, counts = self.seen.get(file, (0, Counter()))
                size = file.stat().st_size
                if size < done:  # a torn tail was cut: count again
                    done, counts = 0, Counter()
                if size > done:
                    with open(file, "rb") as handle:
                        handle.seek(done)
                        chunk = handle.read(size - done)
                    whole = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written waits
                    for line in whole.splitlines():
                        counts[_day_and_model(line)] += 1
                    done += len(whole)
                self.seen[file] = (done, counts)
                total.update(counts)
        return total


def _day_and_model(line: bytes) -> tuple[str, str]:
    try:
        meta = json.loads(line).get("meta") or {}
    except ValueError:
        return "unknown", "unreadable row"
    return str(meta.get("time") or "unknown")[:10], str(meta.get("model") or "unknown")


def capture_view(folders: Folders, counts: CaptureCounts) -> dict[str, Any]:
    folder = folders.capture
    if folder is None or not folder.is_dir():
        return {"folder": str(folder) if folder else None, "rows": 0, "per_day": []}
    found = counts.count(folder)
    per_day = [{"day": day, "model": model, "rows": n} for (day, model), n in sorted(found.items())]
    return {"folder": str(folder), "rows": sum(found.values()), "per_day": per_day,
            "files": len(capture_files(folder))}


def stages(folder: Path) -> list[dict[str, Any]]:
    """label, filter, tune, eval: done, running or waiting, from the files each stage leaves."""
    label = read_json_object(folder / "data" / "label.json")
    filtered = read_json_object(folder / "data" / "filter.json")
    manifest = manifest_if_readable(folder / "student")
    evaluated = (folder / "eval" / REPORT).is_file()
    tune_state = status(manifest, folder / "student")[0] if manifest else None
    found: list[dict[str, Any]] = [
        {"stage": "label", "state": "done" if label else "running" if (folder / "data").is_dir() else "waiting",
         "detail": label},
        {"stage": "filter", "state": "done" if filtered else "waiting", "detail": filtered},
        {"stage": "tune", "state": tune_state or "waiting",
         "detail": {"run": "student", "steps": (manifest or {}).get("total_steps")} if manifest else None},
        {"stage": "eval", "state": "done" if evaluated else "running" if tune_state == "done" else "waiting",
         "detail": None},
    ]
    return found


def distil_view(folders: Folders) -> list[dict[str, Any]]:
    runs = []
    for ident, folder in _distil_folders(folders):
        report = read_json_object(folder / REPORT)
        report = report if report and report_kind(report) == "distil" else None
        runs.append({"id": ident, "name": folder.name, "stages": stages(folder), "finished": report is not None,
                     "teacher": report.get("teacher") if report else None,
                     "student": report.get("student") if report else None,
                     "accuracy": (report.get("eval") or {}).get("accuracy") if report else None,
                     "gain_kept": report.get("gain_kept") if report else None,
                     "cost_fraction": report.get("cost_fraction") if report else None,
                     "latency_fraction": report.get("latency_fraction") if report else None,
                     "stage_seconds": report.get("stage_seconds") if report else None,
                     "registered": report.get("registered") if report else None,
                     "student_run": f"{ident}/student" if (folder / "student" / MANIFEST).is_file() else None,
                     "eval": f"{ident}/eval" if (folder / "eval" / REPORT).is_file() else None})
    return runs


def _distil_folders(folders: Folders) -> list[tuple[str, Path]]:
    """Folders under distil/ that `gemfuse distil run` wrote: a data/ folder with labelled rows in it."""
    root = folders.distil
    if root is None or not root.is_dir():
        return []
    found = []
    for ident, data in folders.find(LABELLED, "distil"):
        if data.name == "data" and data.parent != root:
            found.append((ident.rsplit("/", 1)[0], data.parent))
    return found


def loop_view(folders: Folders, counts: CaptureCounts) -> dict[str, Any]:
    return {"capture": capture_view(folders, counts), "distil": distil_view(folders)}
