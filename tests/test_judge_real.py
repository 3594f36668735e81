"""The built-in SmolLM2 as a best-of judge, constrained to the verdict JSON: it gives a verdict nearly always, and
the same request asked twice in one process gets the same reply."""

import pytest

from gemfuse.evals.generators import generate
from gemfuse.fusion import afuse
from gemfuse.fusion.judge import parse_verdict
from gemfuse.registry import Registry
from gemfuse.testing.scripted import ScriptedModel, scripted_registry

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only


@pytest.mark.slow
async def test_constrained_smollm2_judge_gives_verdicts_and_repeats_itself():
    real = Registry.load()
    judge = real.get("smollm2-135m")
    problems = generate("math", 30, seed=7)
    registry = scripted_registry({"right": ScriptedModel(lambda m: f"The answer is {answers[m[-1].text]}."),
                                  "wrong": ScriptedModel(lambda m: f"The answer is {int(answers[m[-1].text]) + 3}.")})
    registry._models["smollm2-135m"] = judge
    registry.config.specs["smollm2-135m"] = real.spec("smollm2-135m")
    answers = {p["prompt"]: p["answer"] for p in problems}
    try:
        verdicts, first_replies = 0, []
        for i, problem in enumerate(problems):
            result = await afuse(problem["prompt"], pool=["right", "wrong"], judge="smollm2-135m", mode="best-of",
                                 registry=registry, seed=i, judge_max_tokens=24)
            first = result.trace.verdicts[0]
            assert first.role == "judge"
            verdicts += first.read_as == "json"
            first_replies.append(first.reply)
        assert verdicts >= 29, f"{verdicts} of 30 first replies were JSON verdicts"
        # the same judge request again, in the same process: the same reply
        for i, problem in enumerate(problems[:3]):
            again = await afuse(problem["prompt"], pool=["right", "wrong"], judge="smollm2-135m", mode="best-of",
                                registry=registry, seed=i, judge_max_tokens=24)
            assert again.trace.verdicts[0].reply == first_replies[i]
        assert parse_verdict(first_replies[0], 2)[1] == "json"
    finally:
        await real.aclose()
