"""Evals of answers that are function calls or JSON: items read from every row shape, the scorers (tool-call,
no-call, json-schema, json-fields) chosen by each item's shape, the eval run through a scripted pool with the
calls replayed from the cache, the report per scorer; the distil filter checking calls against a reference."""

import asyncio
import json

import pytest

from gemfuse.distil.filter import fate
from gemfuse.distil.settings import DistilSettings
from gemfuse.evals.cache import EvalCache
from gemfuse.evals.call_scorers import item_scorer, json_fields, json_schema, no_call, tool_call
from gemfuse.evals.datasets import DatasetError, load_eval_set
from gemfuse.evals.harness import arun
from gemfuse.models.base import Completion, Usage
from gemfuse.testing.scripted import ScriptedModel, scripted_registry
from gemfuse.tool_calls import ToolCall

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                     "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city", "days"], "additionalProperties": False}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                           "address": {"type": "object", "properties": {"city": {"type": "string"}}}},
          "required": ["name", "age"]}


def call(name, **arguments):
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def rows():
    return [
        {"id": "weather", "tools": [WEATHER, CLOCK], "messages": [
            {"role": "user", "content": "Weather in Rome for 3 days?"},
            {"role": "assistant", "content": None, "tool_calls": [call("get_weather", city="Rome", days=3)]}]},
        {"id": "both", "tools": [WEATHER, CLOCK], "messages": [
            {"role": "user", "content": "Time in CET and weather in Oslo for 1 day?"},
            {"role": "assistant", "content": None, "tool_calls": [call("get_time", zone="CET"),
                                                                  call("get_weather", city="Oslo", days=1)]}]},
        {"id": "xlam", "query": "Weather in Lima, 2 days", "tools": json.dumps([{
            "name": "get_weather", "description": "", "parameters": {
                "city": {"type": "str", "description": ""}, "days": {"type": "int", "description": ""}}}]),
         "answers": json.dumps([{"name": "get_weather", "arguments": {"city": "Lima", "days": 2}}]),
         "acceptable": [[{"name": "get_weather", "arguments": {"city": "Lima, Peru", "days": 2}}]]},
        {"id": "none", "tools": [WEATHER], "messages": [{"role": "user", "content": "Tell me a joke."},
                                                        {"role": "assistant", "content": "Why did the..."}]},
        {"id": "after-result", "tools": [WEATHER], "messages": [
            {"role": "user", "content": "Weather in Rome, 1 day?"},
            {"role": "assistant", "content": None, "tool_calls": [call("get_weather", city="Rome", days=1)]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny."}]},
        {"id": "person", "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
         "messages": [{"role": "user", "content": "Ada, 36, lives in London."}],
         "answer": {"name": "Ada", "age": 36, "address": {"city": "London"}}},
        {"id": "any-person", "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
         "messages": [{"role": "user", "content": "Make up a person."}]},
    ]


@pytest.fixture
def eval_file(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    return path


def test_items_are_read_from_every_row_shape(eval_file):
    items = {i.id: i for i in load_eval_set(eval_file, dev_fraction=0).items}
    assert {k: item_scorer(i) for k, i in items.items()} == {
        "weather": "tool-call", "both": "tool-call", "xlam": "tool-call", "none": "no-call",
        "after-result": "no-call", "person": "json-fields", "any-person": "json-schema"}
    assert [c.name for c in items["both"].calls[0]] == ["get_time", "get_weather"]
    assert len(items["xlam"].calls) == 2 and items["xlam"].tools.tool("get_weather").parameters["required"] == \
        ["city", "days"]
    after = items["after-result"].messages
    assert [m.role for m in after] == ["user", "assistant", "tool"] and after[1].tool_calls[0].name == "get_weather"
    assert after[2].tool_call_id == "call_1"
    assert json.loads(items["person"].answer)["address"] == {"city": "London"}


def test_a_call_reference_without_tools_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}],
                                "acceptable": [[{"name": "f", "arguments": {}}]]}) + "\n")
    with pytest.raises(DatasetError, match=r"bad.jsonl:1: tools: the reference is function calls"):
        load_eval_set(path)


