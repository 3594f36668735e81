"""Fusion logic, deterministic: every mode, the judge chain, quorum and deadlines, accounting, with scripted models."""

import json
import re
import time

import pytest

from gemfuse.errors import ConfigError, UpstreamError
from gemfuse.fusion import FusionPreset, QuorumError, afuse
from gemfuse.fusion.events import Delta
from gemfuse.fusion.judge import parse_choice
from gemfuse.fusion.preset import Member
from gemfuse.messages import Message
from gemfuse.models.spec import Price
from gemfuse.testing.scripted import ScriptedModel, scripted_registry


def judge_picking(word: str):
    """A judge that reads the anonymised answers and names the one containing `word`."""
    def reply(messages):
        prompt = messages[-1].text
        for number, body in re.findall(r"Answer (\d+):\n(.*?)(?=\n\nAnswer \d+:|\n\nWhich|$)", prompt, re.S):
            if word in body:
                return json.dumps({"best": int(number), "reason": f"it says {word}"})
        return '{"best": 1}'
    return reply


async def test_vote_extracts_and_counts_without_a_judge():
    registry = scripted_registry({"a": ScriptedModel("The answer is 4."), "b": ScriptedModel("5"),
                                  "c": ScriptedModel("I think it's 4")})
    result = await afuse("2+2?", pool=["a", "b", "c"], mode="vote", registry=registry)
    assert result.text == "The answer is 4." and result.chosen == "a"
    assert result.trace.votes == {"4": 2, "5": 1}
    assert not result.trace.degraded and [c.role for c in result.trace.calls] == ["member"] * 3


async def test_vote_takes_a_registered_extractor():
    from gemfuse.fusion.extract import register_extractor

    register_extractor("first-word", lambda text: text.split()[0].strip(",.").lower() if text.split() else None)
    registry = scripted_registry({"a": ScriptedModel("Yes, surely."), "b": ScriptedModel("no"),
                                  "c": ScriptedModel("yes it is")})
    result = await afuse("q", pool=["a", "b", "c"], mode="vote", extractor="first-word", registry=registry)
    assert result.trace.votes == {"yes": 2, "no": 1} and result.text == "Yes, surely."
    with pytest.raises(Exception, match="unknown extractor 'nope'"):
        await afuse("q", pool=["a"], mode="vote", extractor="nope", registry=registry)


async def test_vote_ties_break_by_pool_order_and_say_so():
    registry = scripted_registry({"a": ScriptedModel("(B)"), "b": ScriptedModel("(C)")})
    for pool, expected in ((["a", "b"], "(B)"), (["b", "a"], "(C)")):
        result = await afuse("pick one", pool=pool, mode="vote", extractor="letter", registry=registry)
        assert result.text == expected
        assert result.trace.degraded and "no two answers agreed" in result.trace.degraded_reason


async def test_best_of_returns_the_chosen_candidate_verbatim_and_anonymised():
    registry = scripted_registry({"model-alpha": ScriptedModel("Lyon is the capital."),
                                  "model-beta": ScriptedModel("Paris is the capital of France."),
                                  "judge": ScriptedModel(judge_picking("Paris"))})
    result = await afuse("Capital of France?", pool=["model-alpha", "model-beta"], judge="judge", mode="best-of",
                         registry=registry, seed=11)
    assert result.text == "Paris is the capital of France." and result.chosen == "model-beta"
    judge_prompt = registry.get("judge").calls[0][-1].text
    assert "model-alpha" not in judge_prompt and "model-beta" not in judge_prompt
    assert result.trace.seed == 11 and sorted(result.trace.shown_order) == ["model-alpha", "model-beta"]
    assert result.trace.judge_rationale == "it says Paris"
    again = await afuse("Capital of France?", pool=["model-alpha", "model-beta"], judge="judge", mode="best-of",
                        registry=registry, seed=11)
    assert again.trace.shown_order == result.trace.shown_order, "the recorded seed reproduces the order"


async def test_unreadable_judge_gets_one_repair_retry():
    judge = ScriptedModel(["I prefer the second one, clearly.", '{"best": 1}'])
    registry = scripted_registry({"a": ScriptedModel("x"), "b": ScriptedModel("y"), "judge": judge})
    result = await afuse("q", pool=["a", "b"], judge="judge", mode="best-of", registry=registry, seed=1)
    assert [c.role for c in result.trace.calls if c.role != "member"] == ["judge", "repair"]
    assert not result.trace.degraded and result.trace.judge_choice == 1
    assert "gave no verdict" in judge.calls[1][-1].text


