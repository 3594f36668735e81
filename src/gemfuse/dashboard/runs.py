"""Fine-tune run folders as the dashboard shows them: status (a run whose process is gone is interrupted, whatever
its manifest last said), progress, the loss curve from metrics.jsonl, memory against the estimate, and the
command to type next."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..shapes import MANIFEST, METRICS, MetricsLine, RunManifest, manifest_if_readable, read_metrics
from ..tune.checkpoint import checkpoints
from ..tune.run_folder import process_alive
from .folders import Folders, shown_path

RUN_ROOTS = ("runs", "distil")
RATE_WINDOW = 20  # logged steps the tokens/s figure is taken over
PLOT_POINTS = 1000  # at most this many training steps are sent for a plot
TAIL_BYTES = 64 * 1024  # the run list reads this much of each metrics file's end


def status(manifest: RunManifest, folder: Path) -> tuple[str, str | None]:
    """(status, why): running, done, interrupted or failed."""
    said = manifest.get("status", "unknown")
    if said == "running":
        alive = process_alive(manifest.get("process"))
        if alive is False:
            found = checkpoints(folder)
            kept = f"its last checkpoint is step {int(found[-1].name.rsplit('-', 1)[-1])}" if found else "no checkpoint"
            return "interrupted", f"the training process ({manifest['process']['pid']}) is gone without a last " \
                                  f"word: killed, or the machine went down; {kept}"
        if alive is None and manifest.get("process"):
            return "running", f"on {manifest['process'].get('host')} (cannot be checked from here)"
        return "running", None
    if said == "interrupted":
        return "interrupted", "stopped before the last step (Ctrl-C, a signal, or a step callback)"
    if said == "failed":
        return "failed", manifest.get("error")
    return said, None


def tokens_per_second(metrics: list[MetricsLine]) -> float | None:
    """Supervised tokens/s over the last logged steps of the latest process (its clock restarts on resume)."""
    lines = [m for m in metrics if "tokens" in m and "seconds" in m]
    recent: list[MetricsLine] = []
    for line in reversed(lines):
        if recent and line["seconds"] >= recent[-1]["seconds"]:
            break  # an earlier process's clock
        recent.append(line)
        if len(recent) > RATE_WINDOW:
            break
    if len(recent) < 2:
        return None
    first, last = recent[-1], recent[0]
    seconds = last["seconds"] - first["seconds"]
    return (last["tokens"] - first["tokens"]) / seconds if seconds > 0 else None


def hints(state: str, folder: Path, manifest: RunManifest) -> list[str]:
    run = shown_path(folder)
    if state == "running":
        return [f"after Ctrl-C where it trains (it stops at a checkpoint): gemfuse tune --resume {run}"]
    if state == "interrupted":
        return [f"gemfuse tune --resume {run}"]
    if state == "failed":
        lr = (manifest.get("config") or {}).get("train", {}).get("lr")
        lower = f"{lr / 4:g}" if isinstance(lr, int | float) else "..."
        if checkpoints(folder):
            return [f"gemfuse tune --resume {run} --set train.lr={lower}"]
        return [f"start again with a lower learning rate: gemfuse tune CONFIG --set train.lr={lower}"]
    if state == "done":
        return [f'gemfuse ask -m {run} "..."', f"gemfuse eval DATASET --models {run}",
                f"gemfuse export {run} --to gguf"]
    return []


def memory(manifest: RunManifest, metrics: list[MetricsLine]) -> dict[str, Any]:
    estimate = (manifest.get("memory_estimate") or {}).get("total_gib")
    measured = ((manifest.get("result") or {}).get("memory") or {})
    peak = measured.get("peak_gib")
    if peak is None:  # still training: the latest logged high-water mark
        peaks = [m["peak_gib"] for m in metrics if m.get("peak_gib") is not None]
        peak = peaks[-1] if peaks else None
    return {"peak_gib": peak, "estimate_gib": estimate, "measured_by": measured.get("measured_by"),
            "estimate_over_peak": round(estimate / peak, 3) if estimate and peak else None,
            "per_rank_gib": measured.get("per_rank_gib")}  # each process's peak, in runs of several


def summary(ident: str, folder: Path, manifest: RunManifest, metrics: list[MetricsLine]) -> dict[str, Any]:
    state, why = status(manifest, folder)
    losses = [m for m in metrics if "loss" in m]
    vals = [m["val_loss"] for m in metrics if "val_loss" in m]
    result = manifest.get("result") or {}
    steps = [m["step"] for m in metrics if "step" in m]
    try:
        updated = max((folder / name).stat().st_mtime for name in (MANIFEST, METRICS) if (folder / name).exists())
    except ValueError:
        updated = None
    return {
        "id": ident, "name": folder.name, "path": shown_path(folder), "status": state, "why": why,
        # the base as the user named it (a config name), not the path it resolved to
        "base_model": (manifest.get("config") or {}).get("model") or manifest.get("base_model"),
        "base_path": manifest.get("base_model"), "family": manifest.get("family"),
        "device": manifest.get("device"), "dtype": manifest.get("dtype"), "rows": manifest.get("rows"),
        "processes": manifest.get("world_size") or 1,
        "sharded": ((manifest.get("config") or {}).get("train") or {}).get("shard") == "fsdp",
        "step": result.get("steps") or (max(steps) if steps else 0), "total_steps": manifest.get("total_steps"),
        "last_loss": losses[-1]["loss"] if losses else None,
        "best_val_loss": result.get("best_val_loss") if result else (min(vals) if vals else None),
        "lr": losses[-1].get("lr") if losses else None,
        "tokens_per_s": tokens_per_second(metrics),
        "skipped_steps": result.get("skipped_steps", sum(1 for m in metrics if "skipped" in m)),
        "memory": memory(manifest, metrics), "next": hints(state, folder, manifest),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(updated)) if updated else None,
    }


def run_summaries(folders: Folders) -> list[dict[str, Any]]:
    """Every run's row, from its manifest and its metrics file's tail (figures of the whole run, like the best
    validation loss and the steps skipped, come from the manifest's result once the run is done)."""
    found = []
    for ident, folder in folders.find(MANIFEST, *RUN_ROOTS):
        manifest = manifest_if_readable(folder)
        if manifest is not None:  # a run's row needs its latest figures, not a long run's every step
            found.append(summary(ident, folder, manifest, read_metrics(folder, TAIL_BYTES)))
    return found


def thinned(lines: list[MetricsLine], limit: int = PLOT_POINTS) -> list[MetricsLine]:
    """At most `limit` training steps: in each bucket of steps, the ones of lowest and highest loss, so a spike
    stays visible; validation and other lines all kept."""
    steps = [i for i, m in enumerate(lines) if "loss" in m]
    if len(steps) <= limit:
        return lines
    bucket = -(-2 * len(steps) // limit)
    kept = {i for i, m in enumerate(lines) if "loss" not in m}
    for start in range(0, len(steps), bucket):
        chunk = steps[start:start + bucket]
        kept.add(min(chunk, key=lambda i: lines[i]["loss"]))
        kept.add(max(chunk, key=lambda i: lines[i]["loss"]))
    return [lines[i] for i in sorted(kept)]


def run_detail(folders: Folders, ident: str, since: int = 0) -> dict[str, Any] | None:
    """One run: its summary, the manifest, and metrics lines from `since` on (all of them again when the file
    was rewritten shorter, as a resumed run does: `metrics_from` says where these start), thinned to
    PLOT_POINTS steps; `metrics_count` is where the next read starts."""
    folder = folders.resolve(ident, RUN_ROOTS)
    manifest = manifest_if_readable(folder)
    if manifest is None:
        return None
    metrics = read_metrics(folder)
    start = since if 0 <= since <= len(metrics) else 0
    return {"run": summary(ident, folder, manifest, metrics), "manifest": manifest,
            "metrics": thinned(metrics[start:]), "metrics_from": start, "metrics_count": len(metrics)}
