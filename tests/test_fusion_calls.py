"""Fusing function calls and JSON: a vote by canonical form and argument by argument, members with invalid calls
left out, judges that pick among calls, and a fusion preset answering tools and schemas through the server."""

import json

import jsonschema
import openai
import pytest

from gemfuse.fusion import afuse
from gemfuse.registry import Registry
from gemfuse.serve.app import create_app
from gemfuse.testing.upstream import serve_in_thread
from gemfuse.tool_calls import Tool, ToolCall, ToolSet

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
CLOCK = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                                       "required": ["zone"]}}}
TOOLS = ToolSet(tools=(Tool.model_validate(WEATHER), Tool.model_validate(CLOCK)))


def test_canonical_form_ignores_key_order_whitespace_and_number_spelling():
    a = ToolCall("f", '{"a": 1, "b": {"x": [1.0, 2]}}')
    b = ToolCall("f", '{ "b":{"x":[1,2.0]},"a":1.0 }')
    assert a.canonical() == b.canonical() and a.id != b.id
    assert ToolCall("f", '{"a": 1.5}').canonical() != ToolCall("f", '{"a": 1}').canonical()
    assert ToolCall("g", '{"a": 1}').canonical() != a.canonical()


def members(isolated_config, base_url, behaviours):
    isolated_config.write_text("".join(
        f"[models.{name}]\nbackend = \"openai\"\nbase_url = \"{base_url}\"\nmodel = '{model}'\nmax_retries = 0\n"
        for name, model in behaviours.items()))
    return Registry.load()


async def test_the_vote_goes_argument_by_argument_and_an_invalid_call_is_outvoted(upstream, isolated_config):
    registry = members(isolated_config, upstream[0], {
        "a": 'call:get_weather:{"city": "Paris", "unit": "c"}', "b": 'call:get_weather:{"city": "Paris", "unit": "f"}',
        "c": 'call:get_time:{"zone": "UTC"}', "bad": 'call:get_weather:{"city": "Berlin", "unit": "c"}'})
    try:
        result = await afuse("Weather in Paris?", pool=["bad", "a", "b", "c"], mode="vote", registry=registry,
                             tools=TOOLS, min_answers=1)
    finally:
        await registry.aclose()
    (call,) = result.tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris", "unit": "c"}
    trace = result.trace
    assert trace.argument_votes == {"city": {'"Paris"': 2}, "unit": {'"c"': 1, '"f"': 1}}
    assert [f.member for f in trace.failures] == ["bad"] and trace.failures[0].error == "invalid_answer"
    shown = {c.member: c.tool_calls[0].name for c in trace.calls if c.ok}
    assert shown == {"a": "get_weather", "b": "get_weather", "c": "get_time"}, "the trace keeps each member's calls"


async def test_calls_that_differ_only_in_spelling_win_the_vote_together(upstream, isolated_config):
    registry = members(isolated_config, upstream[0], {
        "a": 'call:get_weather:{"city": "Rome", "unit": "f"}', "b": 'call:get_weather:{"unit":"f","city":"Rome"}',
        "c": 'call:get_weather:{"city": "Paris", "unit": "c"}'})
    try:
        result = await afuse("Weather?", pool=["c", "a", "b"], mode="vote", registry=registry, tools=TOOLS)
    finally:
        await registry.aclose()
    assert json.loads(result.tool_calls[0].arguments) == {"city": "Rome", "unit": "f"}
    assert sorted(result.trace.votes.values()) == [1, 2] and not result.trace.argument_votes


@pytest.mark.parametrize("mode", ["best-of", "merge"])
async def test_a_judge_picks_among_calls_and_never_writes_a_broken_one(upstream, isolated_config, mode):
    registry = members(isolated_config, upstream[0], {
        "a": 'call:get_weather:{"city": "Rome", "unit": "f"}', "b": 'call:get_time:{"zone": "CET"}',
        "judge": "judge-1"})
    try:
        result = await afuse("Weather?", pool=["a", "b"], judge="judge", mode=mode, registry=registry, tools=TOOLS,
                             seed=3)
    finally:
        await registry.aclose()
    picked = result.trace.shown_order[0]  # the judge answers {"best": 1}
    chosen = next(c for c in result.trace.calls if c.member == picked)
    assert [c.canonical() for c in result.tool_calls] == [c.canonical() for c in chosen.tool_calls]
    assert all(c.said.startswith('{"name": ') for c in result.trace.candidates), "a judge reads calls as written"
    if mode == "merge":
        assert "picked one instead of writing a merge" in (result.trace.degraded_reason or "")


@pytest.mark.heavy
def test_a_fusion_preset_answers_tools_and_schemas_through_the_server(tmp_path, tiny_model, upstream):
    config = tmp_path / "config.toml"
    config.write_text(f"""
[models.tiny-gemma3]
backend = "transformers"
path = "{tiny_model('gemma3')}"

[models.remote]
backend = "openai"
base_url = "{upstream[0]}"
model = "tools"

[presets.agents]
mode = "vote"
pool = ["gemma-3-270m", "tiny-gemma3", "remote"]
""")
    with serve_in_thread(create_app(Registry.load(config))) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        answer = client.chat.completions.create(
            model="fusion/agents", messages=[{"role": "user", "content": "Weather in Rome?"}],
            tools=[WEATHER, CLOCK], tool_choice={"type": "function", "function": {"name": "get_weather"}},
            temperature=0, max_tokens=60)
        (call,) = answer.choices[0].message.tool_calls
        assert answer.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
        members = [c for c in answer.model_extra["fusion"]["calls"] if c["role"] == "member"]
        assert len(members) == 3 and all(c["tool_calls"] for c in members if c["error"] is None)
        schema = {"type": "object", "properties": {"colour": {"enum": ["red", "blue"]}}, "required": ["colour"],
                  "additionalProperties": False}
        fused = client.chat.completions.create(
            model="fusion/agents", messages=[{"role": "user", "content": "A colour?"}], temperature=0, max_tokens=30,
            response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema, "strict": True}})
        jsonschema.validate(json.loads(fused.choices[0].message.content), schema)


async def test_a_captured_rows_agreement_counts_calls_by_canonical_form(upstream, isolated_config):
    from gemfuse.capture.provenance import fusion_meta

    registry = members(isolated_config, upstream[0], {
        "a": 'call:get_weather:{"city": "Rome", "unit": "f"}', "b": 'call:get_weather:{"unit":"f","city":"Rome"}',
        "c": 'call:get_weather:{"city": "Paris", "unit": "c"}', "judge": "judge-1"})
    try:
        result = await afuse("Weather?", pool=["a", "b", "c"], judge="judge", mode="best-of", registry=registry,
                             tools=TOOLS, seed=5)
    finally:
        await registry.aclose()
    meta = fusion_meta(result, model="fusion/x")
    assert meta["agreement"]["count"] == 2 and meta["agreement"]["of"] == 3
    assert meta["agreement"]["answer"] == 'calls: get_weather({"city":"Rome","unit":"f"})'
    assert meta["members"]["a"].startswith('{"name": "get_weather"')
