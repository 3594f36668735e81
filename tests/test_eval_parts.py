"""Eval building blocks against hand-computed cases: statistics, scorers, datasets, built-in generators."""

import json
import math
import random
import re

import pytest

from gemfuse.evals.datasets import DatasetError, EvalItem, load_eval_set
from gemfuse.evals.generators import generate
from gemfuse.evals.scorers import choice, exact, numeric, regex, rubric
from gemfuse.evals.stats import bootstrap_interval, mcnemar, percentile, position_bias
from gemfuse.messages import Message


def item(answer, choices=None, question="q?"):
    return EvalItem(id="x", messages=[Message.user(question)], answer=answer, choices=choices)


# -- statistics -----------------------------------------------------------------------------------------------------
def test_bootstrap_interval_covers_the_true_rate_about_95_percent_of_the_time():
    rng = random.Random(1)
    covered = 0
    trials = 120
    for trial in range(trials):
        sample = [1.0 if rng.random() < 0.3 else 0.0 for _ in range(100)]
        low, high = bootstrap_interval(sample, resamples=400, seed=trial)
        assert low <= sum(sample) / 100 <= high
        covered += low <= 0.3 <= high
    assert 0.88 <= covered / trials <= 0.99, covered


def test_bootstrap_interval_of_a_constant_is_that_constant():
    assert bootstrap_interval([1.0] * 20) == (1.0, 1.0)


def test_mcnemar_exact_and_chi_square_against_hand_computed_values():
    # 10 items only A right, 2 only B right, 8 both right: exact two-sided binomial, 2 * P(X <= 2 | n=12)
    a = [True] * 10 + [False] * 2 + [True] * 8
    b = [False] * 10 + [True] * 2 + [True] * 8
    test = mcnemar(a, b)
    assert (test.only_a, test.only_b, test.method) == (10, 2, "exact")
    assert test.p_value == pytest.approx(2 * (1 + 12 + 66) / 4096)
    # 30 vs 10 discordant: chi-square with continuity, (|30-10|-1)^2/40 = 9.025 on 1 dof
    big = mcnemar([True] * 30 + [False] * 10, [False] * 30 + [True] * 10)
    assert big.method == "chi2" and big.p_value == pytest.approx(math.erfc(math.sqrt(9.025 / 2)))
    assert big.p_value == pytest.approx(0.002663, abs=2e-6)
    assert mcnemar([True, False], [True, False]).p_value == 1.0


def test_percentile_interpolates_between_ranks():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10, 20, 30, 40, 50], 95) == pytest.approx(48)


def test_position_bias_of_a_judge_that_always_says_one():
    bias = position_bias([(1, 2)] * 20)
    assert bias.picks == [20, 0] and bias.shares() == [1.0, 0.0] and bias.expected == [10, 10]
    assert bias.p_value < 1e-4  # 20 of 20 against chance
    fair = position_bias([(1, 3), (2, 3), (3, 3)] * 5)
    assert fair.picks == [5, 5, 5] and fair.p_value == pytest.approx(1.0)


# -- scorers --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reply,right", [
    ("42", True), ("The answer is 42.", True), ("17 + 25 = 42", True), ("#### 42", True), ("\\boxed{42}", True),
    ("The answer is 42. Because 40 + 2 = 42, not 41", True), ("41", False), ("no idea", False), ("42.0000001", True),
    ("I think 42, but the answer is 41.", False)])
def test_numeric(reply, right):
    assert numeric(item("42"), reply).correct is right


def test_numeric_reads_thousands_and_tolerance():
    assert numeric(item("1234"), "That makes 1,234 in total").correct
    assert not numeric(item("0.5"), "0.51").correct
    assert numeric(item("0.5"), "0.51", tolerance=0.05).correct


def test_exact_normalises_case_punctuation_and_articles():
    assert exact(item("Paris"), "The answer is: Paris.").correct
    assert exact(item("the Eiffel Tower"), "eiffel tower").correct
    assert not exact(item("Paris"), "Lyon").correct


def test_choice_reads_letters_and_option_text():
    options = ["3", "7", "9", "12"]
    assert choice(item("B", options), "(B)").correct
    assert choice(item("B", options), "The answer is B.").correct
    assert choice(item("C", options), "answer: c").correct
    assert choice(item("B", options), "7").correct  # the option's own text
    assert not choice(item("B", options), "A) 3").correct
    assert choice(item("B", options), "E").extracted is None  # no such option


def test_regex_as_reference_or_as_reader():
    assert regex(item(r"\bquorran\b"), "The capital is Quorran.").correct
    assert not regex(item(r"\bquorran\b"), "The capital is Tirmund.").correct
    assert regex(item("Quorran"), "Capital: Quorran!", pattern=r"Capital:\s*(\w+)").correct


