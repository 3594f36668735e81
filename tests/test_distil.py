"""Distil's stages on scripted teachers: labels equal the fused answers with their provenance, each filter rule
drops exactly the rows it should, leakage into the eval set is refused before any call, a re-run pays nothing."""

import json

import pytest

from gemfuse import distil
from gemfuse.distil.prompts import PromptError
from gemfuse.fusion.preset import FusionPreset, Member
from gemfuse.testing.scripted import ScriptedModel, scripted_registry

QUESTIONS = {"What is 2+2?": ("4", "4", "4"), "What is 3+3?": ("6", "6", "7"), "What is 5+5?": ("10", "11", "12"),
             "Name a red fruit.": ("An apple.", "A cherry.", "A strawberry."),
             "What is 9-1?": ("8", "8", "8")}
REFERENCES = {"What is 2+2?": "4", "What is 9-1?": "9"}  # the teacher is wrong about 9-1


def member(position: int) -> ScriptedModel:
    return ScriptedModel(lambda messages: QUESTIONS[messages[-1].text][position])


@pytest.fixture
def setup(tmp_path):
    models = {"a": member(0), "b": member(1), "c": member(2)}
    registry = scripted_registry(models, {"trio": FusionPreset(pool=[Member(model=n) for n in "abc"], mode="vote")})
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"messages": [{"role": "user", "content": q}] +
             ([{"role": "assistant", "content": REFERENCES[q]}] if q in REFERENCES else [])} for q in QUESTIONS]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return registry, models, prompts, tmp_path


def labelled(folder):
    return [json.loads(line) for line in (folder / "labelled.jsonl").read_text().splitlines()]


def test_labels_are_the_fused_answers_with_provenance(setup):
    registry, models, prompts, tmp = setup
    report = distil.label(prompts, teacher="fusion/trio", out=tmp / "data", registry=registry,
                          cache=tmp / "cache.sqlite")
    assert report.labelled == 5 and not report.failed and sum(report.calls_made.values()) == 15
    rows = labelled(tmp / "data")
    assert [r["messages"][0]["content"] for r in rows] == list(QUESTIONS), "the prompts' order"
    answers = [r["messages"][-1]["content"] for r in rows]
    assert answers == ["4", "6", "10", "An apple.", "8"]  # a plurality, and the first member on a tie
    meta = rows[1]["meta"]
    assert meta["model"] == "fusion/trio" and meta["source"] == "label" and meta["mode"] == "vote"
    assert meta["members"] == {"a": "6", "b": "6", "c": "7"} and meta["agreement"]["count"] == 2
    assert rows[2]["meta"]["degraded"] and rows[0]["meta"]["degraded"] is None
    assert rows[0]["meta"]["reference"] == "4" and rows[0]["meta"]["where"].endswith("prompts.jsonl:1")


def test_a_rerun_pays_no_call_and_writes_the_same_rows(setup):
    registry, models, prompts, tmp = setup
    distil.label(prompts, teacher="fusion/trio", out=tmp / "data", registry=registry, cache=tmp / "cache.sqlite")
    first = (tmp / "data" / "labelled.jsonl").read_bytes()
    asked = sum(len(m.calls) for m in models.values())
    again = distil.label(prompts, teacher="fusion/trio", out=tmp / "data", registry=registry,
                         cache=tmp / "cache.sqlite")
    assert sum(len(m.calls) for m in models.values()) == asked and again.from_cache == 5
    assert (tmp / "data" / "labelled.jsonl").read_bytes() == first


