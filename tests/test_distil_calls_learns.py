"""Proof by generation that function calling distils: a noisy teacher pool (three members that know the right
call and each get every argument wrong 30% of the time, on their own) labels prompts with tools, a vote fuses
them, and the built-in Gemma 3 270M fine-tuned on the voted calls *generates* the right call for phrasings and
argument values it never saw, far above its base; a control trained on the same prompts with calls to the wrong
function learns the format and nothing of which call fits: it scores no better than chance, the share a constant
answer gets (the held-out set's most common call; a random valid call rarely gets every argument right)."""

import asyncio
import json
from collections import Counter

import pytest

pytestmark = pytest.mark.heavy


def test_a_student_learns_to_call_from_a_noisy_pool_and_the_wrong_function_control_does_not(tmp_path, isolated_config):
    from gemfuse import distil, run_sync
    from gemfuse.evals.harness import arun
    from gemfuse.fusion.preset import FusionPreset, Member
    from gemfuse.testing.call_task import SEEN, call_task, noisy_member, train_control
    from gemfuse.testing.scripted import ScriptedModel, scripted_registry

    task = call_task(tmp_path / "task", per_phrasing=3, held_per_phrasing=3, seen=SEEN[:2])
    members = {f"m{i}": ScriptedModel(noisy_member(task, 0.3, seed=i)) for i in range(3)}
    registry = scripted_registry(members, {"pool": FusionPreset(pool=[Member(model=m) for m in members], mode="vote")},
                                 with_builtins=True)
    training = ["train.max_steps=30", "train.batch_size=4"]
    cache = tmp_path / "cache.sqlite"
    try:
        report = distil.run(task.train, teacher="fusion/pool", eval=str(task.held_out), out=tmp_path / "out",
                            registry=registry, cache=cache, name="caller", add_to_config=False, set=training)
        train_control(task, tmp_path / "control", registry, set=training)
        # at the distil eval's answer length the caller's and the base's answers come from the cache, only the
        # control's are generated
        held = run_sync(arun(task.held_out, registry=registry, cache=cache, dev_fraction=0,
                             models=["caller", "control", report["student"]["base"]],
                             max_tokens=report["eval"]["max_tokens"]))
    finally:
        asyncio.run(registry.aclose())

    accuracy = report["eval"]["accuracy"]
    base = report["student"]["base"]
    assert report["filter"]["kept"] >= 30 and report["eval"]["items"] >= 10
    assert accuracy["caller"] >= 0.3 and accuracy[base] <= 0.1, accuracy
    gain = report["gain_kept"]
    assert gain["interval"][0] > 0, gain  # the student's gain over its base: the interval excludes none
    scored = {s["name"]: s for s in held.data["systems"]}
    calls = Counter(json.dumps(json.loads(line)["messages"][-1]["tool_calls"], sort_keys=True)
                    for line in task.held_out.read_text().splitlines())
    chance = max(calls.values()) / sum(calls.values())  # always answering the most common call
    assert scored["control"]["accuracy"] <= max(chance, 0.1), (scored["control"], chance)
    assert scored["caller"]["accuracy"] - scored["control"]["accuracy"] >= 0.25
    assert scored["caller"]["by_scorer"]["tool-call"]["n"] == report["eval"]["items"]
    assert scored["caller"]["accuracy"] == accuracy["caller"], "the same answers, from the cache"
