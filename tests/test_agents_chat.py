"""Chat completions as apps and agents send them: tools, structured outputs, tool turns, through the official
openai client against the server on 127.0.0.1, on the built-in GGUF model, tiny random Gemma 3 and Gemma 4 on
transformers, and OpenAI-compatible upstreams on loopback."""

import json
from typing import Literal

import httpx
import jsonschema
import openai
import pydantic
import pytest

from gemfuse.registry import Registry
from gemfuse.serve.app import create_app
from gemfuse.testing.upstream import serve_in_thread

pytestmark = pytest.mark.heavy

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
CLOCK = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
                   "required": ["zone"], "additionalProperties": False}}}
TOOLS = [WEATHER, CLOCK]
LOCAL = ["gemma-3-270m", "tiny-gemma3", "tiny-gemma4"]
ALL = [*LOCAL, "remote"]


class Pick(pydantic.BaseModel):
    colour: Literal["red", "blue"]
    sure: bool


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_model, upstream):
    folder = tmp_path_factory.mktemp("agents")
    config = folder / "config.toml"
    config.write_text(f"""
[models.tiny-gemma3]
backend = "transformers"
path = "{tiny_model('gemma3')}"

[models.tiny-gemma4]
backend = "transformers"
path = "{tiny_model('gemma4')}"

[models.remote]
backend = "openai"
base_url = "{upstream[0]}"
model = "tools"

[models.refuses-tools]
backend = "openai"
base_url = "{upstream[0]}"
model = "no-tools"

[models.bad-caller]
backend = "openai"
base_url = "{upstream[0]}"
model = 'call:{{"city": "Berlin", "unit": "c"}}'
max_retries = 0
""")
    with serve_in_thread(create_app(Registry.load(config))) as base_url:
        yield openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)


def ask(client, model, content="What is the weather in Rome, in celsius?", **kwargs):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                          temperature=0, max_tokens=80, **kwargs)


def valid_call(call, tools=TOOLS):
    tool = next(t for t in tools if t["function"]["name"] == call.function.name)
    jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])
    assert call.id and call.type == "function"


@pytest.mark.parametrize("model", ALL)
def test_parse_with_a_pydantic_model(client, model):
    answer = client.chat.completions.parse(model=model, messages=[{"role": "user", "content": "Pick a colour."}],
                                           response_format=Pick, temperature=0, max_tokens=40)
    parsed = answer.choices[0].message.parsed
    assert isinstance(parsed, Pick) and answer.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", ["gemma-3-270m", "remote"])
def test_json_object(client, model):
    answer = ask(client, model, "Describe Paris as JSON.", response_format={"type": "json_object"})
    assert isinstance(json.loads(answer.choices[0].message.content), dict)


@pytest.mark.parametrize("model", ALL)
def test_required_and_named_tool_choice(client, model):
    required = ask(client, model, tools=TOOLS, tool_choice="required")
    assert required.choices[0].finish_reason == "tool_calls" and required.choices[0].message.content is None
    for call in required.choices[0].message.tool_calls:
        valid_call(call)
    named = ask(client, model, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_time"}})
    (call,) = named.choices[0].message.tool_calls
    assert call.function.name == "get_time"
    valid_call(call)


@pytest.mark.parametrize("model", ["gemma-3-270m", "remote"])
def test_auto_returns_a_valid_call_or_text(client, model):
    answer = ask(client, model, tools=TOOLS, tool_choice="auto", parallel_tool_calls=False)
    choice = answer.choices[0]
    if choice.message.tool_calls:
        assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1
        valid_call(choice.message.tool_calls[0])
    else:
        assert choice.finish_reason in ("stop", "length") and choice.message.content


@pytest.mark.parametrize("model", ["smollm2-135m", "remote"])  # the base Gemma 270M only repeats its call
def test_a_round_trip_call_result_answer(client, model):
    question = {"role": "user", "content": "What is the weather in Rome, in celsius?"}
    first = client.chat.completions.create(model=model, messages=[question], tools=TOOLS, tool_choice="required",
                                           temperature=0, max_tokens=80, store=True, metadata={"app": "test"})
    call = first.choices[0].message.tool_calls[0]
    history = [{"role": "developer", "content": "You are a weather assistant."}, question,
               first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "22 degrees and sunny"}]
    final = client.chat.completions.create(model=model, messages=history, tools=TOOLS, tool_choice="none",
                                           temperature=0, max_tokens=40)
    assert final.choices[0].message.tool_calls is None and final.choices[0].message.content
    if model == "remote":  # the result reached the model as a tool turn
        assert "22 degrees and sunny" in final.choices[0].message.content


