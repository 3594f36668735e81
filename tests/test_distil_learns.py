"""The loop end to end, as a user runs it: a server with `--capture` answers the official openai client from a
scripted teacher that knows made-up facts; `distil.run` on the capture folder, with its defaults, has the
teacher label those prompts and trains the built-in Gemma 3 270M with its rule; the student *generates* the
right answer to phrasings it never saw (scored by the eval), far above its base; the report says how much gain
it kept; the student is registered in the config and served back under its name. A second run re-uses every
stage."""

import json

import pytest

pytestmark = pytest.mark.heavy


def test_a_student_learns_what_its_teacher_knows(tmp_path, isolated_config):
    import asyncio

    import openai

    from gemfuse import distil
    from gemfuse.registry import Registry
    from gemfuse.serve.app import create_app
    from gemfuse.testing.scripted import ScriptedModel, scripted_registry
    from gemfuse.testing.tasks import FACTS, facts_task
    from gemfuse.testing.upstream import serve_in_thread

    task = facts_task(tmp_path / "facts")
    capitals = dict(FACTS)
    questions = [json.loads(line)["messages"][0]["content"] for line in task.train.read_text().splitlines()]

    def knows(messages):
        country = next(c for c in capitals if c in messages[-1].text)
        return f"The capital of {country} is {capitals[country]}."

    teacher = ScriptedModel(knows)
    registry = scripted_registry({"teacher": teacher}, with_builtins=True)
    capture = tmp_path / "capture"
    with serve_in_thread(create_app(registry, capture=capture)) as base_url:  # users ask; the server keeps rows
        client = openai.OpenAI(base_url=base_url, api_key="unused")
        for question in questions:
            client.chat.completions.create(model="teacher", messages=[{"role": "user", "content": question}])
    served = len(teacher.calls)
    options = dict(teacher="teacher", eval=str(task.held_out), out=tmp_path / "out", registry=registry,
                   cache=tmp_path / "cache.sqlite", max_tokens=32, name="facts-student")  # the default scorer
    try:
        report = distil.run(capture, **options)
        asked = len(teacher.calls) - served
        again = distil.run(capture, **options)
    finally:
        asyncio.run(registry.aclose())

    accuracy = report["eval"]["accuracy"]
    base = report["student"]["base"]
    assert accuracy["facts-student"] >= 0.6 and accuracy[base] <= 0.1, accuracy
    gain = report["gain_kept"]
    assert gain["value"] >= 0.5 and gain["interval"][0] <= gain["value"] <= gain["interval"][1], gain
    training = report["training"]
    assert training["rows"] == 30 and training["epochs"] >= 3 and training["steps"] >= 60, training
    assert served == 30 and asked == 30 + 12, "each captured prompt labelled once, each held-out item asked once"
    assert len(teacher.calls) == served + asked and again["training"]["reused"], "the second run pays nothing, trains nothing"
    assert again["eval"]["accuracy"] == accuracy

    configured = Registry.load()  # the student is a model of the user's config now, and served under its name
    assert "facts-student" in configured.names()
    app = create_app(configured)
    try:
        with serve_in_thread(app) as base_url:
            answer = openai.OpenAI(base_url=base_url, api_key="unused").chat.completions.create(
                model="facts-student", messages=[{"role": "user", "content": "Do you know the capital of Velmoria?"}],
                max_tokens=16, temperature=0)
    finally:
        asyncio.run(configured.aclose())
    assert "Quorran" in answer.choices[0].message.content