async def test_rubric_is_pairwise_in_both_orders_and_keeps_ties():
    async def always_second(system, user):
        return '{"better": 2}'  # position bias: whichever answer is shown second

    async def prefers_reply(system, user):
        first = user.split("Answer 1:\n")[1].split("\n")[0]
        return '{"better": 1}' if first == "good reply" else '{"better": 2}'

    async def tie(system, user):
        return '{"better": "tie"}'

    assert (await rubric(item("reference"), "good reply", prefers_reply)).value == 1.0
    biased = await rubric(item("reference"), "good reply", always_second)
    assert biased.value == 0.5, "the two orders disagree: a tie, not a win"
    assert (await rubric(item("reference"), "x", tie)).value == 0.5


# -- datasets -------------------------------------------------------------------------------------------------------
def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_jsonl_forms_choices_gsm8k_and_chat_with_reference(tmp_path):
    path = write(tmp_path / "set.jsonl", [
        {"prompt": "2+2?", "answer": 4},
        {"question": "Tom has 3 and gets 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
        {"prompt": "Pick the even one.", "choices": ["3", "8"], "answer": "8"},
        {"messages": [{"role": "user", "content": "Capital of Velmoria?"},
                      {"role": "assistant", "content": "Quorran"}]},
        {"messages": [{"role": "user", "content": "3*3?"}], "answer": "9", "id": "nine", "split": "dev"}])
    data = load_eval_set(path)
    assert [i.answer for i in data.items] == ["4", "7", "B", "Quorran", "9"]
    assert "A) 3\nB) 8" in data.items[2].messages[-1].text
    assert [m.role for m in data.items[3].messages] == ["user"], "the reference is not shown to the model"
    assert data.items[4].id == "nine" and [i.split for i in data.items] == ["test"] * 4 + ["dev"]
    assert data.kind == "text"


def test_bad_rows_are_named_by_file_line_and_field(tmp_path):
    path = write(tmp_path / "bad.jsonl", [
        {"prompt": "ok", "answer": "1"}, {"answer": "1"}, {"prompt": "x", "choices": ["a", "b"], "answer": "Z"},
        "{not json"])
    with pytest.raises(DatasetError) as error:
        load_eval_set(path)
    assert f"{path}:4: invalid JSON" in str(error.value)
    write(path, [{"prompt": "ok", "answer": "1"}, {"answer": "1"}, {"prompt": "x", "choices": ["a", "b"], "answer": "Z"},
                 {"prompt": "y"}, {"prompt": "ok", "answer": "1", "split": "holdout"}])
    with pytest.raises(DatasetError) as error:
        load_eval_set(path)
    text = str(error.value)
    assert f"{path}:2: needs 'prompt'" in text and f"{path}:3: answer: 'Z'" in text
    assert f"{path}:4: answer: missing" in text and f"{path}:5: split: 'holdout'" in text


def test_parquet_through_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list([{"question": f"{i}+1?", "answer": f"#### {i + 1}"} for i in range(8)]).to_parquet(
        str(tmp_path / "set.parquet"))
    data = load_eval_set(tmp_path / "set.parquet")
    assert [i.answer for i in data.items] == [str(i + 1) for i in range(8)] and data.kind == "number"
    assert len(data.dev) == 2 and len(data.test) == 6


def test_builtin_sets_are_exact_seeded_and_stable_in_n():
    rows = generate("arithmetic", 40, seed=3)
    for row in rows:
        expression = re.match(r"What is (.+)\? ", row["prompt"]).group(1)
        assert eval(expression) == int(row["answer"]), row  # the generator's own arithmetic is right
    assert generate("arithmetic", 10, seed=3) == rows[:10], "item i does not depend on n"
    assert generate("arithmetic", 10, seed=4) != rows[:10]
    words = generate("word", 30, seed=0)
    assert all(int(r["answer"]) >= 0 for r in words) and len({r["prompt"] for r in words}) == 30
    choices = load_eval_set("builtin:math-choice", n=24)
    assert choices.kind == "choice" and len(choices.dev) == 6
    for it in choices.items:
        assert it.choices[ord(it.answer) - 65] in it.messages[-1].text and len(set(it.choices)) == 4


def test_unknown_builtin_and_missing_file():
    with pytest.raises(DatasetError, match="builtin:arithmetic"):
        load_eval_set("builtin:algebra")
    with pytest.raises(DatasetError, match="no such file"):
        load_eval_set("nowhere.jsonl")


def test_exact_bootstrap_of_right_wrong_values_matches_resampling():
    values = [1.0] * 13 + [0.0] * 27
    exact_interval = bootstrap_interval(values)
    resampled = bootstrap_interval([*values[:-1], 0.0001], resamples=4000)  # not 0/1: resampled
    assert exact_interval[0] == pytest.approx(resampled[0], abs=0.03)
    assert exact_interval[1] == pytest.approx(resampled[1], abs=0.03)
