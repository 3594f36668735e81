"""Training rows with tools, calls, tool results and JSON answers: every kind of bad row named by file and line,
good rows and a capture folder with calls pass, and the collated row trains on the assistant's calls and text
only, in the prompted format the server's local models read."""

import json

import pytest

from gemfuse import run_sync
from gemfuse.data.collate import IGNORE, Collator
from gemfuse.data.schema import read_jsonl
from gemfuse.data.target import load_target
from gemfuse.data.validate import validate
from gemfuse.prompted_tools import INSTRUCTIONS, RESULTS_FOLLOW_UP

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                   "required": ["city"], "additionalProperties": False}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
QUESTION = {"role": "user", "content": "Weather in Oslo?"}
GOOD = {"tools": [WEATHER], "messages": [
    QUESTION, {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "minus four, snow"},
    {"role": "assistant", "content": "It is minus four and snowing in Oslo."}]}
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def row(**changes):
    return {**GOOD, **changes}


BAD = {
    "unknown_function": row(messages=[QUESTION, {"role": "assistant", "tool_calls": [
        {**CALL, "function": {"name": "launch", "arguments": "{}"}}]}]),
    "bad_arguments": row(messages=[QUESTION, {"role": "assistant", "tool_calls": [
        {**CALL, "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "unit": "k"}'}}]}]),
    "unanswered_result": row(messages=[QUESTION, {"role": "assistant", "content": "Let me see."},
                                       {"role": "tool", "tool_call_id": "call_9", "content": "sunny"},
                                       {"role": "assistant", "content": "Sunny."}]),
    "schema_mismatch": {"response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": CITY}},
                        "messages": [QUESTION, {"role": "assistant", "content": '{"town": "Oslo"}'}]},
    "bad_tool": row(tools=[{"type": "function", "function": {"description": "no name"}}]),
    "bad_schema": {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 5}}},
                   "messages": [QUESTION, {"role": "assistant", "content": "{}"}]},
    "bad_tool_call": row(messages=[QUESTION, {"role": "assistant", "tool_calls": [{"id": "x"}]}]),
}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_each_bad_tool_row_is_named_by_file_and_line(tmp_path, tiny_model):
    path = write(tmp_path / "tools.jsonl", [GOOD, *BAD.values()])
    report = validate(path, load_target(str(tiny_model("gemma3"))))
    named = {(i.line, i.code) for i in report.issues if i.severity == "error"}
    for line, code in enumerate(BAD, 2):
        assert (line, code) in named, (code, [str(i) for i in report.issues if i.line == line])
    assert not [i for i in report.issues if i.line == 1], "the good row passes"
    assert all(str(path) in str(i) for i in report.issues)


def test_a_capture_folder_with_calls_validates_as_it_is(tmp_path, tiny_model):
    from gemfuse.capture.writer import CaptureWriter
    from gemfuse.messages import parse_messages
    from gemfuse.models.base import GenerateOptions
    from gemfuse.tool_calls import ToolCall

    writer = CaptureWriter(tmp_path / "kept")
    options = GenerateOptions(tools=[WEATHER], tool_choice="required")
    writer.add(parse_messages([QUESTION]), "", {"source": "serve", "model": "m"},
               [ToolCall("get_weather", '{"city": "Oslo"}')], options)
    writer.add(parse_messages(GOOD["messages"][:3]), "It is minus four.", {"source": "serve", "model": "m"},
               options=options)
    (captured,) = (tmp_path / "kept").glob("*.jsonl")
    report = validate(captured, load_target(str(tiny_model("gemma3"))))
    assert report.ok and report.rows == 2, [str(i) for i in report.issues]


@pytest.mark.parametrize("family", ["gemma3", "gemma3n", "gemma4"])
def test_the_loss_covers_the_assistants_calls_and_text_only(tmp_path, tiny_model, family):
    (example,) = read_jsonl(write(tmp_path / "one.jsonl", [GOOD]))
    target = load_target(str(tiny_model(family)))
    collator = Collator(target)
    rendered = collator.render(example)
    assert INSTRUCTIONS.splitlines()[0] in rendered and '"name": "get_weather"' in rendered
    assert "Function get_weather returned: minus four, snow" in rendered and RESULTS_FOLLOW_UP in rendered
    batch = collator([example])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    spans, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE:
            current.append(token)
        elif current:
            spans.append(target.tokenizer.decode(current, skip_special_tokens=True))
            current = []
    assert spans == ['{"name": "get_weather", "parameters": {"city": "Oslo"}}',
                     "It is minus four and snowing in Oslo."]


