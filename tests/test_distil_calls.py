"""Distil with tools, end to end on a tiny random Gemma 3: a teacher pool of loopback OpenAI-compatible upstreams
answering with calls (two spell the same call differently, one makes another), voted on canonical calls; the
filter keeps the agreed calls (and drops them when more agreement is asked); the rows validate against the
student; the student's run folder answers `tools` requests through the server with valid calls."""

import asyncio
import json

import jsonschema
import pytest

from gemfuse.testing.call_task import call_task

pytestmark = pytest.mark.heavy

RIGHT = '{"room": "kitchen", "celsius": 21}'
SAME = '{"celsius": 21.0, "room":"kitchen"}'  # the same call, spelled otherwise
OTHER = '{"room": "office", "celsius": 18}'


def test_a_tool_calling_student_is_distilled_from_a_voting_pool(tmp_path, tiny_model, upstream, isolated_config):
    import openai

    from gemfuse import distil
    from gemfuse.data.target import load_target
    from gemfuse.data.validate import validate
    from gemfuse.registry import Registry
    from gemfuse.serve.app import create_app
    from gemfuse.testing.upstream import serve_in_thread

    task = call_task(tmp_path / "task", per_phrasing=1, held_per_phrasing=1)
    members = {"m1": RIGHT, "m2": SAME, "m3": OTHER}
    isolated_config.write_text("".join(
        f'[models.{name}]\nbackend = "openai"\nbase_url = "{upstream[0]}"\nmodel = \'call:set_thermostat:{call}\'\n'
        for name, call in members.items()) + '[presets.pool]\npool = ["m1", "m2", "m3"]\nmode = "vote"\n')
    registry = Registry.load(isolated_config)
    common = dict(teacher="fusion/pool", student=str(tiny_model("gemma3")), eval=str(task.held_out),
                  registry=registry, cache=tmp_path / "cache.sqlite", name="caller",
                  set=["train.max_steps=6", "train.dtype=float32", "data.max_length=2048"])
    try:
        report = distil.run(task.train, out=tmp_path / "out", **common)
    finally:
        asyncio.run(registry.aclose())

    rows = [json.loads(line) for line in (tmp_path / "out" / "data" / "train.jsonl").read_text().splitlines()]
    assert report["filter"]["kept"] == len(rows) == 18
    first = rows[0]
    assert [t["function"]["name"] for t in first["tools"]] == ["set_thermostat", "book_court", "order_paint"]
    call = first["messages"][-1]["tool_calls"][0]["function"]
    assert call["name"] == "set_thermostat" and json.loads(call["arguments"]) == json.loads(RIGHT)
    agreement = first["meta"]["agreement"]
    assert agreement["count"] == 2 and agreement["of"] == 3, "two spellings of one call are one answer"
    assert validate(tmp_path / "out" / "data" / "train.jsonl", load_target(common["student"])).ok
    strict = distil.filter(tmp_path / "out" / "data", min_agree=3)  # more agreement than the pool gave
    assert strict.dropped == {"disagreed": 18}
    assert report["training"]["steps"] == 6
    held = report["eval"]["accuracy"]
    assert set(held) == {"caller", report["student"]["base"], "m1", "m2", "m3", "fusion/pool"}
    items = [json.loads(line)["messages"][-1]["tool_calls"][0]["function"] for line in task.held_out.read_text().splitlines()]
    expected = sum(i["name"] == "set_thermostat" and json.loads(i["arguments"]) == json.loads(RIGHT) for i in items)
    assert held["m1"] == held["m2"] == pytest.approx(expected / len(items)), "two spellings score the same"

    configured = Registry.load()  # enums only: a random tiny model fills an integer with digits up to max_tokens
    tools = [{"type": "function", "function": {"name": "set_mode", "parameters": {
        "type": "object", "properties": {"room": {"type": "string", "enum": ["kitchen", "office"]},
                                         "mode": {"type": "string", "enum": ["heat", "cool"]}},
        "required": ["room", "mode"], "additionalProperties": False}}}]
    try:
        with serve_in_thread(create_app(configured)) as base_url:
            answer = openai.OpenAI(base_url=base_url, api_key="unused").chat.completions.create(
                model="caller", messages=[{"role": "user", "content": "Set the office to 19 degrees."}],
                tools=tools, tool_choice="required", max_tokens=200, temperature=0)
    finally:
        asyncio.run(configured.aclose())
    made = answer.choices[0].message.tool_calls
    assert answer.choices[0].finish_reason == "tool_calls" and made
    tool = next(t for t in tools if t["function"]["name"] == made[0].function.name)
    jsonschema.validate(json.loads(made[0].function.arguments), tool["function"]["parameters"])