def test_each_filter_rule_drops_exactly_its_rows(setup):
    registry, _, prompts, tmp = setup
    distil.label(prompts, teacher="fusion/trio", out=tmp / "data", registry=registry, cache="off")
    report = distil.filter(tmp / "data", min_agree=2, drop_degraded=False)
    dropped = {json.loads(line)["messages"][0]["content"]: json.loads(line)["meta"]["dropped"]["reason"]
               for line in (tmp / "data" / "dropped.jsonl").read_text().splitlines()}
    # 5+5 and the fruit: no two members agreed; 9-1: all agreed on 8, the reference says 9
    assert dropped == {"What is 5+5?": "disagreed", "Name a red fruit.": "disagreed", "What is 9-1?": "wrong"}
    assert report.kept == 2 and report.dropped == {"disagreed": 2, "wrong": 1}
    kept = [json.loads(line)["messages"][0]["content"] for line in (tmp / "data" / "train.jsonl").read_text().splitlines()]
    assert kept == ["What is 2+2?", "What is 3+3?"]
    unverified = distil.filter(tmp / "data", verify=False, drop_degraded=False)
    assert unverified.kept == 5
    degraded = distil.filter(tmp / "data", verify=False)
    assert degraded.dropped == {"degraded": 2}, "the two ties fell back to the first member: degraded"


def test_duplicates_exact_and_near_are_dropped(tmp_path):
    registry = scripted_registry({"t": ScriptedModel("fine")})
    questions = ["How do I boil an egg?", "how do I boil an egg", "How do I boil an egg, please?",
                 "What is the tallest mountain on Earth?"]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in questions))
    distil.label(prompts, teacher="t", out=tmp_path / "d", registry=registry, cache="off")
    report = distil.filter(tmp_path / "d", near_duplicate=0.6)
    assert report.kept == 2 and report.dropped == {"duplicate": 2}
    exact_only = distil.filter(tmp_path / "d", near_duplicate=1.0)
    assert exact_only.kept == 3


def test_a_prompt_in_the_eval_set_is_refused_before_any_call(setup):
    registry, models, prompts, tmp = setup
    held = tmp / "test.jsonl"
    held.write_text(json.dumps({"prompt": "Capital of Peru?", "answer": "Lima"}) + "\n"
                    + json.dumps({"prompt": "what is 3+3", "answer": "6"}) + "\n")
    with pytest.raises(PromptError, match=r"prompts.jsonl:2 is the same prompt as .*test.jsonl:2"):
        distil.label(prompts, teacher="fusion/trio", out=tmp / "data", registry=registry, cache="off", eval=str(held))
    assert not any(m.calls for m in models.values())


def test_a_failing_teacher_is_reported_not_dropped_silently(tmp_path):
    from gemfuse.errors import UpstreamError

    registry = scripted_registry({"t": ScriptedModel(["ok", UpstreamError("boom", model="t"), "ok"])})
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"q{i}"}) + "\n" for i in range(3)))
    report = distil.label(prompts, teacher="t", out=tmp_path / "d", registry=registry, cache="off", concurrency=1)
    assert report.labelled == 2 and len(report.failed) == 1 and "boom" in report.failed[0]["why"]
    assert json.loads((tmp_path / "d" / "label.json").read_text())["failed"] == report.failed


def test_settings_come_from_a_toml_file_and_are_checked(tmp_path):
    from gemfuse.errors import ConfigError

    file = tmp_path / "distil.toml"
    file.write_text('teacher = "fusion/default"\nmin_agree = 2\nset = ["train.lr=1e-3"]\n')
    settings = distil.distil_settings(file=file, min_agree=3)
    assert settings.teacher == "fusion/default" and settings.min_agree == 3 and settings.set == ["train.lr=1e-3"]
    file.write_text("min_agre = 2\n")
    with pytest.raises(ConfigError, match="min_agre.*min_agree"):
        distil.distil_settings(file=file)


