"""The loop on real models: a scripted teacher that knows made-up facts labels unanswered prompts, `distil.run`
trains the built-in Gemma 3 270M with its default rule, and the student *generates* the right answer to
phrasings it never saw (scored by the eval), far above its base; the report says how much gain it kept, and the
student is registered in the config. A second run re-uses every stage."""

import json

import pytest

pytestmark = pytest.mark.heavy


def test_a_student_learns_what_its_teacher_knows(tmp_path, isolated_config):
    import asyncio

    from gemfuse import distil
    from gemfuse.messages import Message
    from gemfuse.models.base import GenerateOptions
    from gemfuse.registry import Registry
    from gemfuse.testing.scripted import ScriptedModel, scripted_registry
    from gemfuse.testing.tasks import FACTS, facts_task

    task = facts_task(tmp_path / "facts")
    capitals = dict(FACTS)
    prompts = tmp_path / "prompts.jsonl"  # the training questions, without answers
    prompts.write_text("".join(json.dumps({"messages": json.loads(line)["messages"][:1]}) + "\n"
                               for line in task.train.read_text().splitlines()))

    def knows(messages):
        country = next(c for c in capitals if c in messages[-1].text)
        return f"The capital of {country} is {capitals[country]}."

    teacher = ScriptedModel(knows)
    registry = scripted_registry({"teacher": teacher}, with_builtins=True)
    options = dict(teacher="teacher", eval=str(task.held_out), out=tmp_path / "out", registry=registry,
                   cache=tmp_path / "cache.sqlite", max_tokens=32, name="facts-student")  # the default scorer
    try:
        report = distil.run(prompts, **options)
        asked = len(teacher.calls)
        again = distil.run(prompts, **options)
    finally:
        asyncio.run(registry.aclose())

    accuracy = report["eval"]["accuracy"]
    base = report["student"]["base"]
    assert accuracy["facts-student"] >= 0.6 and accuracy[base] <= 0.1, accuracy
    gain = report["gain_kept"]
    assert gain["value"] >= 0.5 and gain["interval"][0] <= gain["value"] <= gain["interval"][1], gain
    training = report["training"]
    assert training["rows"] == 30 and training["epochs"] >= 3 and training["steps"] >= 60, training
    assert asked == 30 + 12, "each training prompt once, then each held-out item once as a system"
    assert len(teacher.calls) == asked and again["training"]["reused"], "the second run pays nothing, trains nothing"
    assert again["eval"]["accuracy"] == accuracy

    configured = Registry.load()  # the student is a model of the user's config now
    assert "facts-student" in configured.names()
    question = "Do you know the capital of Velmoria?"

    async def ask():
        try:
            return await configured.get("facts-student").generate([Message.user(question)],
                                                                   GenerateOptions(max_tokens=16, temperature=0))
        finally:
            await configured.aclose()

    assert "Quorran" in asyncio.run(ask()).text