async def test_judge_chain_backup_then_vote_is_reported_as_degraded():
    registry = scripted_registry({"a": ScriptedModel("7"), "b": ScriptedModel("7"), "c": ScriptedModel("9"),
                                  "judge": ScriptedModel(UpstreamError("boom")),
                                  "backup": ScriptedModel(judge_picking("9"))})
    result = await afuse("q", pool=["a", "b", "c"], judge="judge", backup_judge="backup", mode="best-of",
                         registry=registry)
    assert result.text == "9" and result.trace.degraded
    assert "judge judge failed: upstream" in result.trace.degraded_reason
    registry = scripted_registry({"a": ScriptedModel("7"), "b": ScriptedModel("7"), "c": ScriptedModel("9"),
                                  "judge": ScriptedModel("no idea"), "backup": ScriptedModel(UpstreamError("down"))})
    result = await afuse("q", pool=["a", "b", "c"], judge="judge", backup_judge="backup", mode="best-of",
                         registry=registry)
    assert result.text == "7" and result.trace.votes == {"7": 2, "9": 1}
    assert "no readable choice" in result.trace.degraded_reason and "backup_judge backup failed" in result.trace.degraded_reason


async def test_swap_check_rejects_a_position_biased_judge():
    members = {n: ScriptedModel(t) for n, t in (("a", "alpha"), ("b", "beta"), ("c", "gamma"))}
    seed = next(s for s in range(100) if _orders_differ(s))
    registry = scripted_registry({**members, "judge": ScriptedModel('{"best": 1}')})  # always the first shown
    result = await afuse("q", pool=["a", "b", "c"], judge="judge", mode="best-of", swap_check=True, seed=seed,
                         registry=registry)
    assert result.trace.degraded and "swap check" in result.trace.degraded_reason
    registry = scripted_registry({**members, "judge": ScriptedModel(judge_picking("beta"))})
    result = await afuse("q", pool=["a", "b", "c"], judge="judge", mode="best-of", swap_check=True, seed=seed,
                         registry=registry)
    assert result.text == "beta" and not result.trace.degraded


def _orders_differ(seed: int) -> bool:
    import random

    first, second = list("abc"), list("abc")
    random.Random(seed).shuffle(first)
    random.Random(seed + 1).shuffle(second)
    return first[0] != second[0]


async def test_merge_streams_only_the_final_answer():
    judge = ScriptedModel("ANALYSIS: both say Paris; one adds the river.\nFINAL ANSWER: Paris, on the Seine.")
    registry = scripted_registry({"a": ScriptedModel("Paris."), "b": ScriptedModel("Paris, by the Seine."),
                                  "judge": judge})
    deltas = []

    async def listen(event):
        if isinstance(event, Delta):
            deltas.append(event.text)

    result = await afuse("Capital?", pool=["a", "b"], judge="judge", mode="merge", registry=registry, on_event=listen)
    assert result.text == "Paris, on the Seine." and result.chosen is None
    assert "".join(deltas) == result.text and len(deltas) > 1, "streamed piece by piece, analysis held back"
    assert result.trace.judge_rationale == "both say Paris; one adds the river."
    no_marker = scripted_registry({"a": ScriptedModel("x"), "b": ScriptedModel("y"), "judge": ScriptedModel("Just z.")})
    assert (await afuse("q", pool=["a", "b"], judge="judge", registry=no_marker)).text == "Just z."


async def test_debate_revises_until_agreement_then_votes():
    a = ScriptedModel(["4", "4"])
    b = ScriptedModel(["5", "You are right, it is 4"])
    registry = scripted_registry({"a": a, "b": b})
    result = await afuse("2+2?", pool=["a", "b"], mode="debate", rounds=3, registry=registry)
    assert result.trace.rounds == 1, "stopped as soon as they agreed"
    assert result.trace.votes == {"4": 2} and not result.trace.degraded
    revision_prompt = b.calls[1][-1].text
    assert "Answer 1:\n4" in revision_prompt and "Answer 2" not in revision_prompt, "only the others' answers"
    assert [m.role for m in b.calls[1]] == ["user", "assistant", "user"], "own answer, then the others'"
    agreeing = scripted_registry({"a": ScriptedModel("4"), "b": ScriptedModel("4")})
    assert (await afuse("2+2?", pool=["a", "b"], mode="debate", registry=agreeing)).trace.rounds == 0


