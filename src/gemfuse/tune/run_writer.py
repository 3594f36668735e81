"""The run folder, written as the loop goes (a hook; rank 0 only): the manifest at the start and the end,
a metrics line per logged step, skip and validation, checkpoints with the loop's State, the adapter and the loss
curve at the end."""

from __future__ import annotations

import time
from pathlib import Path

from ..paths import published_folder
from ..shapes import PeakMemory, RunManifest
from .checkpoint import checkpoints, load_checkpoint, save_checkpoint
from .loop import Hooks, State
from .memory import GiB, peak_gib, peak_used
from .patches import outcomes
from .run_folder import MANIFEST, Metrics, data_hash, package_versions, plot_loss, this_process, write_json
from .runtime import Result
from .setup import Setup


def restore(setup: Setup) -> State:
    """The State of the run's latest checkpoint, with model, optimizer, scheduler and RNGs restored in place;
    a fresh State when none was written."""
    assert setup.run_dir is not None
    found = checkpoints(setup.run_dir)
    if not found:
        return State()
    return State.restored(load_checkpoint(found[-1], setup.model, setup.optimizer, setup.scheduler))


class RunWriter(Hooks):
    def __init__(self) -> None:
        self.metrics: Metrics | None = None

    def started(self, setup: Setup, state: State) -> None:
        if not setup.main:
            return
        assert setup.run_dir is not None
        setup.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = Metrics(setup.run_dir, resume_step=state.step if setup.resuming else None)
        write_manifest(setup, "running")

    def stepped(self, setup: Setup, state: State, loss: float, norm: float) -> None:
        every = setup.config.run.log_every
        if self.metrics and (state.step % every == 0 or state.step == setup.total):
            self.metrics.log(step=state.step, loss=round(loss, 6), grad_norm=round(norm, 6),
                             lr=setup.scheduler.get_last_lr()[0], tokens=state.tokens, seconds=_seconds(setup),
                             peak_gib=peak_gib(setup.device))

    def skipped(self, setup: Setup, state: State, why: str) -> None:
        if self.metrics:
            self.metrics.log(step=state.step, skipped=why, tokens=state.tokens, seconds=_seconds(setup))

    def validated(self, setup: Setup, state: State, value: float) -> None:
        if self.metrics:
            self.metrics.log(step=state.step, val_loss=round(value, 6))

    def checkpoint(self, setup: Setup, state: State) -> None:
        if setup.main:
            assert setup.run_dir is not None
            self.last_checkpoint = save_checkpoint(setup.run_dir, setup.model, setup.optimizer, setup.scheduler,
                                                   state.step, state.saved(), keep=setup.config.run.keep)

    def diverged(self, setup: Setup, state: State, result: Result, reason: str) -> str | None:
        assert setup.run_dir is not None
        found = checkpoints(setup.run_dir)
        kept = (f"The last checkpoint, {found[-1]}, is untouched (`gemfuse tune --resume {setup.run_dir} --set "
                f"train.lr=...` continues from it).") if found else "No checkpoint was written before it."
        if setup.main:
            write_manifest(setup, "failed", result, error=f"{reason} {kept}")
            plot_loss(setup.run_dir)
        return kept

    def finished(self, setup: Setup, state: State, result: Result) -> None:
        assert setup.run_dir is not None and setup.target is not None
        if result.interrupted:
            if setup.main:
                write_manifest(setup, "interrupted", result)
                plot_loss(setup.run_dir)
            return
        result.adapter = setup.run_dir / "adapter"
        if setup.main:
            with published_folder(result.adapter) as staging:
                setup.model.save_pretrained(staging)
                setup.target.save(staging)
            write_manifest(setup, "done", result)
            plot_loss(setup.run_dir)


def _seconds(setup: Setup) -> float:
    return round(time.perf_counter() - setup.began, 3)


def peak_report(setup: Setup) -> PeakMemory:
    """The peak memory this run reached beside the estimate made before its first step."""
    peak, how = peak_used(setup.device)
    how += ", from the run's start" if setup.peak_from_start else ""
    if peak is None or setup.estimate is None:
        return {"peak_gib": None, "measured_by": how}
    return {"peak_gib": round(peak / GiB, 3), "measured_by": how,
            "estimate_gib": round(setup.estimate.total / GiB, 3),
            "peak_bytes": peak, "estimate_bytes": setup.estimate.total,  # exact: a small run's GiB round to 0.00x
            "estimate_over_peak": round(setup.estimate.total / peak, 3) if peak else None}


def write_manifest(setup: Setup, status: str, result: Result | None = None, error: str | None = None) -> None:
    assert setup.run_dir is not None and setup.base is not None and setup.target is not None
    assert setup.estimate is not None
    payload: RunManifest = {
        "status": status, "process": this_process(), "config": setup.config.model_dump(mode="json"),
        "base_model": setup.base.name, "base_folder": str(setup.base.folder),
        "family": setup.target.family.name, "chat_template": setup.target.chat_template,
        "device": setup.device, "dtype": str(setup.dtype).removeprefix("torch."), "world_size": setup.world,
        "seed": setup.config.train.seed, "data_hash": data_hash(setup.train_rows),
        "rows": {"train": len(setup.train_rows), "val": len(setup.val_rows)}, "total_steps": setup.total,
        "lora_modules": len(setup.modules), "trainable_parameters": setup.trainable,
        "memory_estimate": setup.estimate.as_dict(), "gradient_checkpointing": setup.checkpointing,
        "packages": package_versions(),
        "patches": [o.as_dict() for o in outcomes()],  # which of gemfuse's library patches fit (checked in-process)
    }
    if result is not None:
        payload["result"] = {"steps": result.steps, "train_loss": result.train_loss,
                             "best_val_loss": result.best_val_loss, "supervised_tokens": result.tokens,
                             "seconds": round(result.seconds, 2), "skipped_steps": result.skipped_steps,
                             "memory": peak_report(setup), "adapter": str(result.adapter) if result.adapter else None}
    if error is not None:
        payload["error"] = error
    write_json(Path(setup.run_dir) / MANIFEST, payload)