def test_tool_call_scorer_reads_arguments_by_value(eval_file):
    items = {i.id: i for i in load_eval_set(eval_file, dev_fraction=0).items}
    weather = items["weather"]
    same = [ToolCall("get_weather", '{"days": 3.0, "city": " rome"}')]
    assert tool_call(weather, same).correct, "key order, 3.0 for 3, case and spaces"
    assert tool_call(weather, [ToolCall("get_weather", '{"city": "Rome", "days": "3"}')]).correct is False, \
        "a number as text breaks the tool's schema"
    optional = [ToolCall("get_weather", '{"city": "Rome", "days": 3, "unit": "c"}')]
    assert tool_call(weather, optional).correct, "an optional argument the tool allows"
    wrong_day = tool_call(weather, [ToolCall("get_weather", '{"city": "Rome", "days": 4}')])
    assert not wrong_day.correct and wrong_day.value == 0.5
    assert tool_call(weather, [ToolCall("get_time", '{"zone": "UTC"}')]).value == 0.0
    assert not tool_call(weather, None).correct and tool_call(weather, None).extracted == "(no call)"
    assert not tool_call(weather, same + same).correct, "an extra call is a wrong one"
    both = items["both"]
    assert tool_call(both, [ToolCall("get_weather", '{"city": "Oslo", "days": 1}'),
                            ToolCall("get_time", '{"zone": "cet"}')]).correct, "parallel calls as a set"
    assert tool_call(both, [ToolCall("get_time", '{"zone": "CET"}')]).value == 0.5
    xlam = items["xlam"]
    assert tool_call(xlam, [ToolCall("get_weather", '{"city": "Lima, Peru", "days": 2}')]).correct, "acceptable"
    assert tool_call(xlam, [ToolCall("get_weather", '{"city": "Lima", "days": 2}')]).correct


def test_no_call_and_json_scorers(eval_file):
    items = {i.id: i for i in load_eval_set(eval_file, dev_fraction=0).items}
    assert no_call(items["none"], []).correct and not no_call(items["none"], [ToolCall("get_weather")]).correct
    person = items["person"]
    assert json_fields(person, '{"age": 36.0, "name": "ada", "address": {"city": "London"}}').correct
    half = json_fields(person, '{"name": "Ada", "age": 35, "address": {"city": "Paris"}}')
    assert not half.correct and half.value == pytest.approx(1 / 3)
    assert json_fields(person, "not json").value == 0.0
    assert json_schema(items["any-person"], '{"name": "Bo", "age": 2}').correct
    assert not json_schema(items["any-person"], '{"name": "Bo"}').correct


def test_an_eval_scores_calls_by_shape_replays_them_from_the_cache_and_reports_per_scorer(eval_file, tmp_path):
    def right(messages, options):
        text = messages[-1].text
        if options.json_schema is not None:
            return '{"name": "Ada", "age": 36, "address": {"city": "London"}}' if "Ada" in text else '{"name": "X"}'
        if "joke" in text or messages[-1].role == "tool":
            return "Sure."
        if "Time in CET" in text:
            return [ToolCall("get_time", '{"zone": "CET"}'), ToolCall("get_weather", '{"city": "Oslo", "days": 1}')]
        city, days = ("Rome", 3) if "Rome" in text else ("Lima", 2)
        return [ToolCall("get_weather", json.dumps({"city": city, "days": days}))]

    model = ScriptedModel(right)
    registry = scripted_registry({"m": model})
    cache = tmp_path / "cache.sqlite"
    try:
        report = asyncio.run(arun(eval_file, registry=registry, cache=cache, models=["m"], dev_fraction=0))
        asked = len(model.calls)
        again = asyncio.run(arun(eval_file, registry=registry, cache=tmp_path / "cache.sqlite", models=["m"],
                                 dev_fraction=0, seed=1))  # a new seed: items rescored, calls from the cache
    finally:
        asyncio.run(registry.aclose())
    assert asked == 7 and len(model.calls) == 7 + 7, "a new seed asks again (seeds are in the call key)"
    row = report.system("m")
    assert row["accuracy"] == pytest.approx(6 / 7), row  # any-person answered {"name": "X"}
    assert row["by_scorer"]["tool-call"]["accuracy"] == 1.0 and row["by_scorer"]["no-call"]["correct"] == 2
    assert row["by_scorer"]["json-schema"]["accuracy"] == 0.0
    records = {r.item: r for r in report.records}
    assert records["weather"].scorer == "tool-call" and records["weather"].tool_calls[0]["function"]["name"] == \
        "get_weather"
    assert "**By scorer**" in report.to_markdown()
    assert again.system("m")["accuracy"] == row["accuracy"]

    stored = EvalCache(cache)  # the calls come back from the cache as calls
    try:
        keys = [key for (key,) in stored.db.execute("SELECT key FROM calls")]
        replayed = [stored.get_call(key) for key in keys]
    finally:
        stored.close()
    assert any(c.tool_calls and c.tool_calls[0].name == "get_time" for c in replayed)


