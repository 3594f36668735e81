"""Judge honesty: only explicit verdicts count, a swap check really swaps, ties are told, and a local judge at
temperature 0 answers the same request the same way, constrained to a verdict it can be held to."""

import json

import pytest

from gemfuse.errors import InvalidAnswerError
from gemfuse.fusion import afuse
from gemfuse.fusion.judge import parse_verdict
from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.testing.scripted import ScriptedModel, scripted_registry

EXAMPLE = '{"best": <number of the best answer>, "reason": "<why, in one short sentence>"}'


def pool_of(n):
    return {f"m{i}": ScriptedModel(f"candidate {chr(65 + i)}") for i in range(n)}


@pytest.mark.parametrize("reply", ["The answer is 2.", "2 + 2 = 4", EXAMPLE, '{"best": 2, "reason": "one short sentence"}',
                                   "I am not sure which one is right, they all look reasonable."])
async def test_a_reply_that_is_no_verdict_degrades_through_the_chain(reply):
    judge = ScriptedModel(reply)
    registry = scripted_registry({**pool_of(3), "judge": judge})
    result = await afuse("What is 2 + 2?", pool=["m0", "m1", "m2"], judge="judge", mode="best-of", registry=registry,
                         seed=3)
    trace = result.trace
    assert trace.judge_choice is None and trace.degraded, reply
    assert "gave no readable choice" in trace.degraded_reason
    assert [c.role for c in trace.calls if c.role != "member"] == ["judge", "repair"], "one repair retry, then the vote"
    assert [v.read_as for v in trace.verdicts] == [None, None]


@pytest.mark.parametrize("reply, read_as", [('{"best": 2}', "json"), ("best: 2", "explicit"),
                                            ('Sure. {"best": 2, "reason": "it is right"}', "json"),
                                            ("Answer 2 is the best.", "explicit"), ("The best answer is 2.", "explicit")])
async def test_explicit_verdicts_choose(reply, read_as):
    registry = scripted_registry({**pool_of(3), "judge": ScriptedModel(reply)})
    result = await afuse("q", pool=["m0", "m1", "m2"], judge="judge", mode="best-of", registry=registry, seed=3)
    trace = result.trace
    assert trace.judge_choice == 2 and not trace.degraded
    assert result.chosen == trace.shown_order[1]
    assert trace.verdicts[0].read_as == read_as and trace.verdicts[0].choice == 2


def test_parse_verdict_never_reads_a_number_that_is_part_of_an_answer():
    assert parse_verdict("9 or 2", 3) == (None, None)
    assert parse_verdict('{"best": 9}', 3) == (None, None), "out of range"
    assert parse_verdict('{"best": "3"}', 3) == (3, "json")
    assert parse_verdict("Answer 3", 3) == (None, None), "naming an answer is not choosing it"


@pytest.mark.parametrize("n", [2, 3, 4])
async def test_the_swap_pass_shows_every_candidate_at_another_position(n):
    judge = ScriptedModel('{"best": 1}')  # always the first shown: a swap check must catch it
    registry = scripted_registry({**pool_of(n), "judge": judge})
    for seed in range(5):
        result = await afuse("q", pool=[f"m{i}" for i in range(n)], judge="judge", mode="best-of", swap_check=True,
                             registry=registry, seed=seed)
        first, second = (v.order for v in result.trace.verdicts)
        assert sorted(first) == sorted(second) and all(a != b for a, b in zip(first, second, strict=True))
        assert second == first[1:] + first[:1]
        assert result.trace.degraded and "swap check" in result.trace.degraded_reason
        assert [v.choice for v in result.trace.verdicts] == [1, 1]


async def test_a_consistent_judge_passes_the_swap_check():
    def picks_b(messages):
        text = messages[-1].text
        shown = [line for line in text.splitlines() if line.startswith("candidate")]
        return json.dumps({"best": shown.index("candidate B") + 1})

    registry = scripted_registry({**pool_of(3), "judge": ScriptedModel(picks_b)})
    result = await afuse("q", pool=["m0", "m1", "m2"], judge="judge", mode="best-of", swap_check=True,
                         registry=registry, seed=1)
    assert result.text == "candidate B" and not result.trace.degraded
    assert len(result.trace.verdicts) == 2


async def test_vote_ties_are_told_and_a_judge_can_break_them():
    registry = scripted_registry({"a": ScriptedModel("4"), "b": ScriptedModel("5"),
                                  "judge": ScriptedModel('{"best": 2}')})
    result = await afuse("2+2?", pool=["a", "b"], mode="vote", registry=registry)
    assert result.trace.tie and result.trace.degraded and result.text == "4"
    broken = await afuse("2+2?", pool=["a", "b"], mode="vote", judge="judge", tie_break="judge", registry=registry,
                         seed=2)
    assert broken.trace.tie and not broken.trace.degraded
    assert broken.chosen == broken.trace.shown_order[1] and broken.trace.judge_choice == 2
    clear = await afuse("2+2?", pool=["a", "a", "b"], mode="vote", registry=registry)
    assert not clear.trace.tie and not clear.trace.degraded


async def test_remote_judges_get_a_json_schema_and_endpoints_that_refuse_it_are_asked_plainly(upstream, isolated_config):
    from gemfuse.registry import Registry

    base_url, calls = upstream
    isolated_config.write_text("".join(f'[models.{name}]\nbackend = "openai"\nbase_url = "{base_url}"\nmodel = "{model}"\n'
                                       for name, model in (("a", "ok"), ("b", "slow-10"), ("judge", "judge-5"),
                                                           ("plain", "no-schema"))))
    registry = Registry.load()
    try:
        judged = await afuse("q", pool=["a", "b"], judge="judge", mode="best-of", registry=registry, seed=1)
        assert judged.trace.judge_choice == 1 and judged.trace.verdicts[0].read_as == "json"
        plain_model = registry.get("plain")
        before = calls["no-schema"]
        lenient = GenerateOptions(json_schema={"type": "object"}, json_lenient=True)  # as a judge asks
        reply = await plain_model.generate([Message.user("hi")], lenient)
        assert reply.text.startswith("echo:") and calls["no-schema"] == before + 2, "refused once, then asked plainly"
        await plain_model.generate([Message.user("hi")], lenient)
        assert calls["no-schema"] == before + 3, "remembered: no second refusal"
        with pytest.raises(InvalidAnswerError):  # a contract: checked, repaired once, never handed on broken
            await plain_model.generate([Message.user("hi")], GenerateOptions(json_schema={"type": "object"}))
        assert calls["no-schema"] == before + 5
    finally:
        await registry.aclose()
