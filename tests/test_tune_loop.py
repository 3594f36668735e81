"""The loop driven with a two-layer toy model (no Gemma, no run folder): it learns, counts supervised tokens,
calls its hooks in order, equals one big batch when accumulating, never lets a non-finite step reach the
weights, stops when a hook asks, and a State saved at a stop and restored continues to the weights an
uninterrupted loop reaches."""

import copy
from dataclasses import replace

import pytest

from gemfuse.tune import DivergedError, load_tune_config
from gemfuse.tune.loop import Hooks, State, loop
from gemfuse.tune.runtime import make_optimizer, schedule_factor
from gemfuse.tune.setup import Setup

VOCAB, WIDTH, IGNORE = 12, 16, -100


def rows(seed=0, n=8, length=6):
    """Sequences whose next token is (token + 1) mod VOCAB; the first two positions are a prompt (unsupervised)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, VOCAB, (n, 1), generator=generator)
    ids = (starts + torch.arange(length)) % VOCAB
    labels = ids.clone()
    labels[:, :2] = IGNORE
    return ids, labels


class ToyPlan:
    """Step k's rows are all `n` rows, cut into `micro` micro-batches."""

    def __init__(self, micro: int = 1, nan_steps=()):
        self.ids, self.labels = rows()
        self.micro = micro
        self.nan_steps = set(nan_steps)

    def step_batches(self, step):
        size = len(self.ids) // self.micro
        return [{"input_ids": self.ids[i:i + size], "labels": self.labels[i:i + size], "poison": step + 1 in self.nan_steps}
                for i in range(0, len(self.ids), size)]


def toy_setup(micro=1, nan_steps=(), total=12, validate=False, **train):
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(VOCAB, WIDTH), torch.nn.Linear(WIDTH, VOCAB))
    config = load_tune_config(None, [], base={"model": "toy", "out": "unused", "data": {"train": "unused.jsonl"},
                                              "train": {"max_steps": total, "lr": 5e-2, "schedule": "cosine",
                                                        "warmup_steps": 2, **train}})
    params = list(model.parameters())
    optimizer = make_optimizer(params, config, "cpu")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: schedule_factor(s, total, 2, "cosine"))

    def loss(batch):
        logits = model(batch["input_ids"][:, :-1])
        targets = batch["labels"][:, 1:]
        value = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), reduction="sum",
                                                  ignore_index=IGNORE)
        return value * float("nan") if batch.get("poison") else value, int((targets != IGNORE).sum())

    plan = ToyPlan(micro, nan_steps)
    validation = (lambda: iter([{"input_ids": plan.ids, "labels": plan.labels}])) if validate else None
    return Setup(config=config, model=model, params=params, optimizer=optimizer, scheduler=scheduler, plan=plan,
                 loss=loss, total=total, validation=validation)


def weights(setup):
    return {k: v.detach().clone() for k, v in setup.model.state_dict().items()}


class Recorder(Hooks):
    def __init__(self, stop_at=None):
        self.events, self.stop_at, self.saved = [], stop_at, None

    def started(self, setup, state):
        self.events.append(("started", state.step))

    def stepped(self, setup, state, loss, norm):
        self.events.append(("stepped", state.step))
        self.losses = getattr(self, "losses", []) + [loss]

    def skipped(self, setup, state, why):
        self.events.append(("skipped", state.step, why))

    def validated(self, setup, state, value):
        self.events.append(("validated", state.step))

    def checkpoint(self, setup, state):
        self.events.append(("checkpoint", state.step))
        self.saved = (copy.deepcopy(setup.model.state_dict()), copy.deepcopy(setup.optimizer.state_dict()),
                      copy.deepcopy(setup.scheduler.state_dict()), state.saved())

    def stop_requested(self, setup, state):
        return "asked" if state.step == self.stop_at else None

    def diverged(self, setup, state, result, reason):
        self.events.append(("diverged", state.step))
        return "kept nothing."

    def finished(self, setup, state, result):
        self.events.append(("finished", state.step))


def test_the_loop_learns_counts_tokens_and_calls_its_hooks_in_order():
    setup = toy_setup(total=12, validate=True)
    recorder = Recorder()
    result = loop(setup, [recorder])
    assert result.steps == 12 and not result.interrupted and result.skipped_steps == 0 and result.run is None
    assert result.tokens == 12 * 8 * 4, "8 rows x 4 supervised next tokens, every step"
    assert recorder.losses[-1] < recorder.losses[0] / 4, recorder.losses
    assert result.best_val_loss is not None and result.best_val_loss < recorder.losses[0]
    assert recorder.events == [("started", 0)] + [("stepped", s) for s in range(1, 13)] + [
        ("validated", 12), ("finished", 12)]


