"""The training loop, top to bottom: `loop(setup, hooks, state)` runs optimizer steps until `setup.total`.

- A step sums every micro-batch's loss over supervised tokens and divides by the supervised tokens of the whole
  step (all ranks), so 4 micro-batches of 1 equal one batch of 4, and 2 ranks x 2 equal both.
- A non-finite loss or gradient norm never reaches the weights: the step is skipped (the schedule still moves,
  as the step counter fixes the data position); `train.max_skipped_steps` in a row stop the run as diverged.
- Divergence that stays finite stops it too: as many steps in a row whose loss is far above the first step's
  (more than 3x it, plus 2), or whose gradient is exactly zero while the loss is not (a saturated model).
- What happens around it (the run folder, the progress display, signals, a caller's callback) are hooks; the
  mutable part of a run is one `State`, which checkpoints save and restore as it is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .batches import supervised_count
from .runtime import DivergedError, Result
from .setup import Setup
from .shard import clip_gradients, is_sharded


@dataclass
class State:
    step: int = 0  # optimizer steps done
    tokens: int = 0  # supervised tokens trained on
    best_val: float | None = None
    skipped: int = 0  # steps left out because their loss or gradient was not finite
    last_loss: float | None = None
    streak: list[tuple[int, str]] = field(default_factory=list)  # the current run of skipped steps
    first_loss: float | None = None  # the first finite step's: where divergence is measured from
    drift: list[tuple[int, str]] = field(default_factory=list)  # the current run of finite but diverging steps
    stopped_by: str | None = None  # a signal's name, or the hook that asked to stop

    def saved(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def restored(cls, saved: dict[str, Any]) -> State:
        names = {f.name for f in fields(cls)} - {"stopped_by"}
        state = cls(**{k: v for k, v in saved.items() if k in names})
        state.streak = [tuple(s) for s in state.streak]  # type: ignore[misc]
        state.drift = [tuple(s) for s in state.drift]  # type: ignore[misc]
        return state


class Hooks:
    """Around the loop; every method does nothing here. The run folder, the progress display, signal handling
    and a caller's callback are hooks, called in the order given."""

    def started(self, setup: Setup, state: State) -> None: ...
    def stepped(self, setup: Setup, state: State, loss: float, norm: float) -> None: ...
    def skipped(self, setup: Setup, state: State, why: str) -> None: ...
    def validated(self, setup: Setup, state: State, value: float) -> None: ...
    def checkpoint(self, setup: Setup, state: State) -> None: ...
    def stop_requested(self, setup: Setup, state: State) -> str | None:
        return None
    def diverged(self, setup: Setup, state: State, result: Result, reason: str) -> str | None:
        """Called before the loop raises DivergedError(reason); may return a sentence to add (where work was kept)."""
        return None
    def finished(self, setup: Setup, state: State, result: Result) -> None:
        """The last step is done (or the run was stopped); may set result.adapter."""


def loop(setup: Setup, hooks: Sequence[Hooks] = (), state: State | None = None) -> Result:
    state = state if state is not None else State()
    config = setup.config
    for hook in hooks:
        hook.started(setup, state)
    while state.step < setup.total:
        loss, count, norm, why = train_step(setup, state.step)
        state.step += 1
        state.tokens += count
        if why is not None:
            state.skipped += 1
            state.streak.append((state.step, why))
            for hook in hooks:
                hook.skipped(setup, state, why)
            if len(state.streak) >= config.train.max_skipped_steps:
                _diverged(setup, state, hooks)
            continue
        state.streak.clear()
        state.last_loss = loss
        state.first_loss = loss if state.first_loss is None else state.first_loss
        for hook in hooks:
            hook.stepped(setup, state, loss, norm)
        sign = drifting(state.first_loss, loss, norm)
        state.drift = [*state.drift, (state.step, sign)] if sign else []
        if len(state.drift) >= config.train.max_skipped_steps:
            _diverged(setup, state, hooks)
        every = config.run.eval_every
        if setup.validation is not None and every and state.step % every == 0 and state.step < setup.total:
            validate(setup, state, hooks)
        state.stopped_by = agreed_stop(setup, next((s for s in (h.stop_requested(setup, state) for h in hooks) if s),
                                                   None))
        if state.stopped_by:
            _checkpoint(setup, state, hooks)
            break
        if config.run.save_every and state.step % config.run.save_every == 0 and state.step < setup.total:
            _checkpoint(setup, state, hooks)
    if not state.stopped_by and setup.validation is not None:
        validate(setup, state, hooks)
    result = _result(setup, state, interrupted=bool(state.stopped_by))
    for hook in hooks:
        hook.finished(setup, state, result)
    barrier(setup)
    return result


