"""Confidence: log-probabilities through the backends and the server, the `confidence` mode that needs no judge,
and a vote weighted by certainty. Scripted models carry scripted log-probabilities; the openai backend reads
them from the fault-injecting upstream."""

import json
import math

import httpx
import pytest

from gemfuse import fuse
from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.models.openai import OpenAIModel, OpenAISpec
from gemfuse.serve.app import create_app
from gemfuse.testing.scripted import ScriptedModel, scripted_registry


def pool(**certainties):
    return scripted_registry({name: ScriptedModel(f"answer from {name}", certainty=c) for name, c in certainties.items()})


def test_confidence_picks_the_answer_its_model_was_surest_of():
    result = fuse("Q?", pool=["a", "b", "c"], mode="confidence", registry=pool(a=-1.2, b=-0.1, c=-0.7))
    assert result.text == "answer from b" and result.chosen == "b" and not result.trace.degraded
    assert result.trace.confidence == pytest.approx({"a": -1.2, "b": -0.1, "c": -0.7})
    assert result.trace.confidence_method.startswith("the mean log-probability of the answer")
    assert [c.certainty_tokens for c in result.trace.candidates] == [3, 3, 3]
    assert "confidence" in json.dumps(result.to_dict()) and "logprobs" not in result.to_dict()["calls"][0]


def test_a_tie_and_missing_log_probabilities_are_reported_never_guessed():
    tied = fuse("Q?", pool=["a", "b"], mode="confidence", registry=pool(a=-0.5, b=-0.5))
    assert tied.chosen == "a" and tied.trace.tie and "equally sure" in tied.trace.degraded_reason
    partial = fuse("Q?", pool=["a", "b"], mode="confidence", registry=pool(a=None, b=-2.0))
    assert partial.chosen == "b" and "no log-probabilities from a" in partial.trace.degraded_reason
    blind = fuse("Q?", pool=["a", "b"], mode="confidence", registry=pool(a=None, b=None))
    assert blind.chosen == "a" and "no member returned log-probabilities" in blind.trace.degraded_reason


def test_a_vote_weighted_by_confidence_lets_one_sure_answer_beat_two_unsure_ones():
    registry = scripted_registry({"a": ScriptedModel("7", certainty=-3.0), "b": ScriptedModel("7", certainty=-3.0),
                                  "c": ScriptedModel("8", certainty=-0.05)})
    heads = fuse("Q?", pool=["a", "b", "c"], mode="vote", registry=registry)
    weighted = fuse("Q?", pool=["a", "b", "c"], mode="vote", vote_weight="confidence", registry=registry)
    assert heads.text == "7" and weighted.text == "8"
    assert weighted.trace.votes["8"] == pytest.approx(math.exp(-0.05))
    assert all(o.logprobs for o in registry.get("a").options[-1:]), "members are asked for log-probabilities"


async def test_the_openai_backend_reads_log_probabilities_whole_and_streamed(upstream):
    model = OpenAIModel("m", OpenAISpec(base_url=upstream[0], model="ok"))
    options = GenerateOptions(logprobs=True, top_logprobs=2)
    whole = await model.generate([Message.user("one two")], options)
    assert [t.token for t in whole.logprobs] == ["echo:", " one", " two"] and whole.certainty == -0.25
    assert whole.logprobs[0].top == [("echo:", -0.25), ("echo:~1", -1.25)]
    chunks = [c async for c in model.stream([Message.user("one two")], options)]
    streamed = [t for c in chunks if c.logprobs for t in c.logprobs]
    assert [t.token for t in streamed] == ["echo:", " one", " two"]
    plain = await model.generate([Message.user("one two")])
    assert plain.logprobs is None
    await model.aclose()


async def test_an_endpoint_that_refuses_log_probabilities_is_remembered(upstream):
    model = OpenAIModel("m", OpenAISpec(base_url=upstream[0], model="no-logprobs"))
    for _ in range(2):
        completion = await model.generate([Message.user("hi")], GenerateOptions(logprobs=True))
        assert completion.text == "echo: hi" and completion.logprobs is None
    assert model._logprobs_refused
    await model.aclose()