def test_accumulating_micro_batches_equals_one_big_batch():
    one, four = toy_setup(micro=1, total=4), toy_setup(micro=4, total=4)
    loop(one)
    loop(four)
    a, b = weights(one), weights(four)
    assert all(a[k].allclose(b[k], atol=1e-6) for k in a)


def test_a_non_finite_step_never_reaches_the_weights():
    import torch

    setup = toy_setup(total=2, nan_steps={2}, schedule="constant")
    recorder = Recorder()
    result = loop(setup, [recorder])
    assert result.skipped_steps == 1 and ("skipped", 2, "loss nan") in recorder.events
    after_one = toy_setup(total=2, schedule="constant")
    loop(replace(after_one, total=1))
    assert all(torch.equal(v, weights(after_one)[k]) for k, v in weights(setup).items())


def test_a_streak_of_non_finite_steps_stops_as_diverged():
    import torch

    setup = toy_setup(total=20, nan_steps=set(range(4, 21)), max_skipped_steps=3)
    recorder = Recorder()
    with pytest.raises(DivergedError, match=r"steps 4, 5, 6 in a row were not finite.*train\.lr.*kept nothing"):
        loop(setup, [recorder])
    assert recorder.events[-1] == ("diverged", 6) and ("finished", 6) not in recorder.events
    assert all(bool(torch.isfinite(v).all()) for v in weights(setup).values())


def test_a_state_saved_at_a_stop_continues_to_the_uninterrupted_weights():
    whole = toy_setup(total=10)
    loop(whole)
    first = toy_setup(total=10)
    recorder = Recorder(stop_at=4)
    stopped = loop(first, [recorder])
    assert stopped.interrupted and stopped.steps == 4 and recorder.events[-2:] == [("checkpoint", 4), ("finished", 4)]
    model, optimizer, scheduler, saved = recorder.saved
    assert saved["step"] == 4 and saved["tokens"] == 4 * 32 and saved["stopped_by"] == "asked"
    again = toy_setup(total=10)
    again.model.load_state_dict(model)
    again.optimizer.load_state_dict(optimizer)
    again.scheduler.load_state_dict(scheduler)
    state = State.restored(saved)
    assert state.stopped_by is None
    result = loop(again, [], state)
    assert result.steps == 10 and result.tokens == 10 * 32
    a, b = weights(whole), weights(again)
    assert all(a[k].equal(b[k]) for k in a), "bit for bit"


def test_a_finite_divergence_stops_the_loop_with_its_reason():
    """lr 1e6 (a typo away from 1e-6): the loss leaps and stays far above where it began without ever being NaN."""
    import math

    import torch

    setup = toy_setup(total=30, lr=1e6, schedule="constant", warmup_steps=0)
    generator = torch.Generator().manual_seed(1)  # labels no model fits exactly: the loss cannot fall to zero
    setup.plan.labels[:, 2:] = torch.randint(0, VOCAB, setup.plan.labels[:, 2:].shape, generator=generator)
    recorder = Recorder()
    with pytest.raises(DivergedError, match=r"in a row went far from where the run began.*train\.lr \(now 1e\+06"):
        loop(setup, [recorder])
    assert recorder.events[-1][0] == "diverged" and recorder.events[-1][1] < 30
    assert all(math.isfinite(x) for x in recorder.losses), "finite all along: the non-finite guard never fired"


def test_drift_is_a_loss_far_above_the_first_or_a_dead_gradient_and_a_spike_that_recovers_is_not():
    from gemfuse.tune.loop import drifting

    assert drifting(5.45, 40.7, 3.0) and drifting(5.45, 600.0, 0.0)
    assert drifting(2.0, 1.0, 0.0) and not drifting(2.0, 0.0, 0.0)  # no gradient while the loss is not zero
    assert not drifting(5.45, 9.0, 1.0) and not drifting(0.05, 1.5, 1.0)  # noise, not divergence
    setup = toy_setup(total=12)
    recorder = Recorder()
    loop(setup, [recorder])  # an ordinary run never stops
    assert recorder.events[-1] == ("finished", 12)


def test_more_processes_than_gpus_are_refused_in_one_line(monkeypatch):
    """Two processes on a one-GPU node: rank 1 is refused before anything loads, never 'invalid device ordinal'."""
    import torch

    from gemfuse.errors import ConfigError
    from gemfuse.tune.setup import rank_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert rank_device("cuda", 0, 2) == "cuda:0"
    with pytest.raises(ConfigError, match=r"2 processes but this node has 1 CUDA GPU: .*--nproc-per-node 1.*'cpu'"):
        rank_device("cuda", 1, 2)
    with pytest.raises(ConfigError, match="MPS"):
        rank_device("mps", 0, 2)
    assert rank_device("cpu", 5, 8) == "cpu"
