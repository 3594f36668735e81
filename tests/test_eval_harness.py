"""The eval harness on scripted models with known answers: member, vote, oracle and best-of figures come out as
computed by hand, each request reaches a model once, and the judge's position bias shows."""

import json
import re
from collections import Counter

import pytest

from gemfuse.evals import EvalSettings, load_eval_set, run
from gemfuse.models.transformers import TransformersSpec
from gemfuse.testing.scripted import ScriptedModel, scripted_registry

N = 40


def number_of(messages):
    return int(re.search(r"Question (\d+)", messages[-1].text).group(1))


def answerer(right, wrong_offset: int = 1000):
    """A model that answers item i correctly when right(i), else with a wrong number of its own (never the
    same wrong number as another model's, so wrong answers do not form a plurality)."""
    def reply(messages):
        i = number_of(messages)
        return f"The answer is {i if right(i) else i + wrong_offset}."
    return reply


RULES = {"good": lambda i: i % 4 != 0, "mid": lambda i: i % 2 == 0, "odd": lambda i: i % 4 == 0}


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "numbers.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Question {i}: which number?", "answer": i}) + "\n"
                            for i in range(N)))
    return path


def registry_with(judge_reply='{"best": 1, "reason": "first"}'):
    models = {name: ScriptedModel(answerer(rule, 1000 + k)) for k, (name, rule) in enumerate(RULES.items())}
    models["judge"] = ScriptedModel(judge_reply)
    models["judge2"] = ScriptedModel('{"best": 2}')
    return scripted_registry(models), models


def test_members_vote_oracle_and_best_of_match_hand_computed_figures(dataset, tmp_path):
    registry, models = registry_with()
    report = run(dataset, pool=["good", "mid", "odd"], judge="judge", systems=["members", "vote", "best-of"],
                 registry=registry, cache=tmp_path / "cache.sqlite", seed=1)
    test_ids = [int(i.id[1:]) for i in load_eval_set(dataset, seed=1).test]
    assert len(test_ids) == 30 and report.data["test"] == 30

    def accuracy(right):
        return sum(map(right, test_ids)) / len(test_ids)

    for name, rule in RULES.items():
        assert report.system(name)["accuracy"] == pytest.approx(accuracy(rule))
    assert report.data["best_member"] == "good"

    def vote_right(i):  # plurality over the three answers; a three-way split goes to the first of the pool
        said = [i if RULES[m](i) else -hash(m) for m in ("good", "mid", "odd")]
        counts = Counter(said)
        top = max(counts.values())
        return next(s for s in said if counts[s] == top) == i

    assert report.system("vote")["accuracy"] == pytest.approx(accuracy(vote_right))
    assert report.system("vote")["oracle"] == pytest.approx(accuracy(lambda i: any(r(i) for r in RULES.values())))
    assert report.system("vote")["rescue"] == 0
    vote_vs_best = report.system("vote")["vs_best"]
    assert vote_vs_best["against"] == "good"
    assert vote_vs_best["only_a"] == sum(1 for i in test_ids if vote_right(i) and not RULES["good"](i))
    # the judge always says 1: the position bias shows it, and best-of is right where the first shown answer is
    best_of = report.system("best-of")
    assert best_of["position_bias"]["picks"] == [30, 0, 0] and best_of["position_bias"]["p_value"] < 1e-6
    records = [r for r in report.records if r.system == "best-of"]
    for record in records:
        chosen = record.judge.shown[0]
        assert record.correct == RULES[chosen](int(record.item[1:]))
    assert best_of["regret"] == sum(1 for r in records if any(r.candidates.values()) and not r.correct)
    # every member request reached its model once, across the member systems and both fusions
    for name in RULES:
        assert len(models[name].calls) == N, name
    assert len(models["judge"].calls) == 30
    assert any("first shown answer in 100%" in line for line in report.data["findings"])


def test_rerun_with_another_judge_reuses_every_member_answer(dataset, tmp_path):
    cache = tmp_path / "cache.sqlite"
    registry, models = registry_with()
    run(dataset, pool=["good", "mid"], judge="judge", systems=["members", "best-of"], registry=registry, cache=cache)
    registry, models = registry_with()
    report = run(dataset, pool=["good", "mid"], judge="judge2", systems=["members", "best-of"], registry=registry,
                 cache=cache, out=tmp_path / "out")
    assert [len(models[m].calls) for m in ("good", "mid", "judge")] == [0, 0, 0]
    assert len(models["judge2"].calls) == 30
    assert report.data["calls"]["made"] == {"judge2": 30}
    assert report.data["calls"]["results_reused"] == 2 * N
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "records.jsonl", "accuracy_cost.png"}
    assert (out / "accuracy_cost.png").read_bytes()[:4] == b"\x89PNG"
    assert "| best-of |" in (out / "report.md").read_text()


def test_a_fine_tune_is_tested_against_its_base(dataset, tmp_path):
    registry, models = registry_with()
    models["good"].spec = TransformersSpec(path=str(tmp_path), adapter=str(tmp_path / "adapter"))
    models["mid"].spec = TransformersSpec(path=str(tmp_path))
    registry.config.specs.update(good=models["good"].spec, mid=models["mid"].spec)
    report = run(dataset, models=["good", "mid"], registry=registry, cache="off")
    vs_base = report.system("good")["vs_base"]
    test_ids = [int(i.id[1:]) for i in load_eval_set(dataset).test]
    assert vs_base["against"] == "mid"
    assert vs_base["only_a"] == sum(1 for i in test_ids if RULES["good"](i) and not RULES["mid"](i))
    assert any("good is" in line and "its base mid" in line for line in report.data["findings"])


