"""One training run from set-up to the final adapter: data checked, model loaded and wrapped, the loop, the
checkpoints, the run folder. `train()` in train.py is the way in."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import ConfigError
from ..paths import published_folder
from .config import TuneConfig
from .runtime import (
    DataError,
    DivergedError,
    Result,
    Stop,
    distributed,
    elapsed,
    make_optimizer,
    schedule_factor,
    seed_everything,
)


class Session:
    def __init__(self, config: TuneConfig, resume: bool = False, console=None, on_step=None):
        self.config = config
        self.on_step = on_step
        self.resuming = resume
        self.run_dir = Path(config.out).expanduser()
        self.rank, self.world, self.local_rank = distributed()
        self.main = self.rank == 0
        from .progress import Reporter

        self.report = Reporter(console, enabled=self.main and config.run.progress)
        self.stop = Stop()

    def __enter__(self):
        self.stop.__enter__()
        return self

    def __exit__(self, *exc):
        self.stop.__exit__(*exc)
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    # -- set-up -------------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        import torch

        from ..data.collate import Collator
        from ..data.target import load_target
        from ..models.transformers import pick_device
        from .base import load_for_training, resolve_base, training_dtype
        from .batches import Plan
        from .lora import apply_lora

        cfg = self.config
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if self.main:  # the other ranks would see the folder rank 0 is already writing
            self._check_run_folder()
        device = pick_device(cfg.train.device)
        if self.world > 1:
            device = self._init_distributed(device)
        self.device = device
        self.dtype = training_dtype(device.split(":")[0], cfg.train.dtype)
        seed_everything(cfg.train.seed)
        self.base = resolve_base(cfg.model)
        self.target = load_target(str(self.base.folder))
        self.train_rows, self.val_rows = self._read_data()
        self.collator = Collator(self.target, cfg.data.max_length)
        self.plan = Plan(self.train_rows, self.collator, cfg.train.batch_size, cfg.train.grad_accum, cfg.train.seed,
                         cfg.data.packing, self.rank, self.world)
        self.total = cfg.train.max_steps or max(1, round(cfg.train.epochs * self.plan.steps_per_epoch))
        model = load_for_training(self.base, device, self.dtype, cfg.train.quantize)
        if cfg.train.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        self.model, self.modules = apply_lora(model, self.target.family, cfg.lora)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, cfg, device.split(":")[0])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: schedule_factor(s, self.total, cfg.train.warmup_steps, cfg.train.schedule))
        from .memory import estimate

        self.estimate = estimate(self.model, cfg, device, self.dtype, self.plan)

    def _check_run_folder(self) -> None:
        from .run_folder import is_run

        if self.resuming:
            return
        if is_run(self.run_dir) or (self.run_dir.exists() and any(self.run_dir.iterdir())):
            raise ConfigError(f"run folder {self.run_dir} already holds a run: continue it with "
                              f"`gemfuse tune --resume {self.run_dir}`, or set out to a new folder")

    def _init_distributed(self, device: str) -> str:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device == "cuda" else "gloo")
        if device == "cuda":
            torch.cuda.set_device(self.local_rank)
            return f"cuda:{self.local_rank}"
        return device

    def _read_data(self):
        import random

        from ..data.sources import read_rows
        from ..data.validate import validate_examples

        cfg = self.config.data
        train = read_rows(cfg.train, cfg.messages_field)
        val = read_rows(cfg.val, cfg.messages_field) if cfg.val else []
        files = [cfg.train] + ([cfg.val] if cfg.val else [])
        report = validate_examples([train, val] if cfg.val else [train], files, self.target, max_length=cfg.max_length)
        if not report.ok:
            errors = [i for i in report.issues if i.severity == "error"]
            shown = "\n".join(f"  {i}" for i in errors[:20])
            more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
            raise DataError(f"the training data has {len(errors)} errors; nothing was trained. Fix them "
                            f"(gemfuse data validate shows them all):\n{shown}{more}")
        self.report.warnings([i for i in report.issues if i.severity == "warning"])
        if not cfg.val and cfg.val_fraction:
            order = list(range(len(train)))
            random.Random(self.config.train.seed).shuffle(order)
            cut = max(1, round(len(train) * cfg.val_fraction))
            held = set(order[:cut])
            val = [e for i, e in enumerate(train) if i in held]
            train = [e for i, e in enumerate(train) if i not in held]
        if not train:
            raise DataError(f"{cfg.train}: no training rows")
        return train, val

    # -- the loop -----------------------------------------------------------------------------------------------
    def run(self) -> Result:
        from .checkpoint import checkpoints, load_checkpoint
        from .run_folder import Metrics

        started = time.perf_counter()
        self.prepare()
        step, state = 0, {}
        if self.resuming:
            found = checkpoints(self.run_dir)
            if found:
                state = load_checkpoint(found[-1], self.model, self.optimizer, self.scheduler)
                step = state["step"]
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.metrics = Metrics(self.run_dir, resume_step=step if self.resuming else None)
            self._write_manifest("running")
        self.tokens = state.get("tokens", 0)
        self.best_val = state.get("best_val")
        self.skipped = state.get("skipped", 0)
        self.last_loss = None
        self.report.start(self, step)
        cfg = self.config
        interrupted = False
        bad_run: list[tuple[int, str]] = []  # the current streak of skipped steps
        while step < self.total:
            loss, count, norm, skipped = self._step(step)
            step += 1
            self.tokens += count
            if skipped:
                self.skipped += 1
                bad_run.append((step, skipped))
                if self.main:
                    self.metrics.log(step=step, skipped=skipped, tokens=self.tokens, seconds=round(elapsed(started), 3))
                self.report.note(f"[yellow]step {step}: {skipped}; skipped, the weights were not changed[/]")
                if len(bad_run) >= cfg.train.max_skipped_steps:
                    self._diverged(bad_run, started)
                continue
            bad_run.clear()
            self.last_loss = loss
            if self.main and (step % cfg.run.log_every == 0 or step == self.total):
                self.metrics.log(step=step, loss=round(loss, 6), grad_norm=round(norm, 6),
                                 lr=self.scheduler.get_last_lr()[0], tokens=self.tokens,
                                 seconds=round(elapsed(started), 3), peak_gib=self._peak_gib())
            self.report.step(step, loss, self.tokens)
            if self.val_rows and cfg.run.eval_every and step % cfg.run.eval_every == 0 and step < self.total:
                self._validate(step)
            if self.on_step is not None and self.on_step(step, loss) and not self.stop.requested:
                self.stop.requested = "on_step"
            if self.stop.requested:
                self._checkpoint(step)
                interrupted = True
                break
            if cfg.run.save_every and step % cfg.run.save_every == 0 and step < self.total:
                self._checkpoint(step)
        adapter = None
        if not interrupted:
            if self.val_rows:
                self._validate(step)
            adapter = self._save_adapter()
        result = Result(self.run_dir, adapter, step, interrupted, self.last_loss, self.best_val, self.tokens,
                        elapsed(started), self.skipped)
        if self.main:
            self._write_manifest("interrupted" if interrupted else "done", result)
            from .run_folder import plot_loss

            plot_loss(self.run_dir)
        self.report.finish(result, self.stop.requested)
        return result

    def _step(self, step: int) -> tuple[float, int, float, str | None]:
        """One optimizer step over grad_accum micro-batches; returns (mean loss per supervised token, tokens,
        gradient norm, why it was skipped). A non-finite loss or gradient never reaches the weights."""
        import math

        import torch

        from .batches import supervised_count
        from .loss import model_parts, supervised_loss

        self.model.train()
        batches = self.plan.step_batches(step)
        counts = [supervised_count(b) for b in batches]
        total = self._all_sum(sum(counts))
        parts = model_parts(self.model)
        summed = 0.0
        for batch in batches:
            if batch is None:
                continue
            batch = self._to_device(batch)
            loss, _ = supervised_loss(self.model, batch, parts=parts)
            (loss / max(total, 1)).backward()
            summed += float(loss.detach())
        self._all_reduce_grads()
        loss_value = self._all_sum(summed) / max(total, 1)
        # the norm is the same on every rank (gradients are already summed), so every rank takes the same branch
        if self.config.train.max_grad_norm:
            norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.config.train.max_grad_norm))
        else:
            norm = float(torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None]))
        skipped = None
        if not math.isfinite(loss_value):
            skipped = f"loss {loss_value}"
        elif not math.isfinite(norm):
            skipped = f"gradient norm {norm}"
        else:
            self.optimizer.step()
        self.scheduler.step()  # the schedule follows the step counter, which fixes the data position
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value, int(total), norm, skipped

    def _to_device(self, batch: dict) -> dict:
        import torch

        out = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device, non_blocking=True)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            out[key] = value
        return out

    def _all_sum(self, value: float) -> float:
        if self.world == 1:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item())

    def _all_reduce_grads(self) -> None:
        """Sum the ranks' gradients (each already divided by the global supervised count): one flat reduce."""
        if self.world == 1:
            return
        import torch
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(self.params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(g).to(g.dtype)
            offset += n

    def _validate(self, step: int) -> float:
        import torch

        from ..data.collate import length_grouped_batches
        from .batches import row_lengths
        from .loss import model_parts, supervised_loss

        self.model.eval()
        parts = model_parts(self.model)
        lengths = row_lengths(self.val_rows, self.collator)
        groups = length_grouped_batches(lengths, self.config.train.batch_size, seed=0)
        summed, count = 0.0, 0
        with torch.no_grad():
            for group in groups[self.rank::self.world]:
                batch = self._to_device(self.collator([self.val_rows[i] for i in group]))
                loss, n = supervised_loss(self.model, batch, parts=parts)
                summed += float(loss)
                count += n
        value = self._all_sum(summed) / max(1, self._all_sum(count))
        if self.best_val is None or value < self.best_val:
            self.best_val = value
        if self.main:
            self.metrics.log(step=step, val_loss=round(value, 6))
        self.report.validation(step, value)
        return value

    def _diverged(self, streak: list[tuple[int, str]], started: float) -> None:
        """Stop: the weights still hold the last finite step; the checkpoints on disk stay as they are."""
        from .checkpoint import checkpoints

        steps = ", ".join(str(s) for s, _ in streak)
        found = checkpoints(self.run_dir)
        kept = (f"the last checkpoint, {found[-1]}, is untouched (`gemfuse tune --resume {self.run_dir} --set "
                f"train.lr=...` continues from it)") if found else "no checkpoint was written before it"
        reason = (f"training diverged: steps {steps} in a row were not finite ({streak[-1][1]}); none of them "
                  f"changed the weights and no adapter was saved; {kept}. Try a lower train.lr (now "
                  f"{self.config.train.lr:g}), train.max_grad_norm, or look at the rows those steps read "
                  f"(gemfuse data validate)")
        result = Result(self.run_dir, None, streak[-1][0], False, self.last_loss, self.best_val, self.tokens,
                        elapsed(started), self.skipped)
        if self.main:
            self._write_manifest("failed", result, error=reason)
            from .run_folder import plot_loss

            plot_loss(self.run_dir)
        self.report.close()
        raise DivergedError(reason)

    def _checkpoint(self, step: int) -> None:
        if self.main:
            from .checkpoint import save_checkpoint

            path = save_checkpoint(self.run_dir, self.model, self.optimizer, self.scheduler, step,
                                   {"tokens": self.tokens, "best_val": self.best_val, "skipped": self.skipped},
                                   keep=self.config.run.keep)
            self.report.note(f"checkpoint: {path}")
        self._barrier()

    def _barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def _save_adapter(self) -> Path:
        final = self.run_dir / "adapter"
        if self.main:
            with published_folder(final) as staging:
                self.model.save_pretrained(staging)
                tokenizer = self.target.tokenizer
                if not tokenizer.chat_template:  # trained on the family's template: keep it with the adapter
                    tokenizer.chat_template = self.target.chat_template
                self.target.processor.save_pretrained(staging)
        self._barrier()
        return final

    def _peak_gib(self) -> float | None:
        from .memory import GiB, peak_used

        peak, _ = peak_used(self.device)
        return None if peak is None else round(peak / GiB, 3)

    def _peak(self) -> dict:
        """The peak memory this run reached beside the estimate made before its first step."""
        from .memory import GiB, peak_used

        peak, how = peak_used(self.device)
        if peak is None:
            return {"peak_gib": None, "measured_by": how}
        return {"peak_gib": round(peak / GiB, 3), "measured_by": how,
                "estimate_gib": round(self.estimate.total / GiB, 3),
                "estimate_over_peak": round(self.estimate.total / peak, 3) if peak else None}

    def _write_manifest(self, status: str, result: Result | None = None, error: str | None = None) -> None:
        from .run_folder import MANIFEST, data_hash, package_versions, this_process, write_json

        payload = {
            "status": status, "process": this_process(), "config": self.config.model_dump(mode="json"),
            "base_model": self.base.name, "base_folder": str(self.base.folder),
            "family": self.target.family.name, "chat_template": self.target.chat_template,
            "device": self.device, "dtype": str(self.dtype).removeprefix("torch."), "world_size": self.world,
            "seed": self.config.train.seed, "data_hash": data_hash(self.train_rows),
            "rows": {"train": len(self.train_rows), "val": len(self.val_rows)}, "total_steps": self.total,
            "lora_modules": len(self.modules), "trainable_parameters": sum(p.numel() for p in self.params),
            "memory_estimate": self.estimate.as_dict(), "packages": package_versions(),
        }
        if result is not None:
            payload["result"] = {"steps": result.steps, "train_loss": result.train_loss,
                                 "best_val_loss": result.best_val_loss, "supervised_tokens": result.tokens,
                                 "seconds": round(result.seconds, 2), "skipped_steps": result.skipped_steps,
                                 "memory": self._peak(),
                                 "adapter": str(result.adapter) if result.adapter else None}
        if error is not None:
            payload["error"] = error
        write_json(self.run_dir / MANIFEST, payload)