@pytest.mark.parametrize("model", ["gemma-3-270m", "tiny-gemma3", "remote"])
def test_streamed_calls_come_whole_and_the_stream_helper_reads_them(client, model):
    with client.chat.completions.stream(model=model, messages=[{"role": "user", "content": "Time in UTC?"}],
                                        tools=TOOLS, tool_choice="required", temperature=0, max_tokens=80) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    valid_call(final.choices[0].message.tool_calls[0])
    chunks = list(ask(client, model, tools=TOOLS, tool_choice="required", stream=True))
    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or []) if c.choices]
    assert deltas and all(d.id and d.type == "function" and d.function.name for d in deltas)
    for delta in deltas:  # each call's arguments whole in its one chunk
        json.loads(delta.function.arguments)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_an_endpoint_that_refuses_tools_is_asked_in_the_prompted_format(client):
    answer = ask(client, "refuses-tools", tools=TOOLS, tool_choice="required")
    valid_call(answer.choices[0].message.tool_calls[0])
    parsed = client.chat.completions.parse(model="refuses-tools", messages=[{"role": "user", "content": "Pick."}],
                                           response_format=Pick, max_tokens=40)
    assert isinstance(parsed.choices[0].message.parsed, Pick)


def test_an_invalid_remote_call_is_never_handed_on(client):
    with pytest.raises(openai.APIStatusError) as caught:
        ask(client, "bad-caller", tools=[WEATHER], tool_choice="required")
    assert caught.value.status_code == 502 and caught.value.body["code"] == "invalid_answer"
    assert "Berlin" in caught.value.body["message"] or "enum" in caught.value.body["message"]


def test_bad_input_is_a_400_naming_the_field(client):
    def refused(**kwargs):
        with pytest.raises(openai.BadRequestError) as caught:
            ask(client, "gemma-3-270m", **kwargs)
        return caught.value.body

    body = refused(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": 5}}})
    assert body["param"].startswith("response_format") and "schema" in body["message"]
    body = refused(tools=[{"type": "function", "function": {"description": "no name"}}])
    assert body["param"] == "tools.0.function.name"
    body = refused(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "launch"}})
    assert body["param"] == "tool_choice" and "launch" in body["message"]
    strict = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"},
                                                        "uniqueItems": True}}}
    body = refused(response_format={"type": "json_schema", "json_schema": {"name": "a", "strict": True,
                                                                            "schema": strict}})
    assert "uniqueItems" in body["message"]
    body = refused(extra_body={"bogus": 1})
    assert body["param"] == "bogus" and body["code"] == "unknown_parameter"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemma-3-270m", messages=[
            {"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_unknown", "content": "1"}])
    assert caught.value.body["param"] == "messages[1].tool_call_id"


def test_a_loose_schema_is_answered_and_says_what_was_not_enforced(client):
    loose = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "enum": ["a"]},
                                                       "maxItems": 2, "uniqueItems": True}},
             "required": ["tags"]}
    answer = ask(client, "gemma-3-270m", "Tags?", response_format={
        "type": "json_schema", "json_schema": {"name": "a", "schema": loose}})
    assert isinstance(json.loads(answer.choices[0].message.content)["tags"], list)
    assert any("uniqueItems" in note for note in answer.model_extra["notes"])


def test_unknown_paths_and_methods_answer_in_openai_shape(client):
    base = str(client.base_url).rstrip("/")
    missing = httpx.post(f"{base}/nothing", json={})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    wrong = httpx.get(f"{base}/chat/completions")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