def test_a_cached_call_answer_round_trips(tmp_path):
    cache = EvalCache(tmp_path / "c.sqlite")
    try:
        cache.put_call("k", Completion("", "m", "tool_calls", Usage(3, 4), tool_calls=[ToolCall("f", '{"a": 1}')]))
        back = cache.get_call("k")
    finally:
        cache.close()
    assert back.tool_calls[0].name == "f" and back.tool_calls[0].args() == {"a": 1} and back.finish_reason == "tool_calls"


def distilled(last, reference_calls=None, tools=(WEATHER,)):
    meta = {"agreement": {"count": 1, "of": 1}, "reference": None}
    if reference_calls:
        meta["reference_calls"] = reference_calls
    return {"tools": list(tools), "messages": [{"role": "user", "content": "Rome, 3 days?"}, last], "meta": meta}


def test_the_distil_filter_checks_calls_against_the_reference():
    settings = DistilSettings()
    answer = {"role": "assistant", "content": None, "tool_calls": [call("get_weather", days=3, city="Rome")]}
    assert fate(distilled(answer), settings) is None, "a call is not 'too short' for having no text"
    assert fate(distilled(answer, [call("get_weather", city="rome", days=3.0)]), settings) is None
    wrong = fate(distilled(answer, [call("get_weather", city="Rome", days=4)]), settings)
    assert wrong[0] == "wrong" and '"days": 4' in wrong[1]


def test_distil_labels_under_a_schema_and_agreement_counts_json_by_value(tmp_path):
    from gemfuse.distil.label import alabel
    from gemfuse.distil.settings import distil_settings
    from gemfuse.fusion.preset import FusionPreset, Member

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"messages": [{"role": "user", "content": "Ada, 36."}], "response_format": {
        "type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}}) + "\n")
    members = {"a": ScriptedModel('{"name": "Ada", "age": 36}'), "b": ScriptedModel('{ "age": 36.0, "name": "Ada" }'),
               "c": ScriptedModel('{"name": "Bo", "age": 2}')}
    registry = scripted_registry(members, {"pool": FusionPreset(pool=[Member(model=m) for m in "abc"], mode="best-of",
                                                                judge="a")})
    members["a"].enqueue('{"best": 1}')  # the judge's verdict after its own answer
    try:
        report = asyncio.run(alabel(prompts, tmp_path / "out", distil_settings(None, teacher="fusion/pool"),
                                    registry=registry, cache="off"))
    finally:
        asyncio.run(registry.aclose())
    assert report.labelled == 1, report.failed
    row = json.loads((tmp_path / "out" / "labelled.jsonl").read_text())
    assert row["response_format"]["json_schema"]["schema"] == PERSON
    assert all(o.json_schema == PERSON for m in members.values() for o in m.options[:1]), "asked under the schema"
    agreement = row["meta"]["agreement"]
    assert agreement["count"] == 2 and agreement["of"] == 3, agreement


def test_a_second_eval_in_the_same_process_runs_on_its_own_event_loop(eval_file, tmp_path):
    """Each `run_sync` (a notebook's second eval) runs a loop of its own; a model's concurrency slot made in the
    first must not fail the second ("bound to a different event loop")."""
    from gemfuse import run_sync

    model = ScriptedModel(lambda messages: "Sure.", delay_s=0.01)
    model.spec = model.spec.model_copy(update={"concurrency": 1})
    registry = scripted_registry({"m": model})
    try:
        first = run_sync(arun(eval_file, registry=registry, cache="off", models=["m"], dev_fraction=0))
        second = run_sync(arun(eval_file, registry=registry, cache="off", models=["m"], dev_fraction=0))
    finally:
        run_sync(registry.aclose())
    assert not any("event loop" in (r.error or "") for r in second.records), [r.error for r in second.records]
    assert [r.error for r in second.records] == [r.error for r in first.records]