def test_failures_are_reported_not_hidden(dataset, tmp_path):
    registry, models = registry_with()
    models["broken"] = ScriptedModel(RuntimeError("boom"))
    registry._models["broken"] = models["broken"]
    models["broken"].name = "broken"
    registry.config.specs["broken"] = models["broken"].spec
    report = run(dataset, models=["broken", "good"], registry=registry, cache=tmp_path / "c.sqlite",
                 out=tmp_path / "out")
    broken = report.system("broken")
    assert broken["errors"] == 30 and broken["accuracy"] is None and "boom" in broken["failed"]
    assert "vs_best" not in broken and report.data["best_member"] == "good"
    assert any(line.startswith("broken failed: every one of its 30 items got no answer") and "boom" in line
               for line in report.data["findings"])
    assert "| broken | failed |" in (tmp_path / "out" / "report.md").read_text()


def test_the_rubric_evaluator_must_not_be_a_judge(dataset):
    registry, _ = registry_with()
    with pytest.raises(Exception, match="evaluator 'judge' is also a fusion judge"):
        run(dataset, pool=["good", "mid"], judge="judge", systems=["best-of"], registry=registry, cache="off",
            settings=EvalSettings(scorer="rubric", evaluator="judge"))


def test_rubric_scoring_through_an_evaluator_model(dataset, tmp_path):
    registry, models = registry_with()

    def grade(messages):  # prefers the answer holding the reference number, in whichever position
        text = messages[-1].text
        reference = re.search(r"Question (\d+)", text).group(1)
        one = text.split("Answer 1:\n")[1].split("\n")[0]
        two = text.split("Answer 2:\n")[1].split("\n")[0]
        ok1, ok2 = f"is {reference}." in one or one == reference, f"is {reference}." in two or two == reference
        return '{"better": "tie"}' if ok1 == ok2 else ('{"better": 1}' if ok1 else '{"better": 2}')

    models["grader"] = ScriptedModel(grade)
    registry._models["grader"] = models["grader"]
    models["grader"].name = "grader"
    registry.config.specs["grader"] = models["grader"].spec
    report = run(dataset, models=["good"], registry=registry, cache="off",
                 settings=EvalSettings(scorer="rubric", evaluator="grader"))
    test_ids = [int(i.id[1:]) for i in load_eval_set(dataset).test]
    good = report.system("good")
    assert good["accuracy"] == pytest.approx(sum(map(RULES["good"], test_ids)) / 30)  # right answers tie the reference
    assert len(models["grader"].calls) == 2 * N, "both orders, every item"


def test_a_run_folder_brings_its_base_model_along(tmp_path):
    from gemfuse.evals.systems import build_systems
    from gemfuse.registry import Registry

    run_folder = tmp_path / "runs" / "lora"
    (run_folder / "adapter").mkdir(parents=True)
    (run_folder / "adapter" / "adapter_config.json").write_text("{}")
    base = tmp_path / "base-model"
    base.mkdir()
    (run_folder / "manifest.json").write_text(json.dumps({"base_model": str(base)}))
    systems = build_systems(Registry.load(), models=[str(run_folder)], pool=[], judge=None, systems=["members"],
                            max_tokens=32, judge_max_tokens=32, temperature=0, seed=0, extractor="auto")
    assert [s.name for s in systems] == [str(run_folder), str(base)]
    assert systems[0].base == str(base) and systems[1].preset.members()[0].model == str(base)
    assert systems[0].preset.members()[0].seed == systems[1].preset.members()[0].seed == 0, "the same requests"


def test_swap_check_disagreement_of_a_judge_that_follows_position(dataset):
    registry, _ = registry_with()  # the judge always says 1: rotated, it names another member every time
    report = run(dataset, pool=["good", "mid"], judge="judge", systems=["best-of"], swap_check=True,
                 registry=registry, cache="off")
    best_of = report.system("best-of")
    assert best_of["swap_disagreement"] == 1.0 and best_of["position_bias"]["picks"] == [60, 0]


def test_a_built_in_base_is_named_as_the_config_names_it(tmp_path):
    """A fine-tune of the built-in Gemma is compared with `gemma-3-270m-hf`, not with `package:...`."""
    from gemfuse.evals.systems import build_systems
    from gemfuse.models.builtin import GEMMA3_270M
    from gemfuse.registry import Registry

    run_folder = tmp_path / "runs" / "lora"
    (run_folder / "adapter").mkdir(parents=True)
    (run_folder / "adapter" / "adapter_config.json").write_text("{}")
    (run_folder / "manifest.json").write_text(json.dumps({"base_model": GEMMA3_270M, "chat_template": "T",
                                                          "config": {"model": "gemma-3-270m-hf"}}))
    registry = Registry.load()
    systems = build_systems(registry, models=[str(run_folder)], pool=[], judge=None, systems=["members"],
                            max_tokens=32, judge_max_tokens=32, temperature=0, seed=0, extractor="auto")
    assert [s.name for s in systems] == [str(run_folder), "gemma-3-270m-hf"]
    assert systems[0].base == "gemma-3-270m-hf"
    base_spec = registry.spec("gemma-3-270m-hf")
    assert base_spec.chat_template == "T" and base_spec.adapter is None  # the fine-tune's template, no adapter
    assert "package:" not in registry.spec(str(run_folder)).description