def test_a_capture_folder_is_a_prompt_set_and_its_answers_are_not_references(tmp_path):
    from gemfuse.capture import CaptureWriter
    from gemfuse.messages import Message

    writer = CaptureWriter(tmp_path / "captured")
    writer.add([Message.system("Be brief."), Message.user("What is 2+2?")], "5", {"model": "cheap"})
    writer.add([Message.user("Name a red fruit.")], "A banana.", {"model": "cheap"})
    with open(sorted((tmp_path / "captured").glob("capture-*.jsonl"))[-1], "ab") as handle:
        handle.write(b'{"messages": [{"role": "user", "content": "still being writ')  # a live server's next row
    registry = scripted_registry({"t": ScriptedModel(lambda m: "4" if "2+2" in m[-1].text else "An apple.")})
    report = distil.label(tmp_path / "captured", teacher="t", out=tmp_path / "d", registry=registry, cache="off")
    rows = labelled(tmp_path / "d")
    assert report.prompts == 2 and [r["messages"][-1]["content"] for r in rows] == ["4", "An apple."]
    assert rows[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert all(r["meta"]["reference"] is None for r in rows), "a served answer is not a checked reference"


def test_the_command_line_filters_and_says_what_is_missing(setup, monkeypatch):
    from typer.testing import CliRunner

    from gemfuse.cli import app

    registry, _, prompts, tmp = setup
    distil.label(prompts, teacher="fusion/trio", out=tmp / "data", registry=registry, cache="off")
    (tmp / "rules.toml").write_text("min_agree = 2\n")
    done = CliRunner().invoke(app, ["distil", "filter", str(tmp / "data"), "--settings", str(tmp / "rules.toml"),
                                    "--no-verify", "--no-drop-degraded", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["dropped"] == {"disagreed": 2}
    missing = CliRunner().invoke(app, ["distil", "run", str(prompts), "--teacher", "fusion/trio",
                                       "--out", str(tmp / "out")])
    assert missing.exit_code == 1 and "--eval" in missing.output
    wrong = CliRunner().invoke(app, ["distil", "filter", str(tmp / "data"), "--near-duplicate", "2"])
    assert wrong.exit_code != 0 and "near-duplicate" in wrong.output


def test_a_config_entry_may_name_a_run_folder(tmp_path, isolated_config):
    from gemfuse.config import load_config
    from gemfuse.errors import ConfigError

    isolated_config.write_text(f'[models.student]\nrun = "{tmp_path / "nothing-here"}"\n')
    with pytest.raises(ConfigError, match="models.student.run: .* not a finished fine-tune run folder"):
        load_config()
    isolated_config.write_text(f'[models.student]\nrun = "{tmp_path}"\nbackend = "transformers"\n')
    with pytest.raises(ConfigError, match="models.student.backend: a run-folder model takes only run and description"):
        load_config()


def test_a_student_named_like_a_preset_is_refused_before_any_call(tmp_path, isolated_config):
    """`--name eyes` beside [presets.eyes]: the student would be asked as the preset and every item fail."""
    from gemfuse import distil
    from gemfuse.errors import ConfigError

    teacher = ScriptedModel("Paris.")
    registry = scripted_registry({"t": teacher}, {"eyes": FusionPreset(pool=[Member(model="t")], mode="vote")})
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"messages": [{"role": "user", "content": "Capital of France?"}]}) + "\n")
    held = tmp_path / "test.jsonl"
    held.write_text(json.dumps({"prompt": "Capital of Italy?", "answer": "Rome"}) + "\n")
    with pytest.raises(ConfigError, match=r"name = 'eyes': a fusion preset.*another name"):
        distil.run(prompts, teacher="fusion/eyes", eval=str(held), name="eyes", out=tmp_path / "out",
                   registry=registry, cache="off")
    assert teacher.calls == [] and not (tmp_path / "out" / "data").exists()


def test_the_distil_eval_reads_answers_as_the_filter_does(tmp_path):
    """Sentence answers ("The capital of Mirorisel is Vanbelville.") against a bare reference: the eval's own
    `auto` wants text exact and scored everyone 0; a distil run's eval uses the filter's rule."""
    from gemfuse.distil.pipeline import eval_scorer
    from gemfuse.distil.settings import distil_settings

    words, numbers = tmp_path / "words.jsonl", tmp_path / "numbers.jsonl"
    words.write_text(json.dumps({"messages": [{"role": "user", "content": "Capital of Mirorisel?"}],
                                 "answer": "Vanbelville"}) + "\n")
    numbers.write_text(json.dumps({"prompt": "2 + 2?", "answer": 4}) + "\n")
    assert eval_scorer(distil_settings(None, eval=str(words))) == "contains"
    assert eval_scorer(distil_settings(None, eval=str(numbers))) == "numeric"
    assert eval_scorer(distil_settings(None, eval=str(words), scorer="exact")) == "exact"