def train_step(setup: Setup, step: int) -> tuple[float, int, float, str | None]:
    """One optimizer step over the plan's micro-batches: (mean loss per supervised token, supervised tokens,
    gradient norm, why it was skipped or None)."""
    setup.model.train()
    batches = setup.plan.step_batches(step)
    total = all_sum(setup, sum(supervised_count(b) for b in batches))
    summed = 0.0
    for batch in batches:
        if batch is None:
            continue
        loss, _ = setup.loss(to_device(setup, batch))
        (loss / max(total, 1)).backward()
        summed += float(loss.detach())
    all_reduce_grads(setup)
    loss_value = all_sum(setup, summed) / max(total, 1)
    # the norm is the same on every rank (gradients are already summed), so every rank takes the same branch
    norm = clip_gradients(setup.params, setup.config.train.max_grad_norm)
    why = f"loss {loss_value}" if not math.isfinite(loss_value) else \
        f"gradient norm {norm}" if not math.isfinite(norm) else None
    if why is None:
        setup.optimizer.step()
    setup.scheduler.step()
    setup.optimizer.zero_grad(set_to_none=True)
    return loss_value, int(total), norm, why


def validate(setup: Setup, state: State, hooks: Sequence[Hooks]) -> float:
    """Loss per supervised token over the validation rows (all ranks)."""
    import torch

    assert setup.validation is not None
    setup.model.eval()
    summed, count = 0.0, 0
    with torch.no_grad():
        for batch in setup.validation():
            loss, n = setup.loss(to_device(setup, batch))
            summed += float(loss)
            count += n
    value = all_sum(setup, summed) / max(1, all_sum(setup, count))
    if state.best_val is None or value < state.best_val:
        state.best_val = value
    for hook in hooks:
        hook.validated(setup, state, value)
    return value


def to_device(setup: Setup, batch: dict) -> dict:
    import torch

    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(setup.device, non_blocking=True)
            if value.is_floating_point() and setup.dtype is not None:
                value = value.to(setup.dtype)
        out[key] = value
    return out


def all_sum(setup: Setup, value: float) -> float:
    if setup.world == 1:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([float(value)], dtype=torch.float64, device=setup.device)
    dist.all_reduce(tensor)
    return float(tensor.item())


def agreed_stop(setup: Setup, requested: str | None) -> str | None:
    """Every rank stops after the same step, when any rank was asked to (a signal reaches the processes of a job
    between different steps; a rank that stopped alone would leave the others waiting in a collective)."""
    if setup.world == 1 or all_sum(setup, float(requested is not None)) == 0:
        return requested
    return requested or "another process of the run was stopped"


def all_gathered(setup: Setup, value: Any) -> list:
    """Every rank's `value`, rank 0 first (a collective: every rank calls it)."""
    if setup.world == 1:
        return [value]
    import torch.distributed as dist

    found: list = [None] * setup.world
    dist.all_gather_object(found, value)
    return found


def all_reduce_grads(setup: Setup) -> None:
    """Sum the ranks' gradients (each already divided by the global supervised count): one flat reduce. A sharded
    weight's gradient was summed by FSDP's reduce-scatter already."""
    if setup.world == 1:
        return
    import torch
    import torch.distributed as dist

    whole = [p for p in setup.params if not is_sharded(p)]
    if not whole:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in whole]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(whole, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(g).to(g.dtype)
        offset += n


def barrier(setup: Setup) -> None:
    if setup.world > 1:
        import torch.distributed as dist

        dist.barrier()


def _checkpoint(setup: Setup, state: State, hooks: Sequence[Hooks]) -> None:
    for hook in hooks:
        hook.checkpoint(setup, state)
    barrier(setup)


def _result(setup: Setup, state: State, interrupted: bool) -> Result:
    return Result(setup.run.run_dir if setup.run else None, None, state.step, interrupted, state.last_loss,
                  state.best_val, state.tokens, time.perf_counter() - setup.began, state.skipped)


def drifting(first: float, loss: float, norm: float) -> str | None:
    """Why this finite step looks diverged, or None: a loss far above the first step's, or no gradient at all."""
    if loss > FAR * first + MARGIN:
        return f"loss {loss:.4g} against {first:.4g} at the first step"
    if norm == 0.0 and loss > 0:
        return f"a gradient of exactly zero at loss {loss:.4g}"
    return None


FAR, MARGIN = 3.0, 2.0  # how far above the first step's loss a loss must stay to count as diverged


def _diverged(setup: Setup, state: State, hooks: Sequence[Hooks]) -> None:
    """Stop. After non-finite steps the weights still hold the last finite step; after finite divergence they are
    a diverged model's: either way no adapter is saved."""
    lr = setup.config.train.lr
    if state.streak:
        steps = ", ".join(str(s) for s, _ in state.streak)
        reason = (f"training diverged: steps {steps} in a row were not finite ({state.streak[-1][1]}); none of them "
                  f"changed the weights and no adapter was saved. Try a lower train.lr (now {lr:g}), "
                  "train.max_grad_norm, or look at the rows those steps read (gemfuse data validate).")
    else:
        steps = ", ".join(str(s) for s, _ in state.drift)
        reason = (f"training diverged: steps {steps} in a row went far from where the run began "
                  f"({state.drift[-1][1]}); no adapter was saved. Lower train.lr (now {lr:g}; LoRA usually "
                  "learns at 1e-4 to 1e-2).")
    result = _result(setup, state, interrupted=False)
    kept = [extra for extra in (h.diverged(setup, state, result, reason) for h in hooks) if extra]
    raise DivergedError(" ".join([reason, *kept]))
