"""A run folder: what was trained, on what, and how it went.

    manifest.json     config, base model, family, chat template, package versions, seed, data hash, status
    metrics.jsonl     one line per logged step and per validation
    loss.png          the loss curve (training, and validation when there is any)
    checkpoints/      resumable states (see checkpoint.py)
    adapter/          the final LoRA adapter, with the tokenizer or processor it was trained with

A run folder is a model: `gemfuse ask -m runs/x`, `adapter = "runs/x"` in the config, the server, fusion pools.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..paths import write_file
from ..shapes import MANIFEST, METRICS, ProcessInfo, read_metrics

PACKAGES = ("gemfuse", "torch", "transformers", "peft", "accelerate", "bitsandbytes")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """The installed version of each of `names`; those not installed are left out."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def data_hash(examples) -> str:
    """Identity of the training data: every row's content (media by identity), in order."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(example.fingerprint.encode())
    return digest.hexdigest()


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    write_file(path, json.dumps(payload, indent=2, default=str))


def _start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot, Linux), so a reused process id is not taken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return None if fields[0] == "Z" else int(fields[19])  # a zombie has finished


def this_process() -> ProcessInfo:
    """Who is writing the run: the dashboard tells a run still training from one whose process was killed."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_ticks(os.getpid())}


def process_alive(process: ProcessInfo | None) -> bool | None:
    """Whether the process a manifest names still runs; None when that cannot be told from here."""
    if not process or process.get("host") != socket.gethostname():
        return None
    pid = process.get("pid")
    if not isinstance(pid, int):
        return None
    if Path("/proc").is_dir():
        start = _start_ticks(pid)
        return start is not None and (process.get("start") is None or start == process["start"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_run(path: str | Path) -> bool:
    return (Path(path).expanduser() / MANIFEST).is_file()


class Metrics:
    """Appends metric lines; on resume, lines past the checkpoint's step are dropped (they will be redone)."""

    def __init__(self, run: Path, resume_step: int | None = None):
        self.path = run / METRICS
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))

    def log(self, **values) -> None:
        values.setdefault("time", round(time.time(), 3))
        with open(self.path, "a") as handle:
            handle.write(json.dumps(values) + "\n")



def plot_loss(run: Path) -> Path | None:
    """loss.png from metrics.jsonl (matplotlib, no display needed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    lines = read_metrics(run)
    train = [(r["step"], r["loss"]) for r in lines if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in lines if "val_loss" in r]
    if not train and not val:
        return None
    figure, axes = plt.subplots(figsize=(7, 4))
    if train:
        axes.plot(*zip(*train, strict=True), label="training loss", linewidth=1)
    if val:
        axes.plot(*zip(*val, strict=True), "o-", label="validation loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss (per supervised token)")
    axes.set_title(run.name)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    out = run / "loss.png"
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out