async def test_self_moa_samples_one_model_with_distinct_seeds():
    sampler = ScriptedModel(lambda messages: "sample")
    registry = scripted_registry({"m": sampler, "judge": ScriptedModel('{"best": 2}')})
    result = await afuse("q", pool=["m"], judge="judge", mode="self", samples=4, seed=100, registry=registry)
    seeds = [o.seed for o in sampler.options]
    assert seeds == [100, 101, 102, 103] and all(o.temperature == 0.8 for o in sampler.options)
    assert len(result.trace.candidates) == 4 and {c.member for c in result.trace.candidates} == {"m#1", "m#2", "m#3", "m#4"}


async def test_accounting_sums_members_and_judge_and_flags_unpriced():
    registry = scripted_registry({
        "paid": ScriptedModel("one two three", price=Price(input=1.0, output=2.0)),
        "free": ScriptedModel("one two", price=Price(input=0, output=0)),
        "mystery": ScriptedModel("one"),
        "judge": ScriptedModel('{"best": 1}', price=Price(input=10.0, output=10.0))})
    result = await afuse("a b c d", pool=["paid", "free", "mystery"], judge="judge", mode="best-of", registry=registry)
    trace = result.trace
    by_model = {c.model: c for c in trace.calls}
    assert by_model["paid"].cost == pytest.approx((4 * 1.0 + 3 * 2.0) / 1e6)
    assert by_model["mystery"].cost is None and trace.unpriced == ["mystery"]
    assert trace.cost == pytest.approx(sum(c.cost for c in trace.calls if c.cost is not None))
    assert trace.usage.total_tokens == sum(c.usage.total_tokens for c in trace.calls)
    assert set(trace.phases) >= {"fan_out", "judge", "total"}
    assert [step["role"] for step in trace.critical_path()] == ["member", "judge"]


async def test_max_cost_stops_further_rounds():
    registry = scripted_registry({"a": ScriptedModel("4", price=Price(input=1000, output=1000)),
                                  "b": ScriptedModel("5", price=Price(input=1000, output=1000))})
    result = await afuse("2+2?", pool=["a", "b"], mode="debate", rounds=3, max_cost=0.001, registry=registry)
    assert result.trace.stopped_by_cost and result.trace.rounds == 0


async def test_failed_members_are_recorded_with_typed_reasons():
    registry = scripted_registry({"ok": ScriptedModel("fine"), "err": ScriptedModel(UpstreamError("500 again")),
                                  "empty": ScriptedModel("   "), "slow": ScriptedModel("late", delay_s=5),
                                  "bug": ScriptedModel(ValueError("backend bug"))})
    result = await afuse("q", pool=["ok", "err", "empty", Member(model="slow", timeout_ms=50), "bug"], mode="vote",
                         registry=registry)
    assert result.text == "fine"
    reasons = {c.member: c.error for c in result.trace.failures}
    assert reasons == {"err": "upstream", "empty": "empty", "slow": "timeout", "bug": "error"}
    assert "ValueError: backend bug" in next(c.message for c in result.trace.failures if c.member == "bug")


async def test_too_few_answers_is_a_clear_error_never_an_empty_answer():
    registry = scripted_registry({"ok": ScriptedModel("fine"), "e1": ScriptedModel(UpstreamError("x")),
                                  "e2": ScriptedModel("")})
    with pytest.raises(QuorumError, match=r"only 1 of 3 members answered; min_answers is 2.*e1: upstream.*e2: empty"):
        await afuse("q", pool=["ok", "e1", "e2"], mode="vote", min_answers=2, registry=registry)


async def test_quorum_and_grace_cut_the_straggler():
    slow = ScriptedModel("4", delay_s=2.0)
    registry = scripted_registry({"fast": ScriptedModel("4", delay_s=0.05), "mid": ScriptedModel("4", delay_s=0.06),
                                  "slow": slow})
    start = time.perf_counter()
    result = await afuse("2+2?", pool=["fast", "mid", "slow"], mode="vote", min_answers=2, grace_ms=100,
                         registry=registry)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.6, f"finished at {elapsed:.2f} s, well before the 2 s straggler"
    cut = [c for c in result.trace.failures if c.error == "cut"]
    assert [c.member for c in cut] == ["slow"] and slow.cancelled == 1
    assert result.trace.votes == {"4": 2}


