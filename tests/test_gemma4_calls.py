"""Gemma 4's own call format: read from text (strings between <|"|> marks, numbers, booleans, objects, arrays,
several calls), and a checkpoint whose chat template takes tools gets them, and its history, through that
template, with its answer read in its own format; a forced call keeps the prompted format's grammar."""

import json

import pytest

from gemfuse.messages import Message, parse_messages
from gemfuse.models.base import GenerateOptions, StreamChunk
from gemfuse.models.gemma4_calls import read_calls
from gemfuse.models.structured import finish, plan
from gemfuse.prompted_tools import INSTRUCTIONS
from gemfuse.tool_calls import Tool, ToolSet

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"], "additionalProperties": False}}}
TOOLS = ToolSet(tools=(Tool.model_validate(WEATHER),))
Q = '<|"|>'


def test_calls_are_read_with_every_kind_of_value():
    text = (f"Let me look.<|tool_call>call:get_weather{{city:{Q}São Paulo, {{SP}}{Q},days:3,hourly:true,"
            f"ratio:-0.5,none:null,tags:[{Q}a{Q},{Q}b,c{Q}],where:{{lat:1.5,name:{Q}x{Q}}}}}<tool_call|>"
            f"<|tool_call>call:get_time{{zone:{Q}UTC{Q}}}<tool_call|>")
    calls, rest = read_calls(text)
    assert rest == "Let me look."
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].arguments) == {"city": "São Paulo, {SP}", "days": 3, "hourly": True, "ratio": -0.5,
                                              "none": None, "tags": ["a", "b,c"], "where": {"lat": 1.5, "name": "x"}}
    assert json.loads(calls[1].arguments) == {"zone": "UTC"}


@pytest.mark.parametrize("broken", ["<|tool_call>call:f{a:<tool_call|>", "<|tool_call>call:f{a:1", "<|tool_call>f{}<tool_call|>"])
def test_a_call_that_does_not_parse_stays_text(broken):
    calls, rest = read_calls("before " + broken)
    assert calls == [] and rest == ("before " + broken).strip()


def test_a_native_answer_is_a_call_only_when_it_keeps_to_its_tool():
    native = plan([Message.user("Weather?")], GenerateOptions(tools=TOOLS), "m", native=True)
    assert native.native and native.options.tools is TOOLS and native.options.json_schema is None
    good = finish(native, "", StreamChunk(text=f"<|tool_call>call:get_weather{{city:{Q}Oslo{Q}}}<tool_call|>",
                                          finish_reason="stop"))
    assert good.finish_reason == "tool_calls" and json.loads(good.tool_calls[0].arguments) == {"city": "Oslo"}
    wrong = finish(native, "", StreamChunk(text="<|tool_call>call:get_weather{town:1}<tool_call|>",
                                           finish_reason="stop"))
    assert wrong.tool_calls is None and "town" in wrong.text and "read as text" in wrong.notes[0]
    forced = plan([Message.user("Weather?")], GenerateOptions(tools=[WEATHER], tool_choice="required"), "m",
                  native=True)
    assert not forced.native and forced.options.json_schema is not None  # the grammar of the prompted format


@pytest.fixture(scope="module")
def native_gemma4(tiny_model, tmp_path_factory):
    """The tiny Gemma 4 with three spare tokens made its call marks and a chat template that takes tools."""
    from gemfuse.testing.gemma4 import with_tool_template

    return with_tool_template(tiny_model("gemma4"), tmp_path_factory.mktemp("native") / "gemma4")


@pytest.mark.heavy
async def test_a_template_that_takes_tools_renders_them_and_the_history(native_gemma4, tiny_model):
    from gemfuse.models.transformers import TransformersModel, TransformersSpec

    model = TransformersModel("native", TransformersSpec(path=str(native_gemma4), concurrency=1))
    plain = TransformersModel("plain", TransformersSpec(path=str(tiny_model("gemma4")), concurrency=1))
    history = parse_messages([
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "cold"}])
    try:
        assert await model._takes_tools(history) and not await plain._takes_tools(history)
        _, processor, device = model.load()
        prompt = processor.decode(model._inputs(history, processor, device, TOOLS)["input_ids"][0])
        assert "declaration:get_weather" in prompt and INSTRUCTIONS.splitlines()[0] not in prompt
        assert '<|tool_call>call:get_weather{"city": "Oslo"}<tool_call|>' in prompt
        assert "response:get_weather{value:" in prompt and "cold" in prompt
        answer = await model.generate(history, GenerateOptions(tools=TOOLS, max_tokens=8, temperature=0))
        assert answer.tool_calls is None or all(TOOLS.check(c) is None for c in answer.tool_calls)
        enum = {"type": "function", "function": {"name": "get_weather", "parameters": {  # a tiny model ends it
            "type": "object", "properties": {"city": {"enum": ["Oslo", "Rome"]}}, "required": ["city"],
            "additionalProperties": False}}}
        forced = await model.generate(history, GenerateOptions(tools=[enum], tool_choice="required", max_tokens=120,
                                                               temperature=0))
        assert forced.finish_reason == "tool_calls" and json.loads(forced.tool_calls[0].arguments)["city"] in ("Oslo", "Rome")
    finally:
        await model.aclose()
        await plain.aclose()
