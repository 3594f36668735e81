"""The eval's replay of a cascade is the cascade: for every final fusion and tier sampling a preset takes, the
cascade run once with a threshold nothing reaches, replayed at a threshold, gives on every item the answer's
correctness and the cost the real cascade run at that threshold gives."""

import json

import pytest

from gemfuse.evals.cache import CachingRegistry
from gemfuse.evals.calibration import NEVER, replay_cascade
from gemfuse.evals.datasets import load_eval_set
from gemfuse.evals.harness import Evaluator, run_one
from gemfuse.evals.settings import EvalSettings
from gemfuse.evals.systems import System
from gemfuse.fusion.preset import FusionPreset
from gemfuse.models.spec import Price
from gemfuse.testing.scripted import ScriptedModel, scripted_registry

THRESHOLDS = (-0.05, -0.15, -0.5, -0.95, -2.0)


def number(messages) -> int:
    return int(messages[-1].text.split()[2].rstrip("?"))


def member(wrong_when, unsure, sure, flaky):
    """Right unless `wrong_when(n)`, surer when right; a sample with an odd seed errs where `flaky(n)`, so a
    tier's two samples disagree there."""
    def reply(messages, options):
        n = number(messages)
        slip = (options.seed or 0) % 2 == 1 and flaky(n)
        return str(2 * n + int(wrong_when(n)) + int(slip))

    return ScriptedModel(reply, price=Price(input=1, output=2),
                         certainty=lambda m: unsure if wrong_when(number(m)) else sure)


@pytest.fixture
def items(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"What is {n}? Double it.", "answer": str(2 * n)}) + "\n"
                            for n in range(12)))
    return load_eval_set(path, dev_fraction=0.0).items


@pytest.mark.parametrize("samples", [1, 2])
@pytest.mark.parametrize("final", ["vote", "confidence", "best-of", "merge"])
async def test_the_replay_equals_the_cascade(items, final, samples):
    models = {"a": member(lambda n: n % 3 == 0, -1.0, -0.2, flaky=lambda n: n % 2 == 0),
              "b": member(lambda n: n % 4 == 0, -0.9, -0.3, flaky=lambda n: n % 3 == 1),
              "c": member(lambda n: n % 5 == 0, -0.6, -0.1, flaky=lambda n: n % 4 == 2),
              "judge": ScriptedModel(lambda m: '{"best": 2, "reason": "x"}' if "best" in m[-1].text else "24",
                                     price=Price(input=1, output=1))}
    registry = CachingRegistry(scripted_registry(models), None)
    settings = EvalSettings(scorer="numeric")
    evaluator = Evaluator(settings, "number", registry)

    def cascade(threshold):
        preset = FusionPreset(pool=["a", "b", "c"], mode="cascade", cascade_final=final, tier_samples=samples,
                              judge="judge", threshold=threshold, extractor="number", temperature=0.0)
        return System("cascade", "fusion", preset)

    probes = {item.id: await run_one(cascade(NEVER), item, registry, evaluator, 0) for item in items}
    escalated = set()
    for threshold in THRESHOLDS:
        for item in items:
            real = await run_one(cascade(threshold), item, registry, evaluator, 0)
            replayed = replay_cascade(probes[item.id], threshold)
            assert (replayed.correct, replayed.cost) == (bool(real.correct), pytest.approx(real.cost)), \
                (final, samples, threshold, item.id, real.tiers)
            escalated.add(replayed.tier)
    assert {1, None} <= escalated, "some items answered by the first tier, some by the final fusion"