def test_a_template_that_takes_tools_trains_rows_as_it_serves_them(tmp_path, tiny_model):
    """Gemma 4 (a template that renders tools): the row is rendered by that template with the tools given to it,
    as the server renders a request; the loss covers the call tokens and the answer, never the result."""
    from gemfuse.models.transformers import TransformersModel, TransformersSpec
    from gemfuse.testing.gemma4 import with_tool_template

    folder = with_tool_template(tiny_model("gemma4"), tmp_path / "gemma4")
    (example,) = read_jsonl(write(tmp_path / "one.jsonl", [GOOD]))
    target = load_target(str(folder))
    assert target.takes_tools and not load_target(str(tiny_model("gemma4"))).takes_tools
    collator = Collator(target)
    rendered = collator.render(example)
    assert "declaration:get_weather" in rendered and INSTRUCTIONS.splitlines()[0] not in rendered
    assert '<|tool_call>call:get_weather{"city": "Oslo"}<tool_call|>' in rendered
    served = TransformersModel("native", TransformersSpec(path=str(folder), concurrency=1))
    try:
        _, processor, device = served.load()
        history = [m for m in example_messages(GOOD)]
        prompt = processor.decode(served._inputs(history[:-1], processor, device, example.tools)["input_ids"][0])
    finally:
        run_sync(served.aclose())
    assert rendered.startswith(prompt), "training renders the conversation as serving does"
    batch = collator([example])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    trained = target.tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != IGNORE])
    assert trained == ('<|tool_call>call:get_weather{"city": "Oslo"}<tool_call|><end_of_turn>'
                       "It is minus four and snowing in Oslo.<end_of_turn>")


def example_messages(row):
    from gemfuse.messages import parse_messages

    return parse_messages(row["messages"])


HERMES = [{"tools": None, "conversations": [
    {"from": "system", "value": "You are a function caller.\n<tools>[" + json.dumps(WEATHER["function"]) + "]</tools>"},
    {"from": "human", "value": "Weather in Oslo and in Rome, in celsius?"},
    {"from": "gpt", "value": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}\n'
                             '</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'},
    {"from": "tool", "value": "<tool_response>\n{\"temp\": -4}\n</tool_response>\n<tool_response>\n{\"temp\": 18}\n"
                              "</tool_response>"},
    {"from": "gpt", "value": "Oslo is at -4 and Rome at 18."}]}]
XLAM = [{"query": "What is 5 factorial, and the weather in Lima?",
         "tools": json.dumps([{"name": "factorial", "description": "n!", "parameters": {
             "n": {"type": "int", "description": "the number"}}},
             {"name": "get_weather", "description": "weather", "parameters": {
                 "city": {"type": "str", "description": "a city"},
                 "unit": {"type": "str, optional", "description": "c or f", "default": "c"}}}]),
         "answers": json.dumps([{"name": "factorial", "arguments": {"n": 5}},
                                {"name": "get_weather", "arguments": {"city": "Lima"}}])},
        {"query": "broken", "tools": "[]", "answers": "not json"}]


@pytest.mark.parametrize("layout", ["hermes", "xlam"])
def test_function_calling_datasets_import_and_validate(tmp_path, tiny_model, layout):
    from gemfuse.data.importers import import_dataset

    source = tmp_path / f"{layout}.json"
    source.write_text(json.dumps(HERMES if layout == "hermes" else XLAM))
    result = import_dataset(source, tmp_path / "out" / "train.jsonl")
    rows = [json.loads(line) for line in result.train.read_text().splitlines()]
    assert len(rows) == 1 and len(result.skipped) == (0 if layout == "hermes" else 1)
    (row,) = rows
    calls = next(m["tool_calls"] for m in row["messages"] if m.get("tool_calls"))
    if layout == "hermes":
        assert "<tools>" not in row["messages"][0]["content"] and row["tools"][0]["function"]["name"] == "get_weather"
        assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Oslo", "unit": "c"},
                                                                            {"city": "Rome"}]
        results = [m for m in row["messages"] if m["role"] == "tool"]
        assert [r["tool_call_id"] for r in results] == [c["id"] for c in calls] and results[1]["content"] == '{"temp": 18}'
    else:
        weather = row["tools"][1]["function"]["parameters"]
        assert weather["required"] == ["city"] and weather["properties"]["city"]["type"] == "string"
        assert [c["function"]["name"] for c in calls] == ["factorial", "get_weather"]
    report = validate(result.train, load_target(str(tiny_model("gemma3"))))
    assert report.ok, [str(i) for i in report.issues]


def test_preview_shows_the_calls(tmp_path, tiny_model, capsys):
    from gemfuse.commands.data import run_preview

    path = write(tmp_path / "one.jsonl", [GOOD])
    assert run_preview(path, str(tiny_model("gemma3")), 1, None) == 0
    shown = capsys.readouterr().out
    assert 'calls: get_weather {"city": "Oslo"}' in shown and "Function get_weather returned" in shown
