"""The run folder, written as the loop goes (a hook; rank 0 only): the manifest at the start and the end,
a metrics line per logged step, skip and validation, checkpoints with the loop's State, the adapter and the loss
curve at the end."""

from __future__ import annotations

import time

from ..paths import published_folder
from ..shapes import PeakMemory, RunManifest
from .checkpoint import checkpoints, load_checkpoint, save_checkpoint
from .guests import outcomes
from .loop import Hooks, State, all_gathered
from .memory import GiB, peak_gib, peak_used
from .run_folder import MANIFEST, Metrics, data_hash, package_versions, plot_loss, this_process, write_json
from .runtime import Result
from .setup import RunInfo, Setup
from .shard import gathered_optimizer, gathered_weights


def restore(setup: Setup, run: RunInfo) -> State:
    """The State of the run's latest checkpoint, with model, optimizer, scheduler and RNGs restored in place;
    a fresh State when none was written."""
    if run.resume_from is None:
        return State()
    return State.restored(load_checkpoint(run.resume_from, setup.model, setup.optimizer, setup.scheduler))


class RunWriter(Hooks):
    """The run folder of `run`, given at construction."""

    def __init__(self, run: RunInfo) -> None:
        self.run = run
        self.metrics: Metrics | None = None

    def started(self, setup: Setup, state: State) -> None:
        if not setup.main:
            return
        self.run.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = Metrics(self.run.run_dir, resume_step=state.step if self.run.resuming else None)
        write_manifest(setup, self.run, "running")

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
        gathered = (gathered_weights(setup.model), gathered_optimizer(setup.model, setup.optimizer)) \
            if setup.sharded else None  # every rank takes part in the gathering
        if setup.main:
            save_checkpoint(self.run.run_dir, setup.model, setup.optimizer, setup.scheduler, state.step,
                            state.saved(), keep=setup.config.run.keep, gathered=gathered)

    def diverged(self, setup: Setup, state: State, result: Result, reason: str) -> str | None:
        folder = self.run.run_dir
        found = checkpoints(folder)
        kept = (f"The last checkpoint, {found[-1]}, is untouched (`gemfuse tune --resume {folder} --set "
                f"train.lr=...` continues from it).") if found else "No checkpoint was written before it."
        if setup.main:
            write_manifest(setup, self.run, "failed", result, error=f"{reason} {kept}")
            plot_loss(folder)
        return kept

    def finished(self, setup: Setup, state: State, result: Result) -> None:
        folder = self.run.run_dir
        peaks = all_gathered(setup, peak_used(setup.device)[0])  # every rank's, gathered by all
        if result.interrupted:
            if setup.main:
                write_manifest(setup, self.run, "interrupted", result, peaks=peaks)
                plot_loss(folder)
            return
        result.adapter = folder / "adapter"
        weights = gathered_weights(setup.model) if setup.sharded else None  # every rank takes part
        if setup.main:
            with published_folder(result.adapter) as staging:
                setup.model.save_pretrained(str(staging), state_dict=weights)
                self.run.target.save(staging)
            write_manifest(setup, self.run, "done", result, peaks=peaks)
            plot_loss(folder)


def _seconds(setup: Setup) -> float:
    return round(time.perf_counter() - setup.began, 3)


def peak_report(setup: Setup, run: RunInfo, peaks: list[int | None] | None = None) -> PeakMemory:
    """The peak memory this run reached beside the estimate made before its first step (rank 0's; `peaks`, every
    rank's, are listed beside it in runs of several processes)."""
    peak, how = peak_used(setup.device)
    how += ", from the run's start" if run.peak_from_start else ""
    report: PeakMemory = {"peak_gib": None, "measured_by": how}
    if peak is not None:
        report.update({"peak_gib": round(peak / GiB, 3), "estimate_gib": round(run.estimate.total / GiB, 3),
                       "peak_bytes": peak, "estimate_bytes": run.estimate.total,  # exact: small runs round to 0.00x
                       "estimate_over_peak": round(run.estimate.total / peak, 3) if peak else None})
    if peaks and len(peaks) > 1:
        report["per_rank_gib"] = [None if p is None else round(p / GiB, 3) for p in peaks]
    return report


def write_manifest(setup: Setup, run: RunInfo, status: str, result: Result | None = None,
                   error: str | None = None, peaks: list[int | None] | None = None) -> None:
    payload: RunManifest = {
        "status": status, "process": this_process(), "config": setup.config.model_dump(mode="json"),
        "base_model": run.base.name, "base_folder": str(run.base.folder),
        "family": run.target.family.name, "chat_template": run.target.chat_template,
        "device": setup.device, "dtype": str(setup.dtype).removeprefix("torch."), "world_size": setup.world,
        "seed": setup.config.train.seed, "data_hash": data_hash(run.train_rows),
        "rows": {"train": len(run.train_rows), "val": len(run.val_rows)}, "total_steps": setup.total,
        "lora_modules": len(run.modules), "trainable_parameters": setup.trainable,
        "memory_estimate": run.estimate.as_dict(), "gradient_checkpointing": run.checkpointing,
        "packages": package_versions(),
        "patches": [o.as_dict() for o in outcomes()],  # which of gemfuse's library patches fit (checked in-process)
    }
    if result is not None:
        payload["result"] = {"steps": result.steps, "train_loss": result.train_loss,
                             "best_val_loss": result.best_val_loss, "supervised_tokens": result.tokens,
                             "seconds": round(result.seconds, 2), "skipped_steps": result.skipped_steps,
                             "memory": peak_report(setup, run, peaks), "adapter": str(result.adapter) if result.adapter else None}
    if error is not None:
        payload["error"] = error
    write_json(run.run_dir / MANIFEST, payload)