async def test_hard_deadline():
    registry = scripted_registry({"fast": ScriptedModel("1", delay_s=0.02), "slow": ScriptedModel("2", delay_s=3)})
    start = time.perf_counter()
    result = await afuse("q", pool=["fast", "slow"], mode="vote", deadline_ms=200, registry=registry)
    assert time.perf_counter() - start < 0.6 and result.text == "1"
    assert [(c.member, c.error) for c in result.trace.failures] == [("slow", "cut")]


async def test_concurrency_limit_queues_calls_to_one_model():
    local = ScriptedModel("x", delay_s=0.1, concurrency=1)
    registry = scripted_registry({"local": local, "judge": ScriptedModel('{"best": 1}')})
    start = time.perf_counter()
    result = await afuse("q", pool=["local"], judge="judge", mode="self", samples=3, registry=registry)
    assert time.perf_counter() - start >= 0.29, "three calls one at a time"
    queued = sorted(c.queued_s for c in result.trace.calls if c.role == "member")
    assert queued[0] < 0.05 and queued[-1] >= 0.18


async def test_fusion_cannot_call_fusion(isolated_config):
    from gemfuse.config import load_config
    from gemfuse.registry import Registry

    isolated_config.write_text('[presets.loop]\npool = ["fusion/loop", "smollm2-135m"]\nmode = "vote"\n')
    with pytest.raises(ConfigError, match="presets.loop: 'fusion/loop' is a fusion preset; a fusion cannot call"):
        load_config()
    isolated_config.write_text('[presets.a]\npool = ["smollm2-135m"]\nmode = "vote"\n'
                               '[presets.b]\npool = ["a"]\nmode = "vote"\n')
    with pytest.raises(ConfigError, match="presets.b: 'a' is a fusion preset"):
        load_config()
    isolated_config.write_text('[presets.c]\npool = ["smollm2-135m", "nope"]\nmode = "vote"\n')
    with pytest.raises(ConfigError, match="presets.c: unknown model 'nope'"):
        load_config()
    isolated_config.write_text('[presets.d]\npool = ["smollm2-135m"]\nmode = "merge"\n')
    with pytest.raises(ConfigError, match="mode 'merge' needs a judge"):
        load_config()
    isolated_config.write_text("")
    registry = Registry.load()
    with pytest.raises(ConfigError, match="a fusion cannot call a fusion"):
        await afuse("q", pool=["fusion/default"], mode="vote", registry=registry)


async def test_a_preset_is_a_model_and_writes_its_trace(tmp_path):
    preset = FusionPreset(pool=["a", "b"], judge="j", mode="best-of")
    registry = scripted_registry({"a": ScriptedModel("alpha beta"), "b": ScriptedModel("gamma"),
                                  "j": ScriptedModel('{"best": 1}')}, presets={"duo": preset})
    model = registry.get("fusion/duo")
    chunks = [c async for c in model.stream([Message.user("q")])]
    text = "".join(c.text for c in chunks)
    assert text in ("alpha beta", "gamma") and chunks[-1].usage.total_tokens > 0
    completion = await model.generate([Message.user("q")])
    assert completion.trace["mode"] == "best-of" and len(completion.trace["calls"]) == 3
    path = tmp_path / "trace.jsonl"
    await afuse("q", preset="duo", registry=registry, trace_path=path)
    await afuse("q", preset="duo", registry=registry, trace_path=path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 2 and records[0]["answer"] in ("alpha beta", "gamma") and "usage" in records[0]


@pytest.mark.parametrize("text, expected", [
    ('{"best": 2, "reason": "x"}', 2), ('Sure! {"best": "3"}', 3), ("best: 1", 1), ("I pick Answer 2.", 2),
    ("The answer is 2.", None), ("none of them", None), ('{"best": 9}', None), ("9 or 2", None)])
def test_choice_parsing_takes_only_explicit_verdicts(text, expected):
    assert parse_choice(text, 3) == expected