async def test_the_server_answers_logprobs_in_openais_shape():
    registry = scripted_registry({"sure": ScriptedModel("one two", certainty=-0.5),
                                  "unsure": ScriptedModel("three", certainty=-2.0)})
    app = create_app(registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        ask = {"model": "sure", "messages": [{"role": "user", "content": "hi"}], "logprobs": True}
        whole = (await client.post("/v1/chat/completions", json=ask)).json()
        content = whole["choices"][0]["logprobs"]["content"]
        assert [(t["token"], t["logprob"], t["bytes"]) for t in content] == [("one", -0.5, list(b"one")),
                                                                             (" two", -0.5, list(b" two"))]
        streamed = await client.post("/v1/chat/completions", json={**ask, "stream": True})
        events = [json.loads(line[6:]) for line in streamed.text.splitlines()
                  if line.startswith("data: {")]
        tokens = [t["token"] for e in events for c in e["choices"] if c.get("logprobs") for t in c["logprobs"]["content"]]
        assert tokens == ["one", " two"]
        fused = (await client.post("/v1/chat/completions", json={
            **ask, "model": "any", "fusion": {"analysis_models": ["unsure", "sure"], "mode": "confidence"}})).json()
        assert fused["choices"][0]["message"]["content"] == "one two"
        assert [t["token"] for t in fused["choices"][0]["logprobs"]["content"]] == ["one", " two"]
        plain = (await client.post("/v1/chat/completions", json={**ask, "logprobs": False})).json()
        assert plain["choices"][0]["logprobs"] is None
        for wrong in ({"top_logprobs": 3, "logprobs": False}, {"top_logprobs": 21}):
            refused = await client.post("/v1/chat/completions", json={**ask, **wrong})
            assert refused.status_code == 400 and "top_logprobs" in refused.text


async def test_the_eval_cache_keeps_log_probabilities(tmp_path):
    from gemfuse.evals.cache import CachingRegistry, EvalCache

    model = ScriptedModel("a b", certainty=-0.3)
    caching = CachingRegistry(scripted_registry({"m": model}), EvalCache(tmp_path / "c.sqlite"))
    options = GenerateOptions(logprobs=True, top_logprobs=1)
    first = await caching.get("m").generate([Message.user("q")], options)
    again = await caching.get("m").generate([Message.user("q")], options)
    assert len(model.calls) == 1 and again.logprobs == first.logprobs and again.certainty == -0.3


def priced(answer: str, certainty: float | None, delay_s: float = 0.0, per_million: float = 1.0) -> ScriptedModel:
    from gemfuse.models.spec import Price

    return ScriptedModel(answer, certainty=certainty, delay_s=delay_s,
                         price=Price(input=per_million, output=per_million))


def test_the_cascade_stops_at_the_first_sure_tier():
    registry = scripted_registry({"cheap": priced("4", -0.05), "dear": priced("4", -0.01, per_million=100)})
    result = fuse("2+2?", pool=["cheap", "dear"], mode="cascade", registry=registry)
    assert result.text == "4" and result.trace.answered_by_tier == 1
    assert not registry.get("dear").calls, "the expensive tier was never asked"
    assert result.trace.tiers[0].accepted and "certainty -0.050 >= threshold -0.3" in result.trace.tiers[0].why


def test_the_cascade_escalates_and_counts_each_tier():
    from gemfuse.evals.harness import modelled_latency

    registry = scripted_registry({"cheap": priced("5", -1.5, delay_s=0.05),
                                  "dear": priced("4", -0.1, delay_s=0.1, per_million=100)})
    result = fuse("2+2?", pool=["cheap", "dear"], mode="cascade", registry=registry)
    assert result.text == "4" and result.trace.answered_by_tier == 2
    first, second = result.trace.tiers
    assert not first.accepted and second.accepted and second.cost == pytest.approx(100 * first.cost)
    assert result.trace.cost == pytest.approx(first.cost + second.cost)
    assert modelled_latency(result.trace) >= 0.15, "tiers run one after another: their latencies add"


def test_when_no_tier_is_sure_every_answer_is_fused():
    registry = scripted_registry({"a": priced("5", -2.0), "b": priced("4", -1.0), "c": priced("4", -1.2)})
    result = fuse("2+2?", pool=["a", "b", "c"], mode="cascade", registry=registry)
    assert result.trace.answered_by_tier is None and result.text == "4" and result.trace.votes == {"5": 1, "4": 2}
    sure = fuse("2+2?", pool=["a", "b", "c"], mode="cascade", cascade_final="confidence", registry=registry)
    assert sure.text == "4" and sure.chosen == "b"


def test_when_no_tier_is_sure_and_no_answers_agree_the_surest_is_taken():
    registry = scripted_registry({"a": priced("5", -2.0), "b": priced("4", -1.0), "c": priced("6", -1.5)})
    result = fuse("2+2?", pool=["a", "b", "c"], mode="cascade", registry=registry)
    assert result.text == "4" and result.chosen == "b", "not the first in list order"
    assert "the surest member's answer was taken (b" in result.trace.degraded_reason


def test_a_tier_sampled_several_times_is_accepted_when_its_samples_agree():
    registry = scripted_registry({"a": priced("7", -2.5), "b": priced("8", -0.01)})
    result = fuse("Q?", pool=["a", "b"], mode="cascade", tier_samples=3, registry=registry)
    assert result.text == "7" and result.trace.answered_by_tier == 1 and len(registry.get("a").calls) == 3
    assert result.trace.tiers[0].why == "3 answers agreed"


async def test_the_eval_replays_the_cascade_at_every_threshold_and_calibrates_it(tmp_path, isolated_config):
    import tomllib

    from gemfuse.api import save_calibrated_cascade
    from gemfuse.errors import ConfigError
    from gemfuse.evals import arun
    from gemfuse.models.spec import Price

    def number(messages) -> int:
        return int(messages[-1].text.split()[2].rstrip("?"))

    cheap = ScriptedModel(lambda m: str(3 * number(m) + (number(m) % 3 == 0)), price=Price(input=1, output=1),
                          certainty=lambda m: -1.5 if number(m) % 3 == 0 else -0.1)
    dear = ScriptedModel(lambda m: str(3 * number(m)), price=Price(input=100, output=100), certainty=-0.05)
    registry = scripted_registry({"cheap": cheap, "dear": dear})
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"prompt": f"What is {i}? Triple it.", "answer": str(3 * i)}) + "\n"
                             for i in range(60)))
    report = await arun(items, registry=registry, cache=tmp_path / "c.sqlite", pool=["cheap", "dear"],
                        systems=["members", "vote", "cascade"], target_accuracy=0.95, seed=1,
                        write_preset="calibrated")
    found = report.data["frontier"]
    replayed = next(p for p in found["points"] if p["threshold"] == -0.3)
    real = report.system("cascade")
    assert replayed["accuracy"] == real["accuracy"] == 1.0
    assert replayed["cost_per_item"] == pytest.approx(real["cost"] / real["n"])
    assert replayed["escalated"] == pytest.approx(sum(int(i) % 3 == 0 for i in
                                                      [r.item.split("-")[1] for r in report.records
                                                       if r.system == "cascade"]) / real["n"])
    assert report.data["calls"]["made"] == {"cheap": 60, "dear": 60}, "the cascade re-used the members' calls"
    assert {"system": "dear", "by": "cascade"} in found["dominated"], "as right as the dear model, for a third"
    assert {"system": "vote", "by": "cheap"} in found["dominated"], "a two-member vote's ties go to the first"
    calibrated = found["calibrated"]
    assert calibrated["on"] == "dev" and calibrated["dev"]["accuracy"] >= 0.95 and calibrated["threshold"] >= -1.2
    cheapest = min((p for p in found["points"] if p["accuracy"] >= 0.95), key=lambda p: p["cost_per_item"])
    assert calibrated["test"]["cost_per_item"] == pytest.approx(cheapest["cost_per_item"], rel=0.5)
    assert any("threshold" in line and "on test" in line for line in report.data["findings"])
    assert found["oracle"]["accuracy"] == 1.0
    markdown = report.to_markdown()
    assert "| -0.3 | 100.0% (" in markdown and "| oracle (any member right) | 100.0%" in markdown
    isolated_config.write_text("# my models\n")
    save_calibrated_cascade(report, registry)
    written = tomllib.loads(isolated_config.read_text())["presets"]["calibrated"]
    assert written["mode"] == "cascade" and written["pool"] == ["cheap", "dear"]
    assert written["threshold"] == calibrated["threshold"] and isolated_config.read_text().startswith("# my models")
    with pytest.raises(ConfigError, match="write_preset: needs a pool and a goal"):
        await arun(items, registry=registry, cache="off", models=["cheap"], write_preset="x")