def test_an_eval_where_everyone_scores_nothing_blames_the_scorer(tmp_path):
    from gemfuse.evals import run as run_eval

    data = tmp_path / "facts.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Capital of land {i}?", "answer": f"City{i}"}) + "\n" for i in range(4)))
    registry = scripted_registry({"knows": ScriptedModel(lambda m: f"The capital is City{m[-1].text.split()[-1][:-1]}."),
                                  "also": ScriptedModel(lambda m: f"It is City{m[-1].text.split()[-1][:-1]}.")})
    report = run_eval(data, registry=registry, models=["knows", "also"], systems=["members"], cache="off",
                      scorer="exact", dev_fraction=0.0)
    assert all(s["correct"] == 0 for s in report.data["systems"])
    assert any("'exact' scorer most likely cannot read" in line and "score with contains" in line
               for line in report.data["findings"])
    right = run_eval(data, registry=registry, models=["knows", "also"], systems=["members"], cache="off",
                     scorer="contains", dev_fraction=0.0)
    assert all(s["accuracy"] == 1.0 for s in right.data["systems"])
    assert not any("scorer most likely" in line for line in right.data["findings"])


def test_the_distil_eval_answer_length_follows_the_labelled_answers(tmp_path):
    from gemfuse.distil.pipeline import eval_max_tokens
    from gemfuse.distil.settings import distil_settings

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"messages": [{"role": "user", "content": "q"},
                                                      {"role": "assistant", "content": answer}]}) + "\n"
                             for answer in ("The capital of Velmoria is Quorran.", "Yes.")))
    assert eval_max_tokens(distil_settings(None), train) == len("The capital of Velmoria is Quorran.") // 2 + 16
    assert eval_max_tokens(distil_settings(None, max_tokens=100), train) == 100  # what the user set is kept
    # a call's length is the prompted call the student writes, not the OpenAI structure it is stored in
    call = {"id": "call_0", "type": "function",
            "function": {"name": "book_court", "arguments": json.dumps({"sport": "tennis", "players": 4})}}
    calls = tmp_path / "calls.jsonl"
    calls.write_text(json.dumps({"messages": [{"role": "user", "content": "q"},
                                              {"role": "assistant", "content": None, "tool_calls": [call]}]}) + "\n")
    written = '{"name": "book_court", "parameters": {"sport": "tennis", "players": 4}}'
    assert eval_max_tokens(distil_settings(None), calls) == len(written) // 2 + 16


def test_a_student_that_never_answered_is_failed_not_zero(tmp_path):
    """A student whose every eval item errored has no accuracy and no gain kept, with the reason, where a 0% would
    read as a student that learned nothing."""
    from gemfuse.distil.gain import gain_kept
    from gemfuse.evals import run as run_eval

    data = tmp_path / "facts.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Capital of land {i}?", "answer": f"City{i}"}) + "\n"
                            for i in range(6)))
    registry = scripted_registry({"student": ScriptedModel(RuntimeError("a fusion cannot call a fusion")),
                                  "base": ScriptedModel(lambda m: "No idea."),
                                  "teacher": ScriptedModel(lambda m: f"City{m[-1].text.split()[-1][:-1]}")})
    report = run_eval(data, registry=registry, models=["student", "base", "teacher"], systems=["members"],
                      cache="off", scorer="contains", dev_fraction=0.0)
    student = report.system("student")
    assert student["accuracy"] is None and "a fusion cannot call a fusion" in student["failed"]
    gain = gain_kept(report, student="student", base="base", teacher="teacher")
    assert gain["value"] is None and gain["why"].startswith("student failed: every one of its 6 items")
    assert gain_kept(report, student="base", base="base", teacher="teacher")["value"] == 0.0  # the others still read
