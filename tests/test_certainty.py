"""The certainty measures against hand computations on fixed distributions, each backend's way to its figures
(the full distribution in process, an endpoint's top alternatives as an approximation that says so), and the
fusion modes reading the measure they are given."""

import math

import numpy as np
import pytest
import torch

from gemfuse import fuse
from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions, TokenLogprob
from gemfuse.models.certainty import TOP_K, certainties, certainty, from_alternatives, step_figures, steps_figures
from gemfuse.models.logprobs import log_normaliser
from gemfuse.models.openai import OpenAIModel, OpenAISpec
from gemfuse.testing.scripted import ScriptedModel, scripted_registry

PROBABILITIES = [0.5, 0.25, 0.125, 0.125]


def test_a_steps_figures_are_the_papers_definitions_by_hand():
    logits = np.log(np.array(PROBABILITIES, dtype=np.float32)) + 3.0  # logits are log-probabilities up to a shift
    confidence, kl_uniform = step_figures(logits, log_normaliser(logits), top=2)
    assert confidence == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2, abs=1e-6)  # DeepConf, k = 2
    assert kl_uniform == pytest.approx(sum(0.25 * math.log(0.25 / p) for p in PROBABILITIES), abs=1e-6)
    uniform = np.zeros(4, dtype=np.float32)
    assert step_figures(uniform, log_normaliser(uniform))[1] == pytest.approx(0.0, abs=1e-7)  # no certainty at all


def test_the_in_process_figures_agree_between_numpy_and_torch():
    rows = torch.randn(5, 300) * 4
    confidence, kl_uniform = steps_figures(torch.log_softmax(rows, dim=-1))
    for i, row in enumerate(rows.numpy()):
        assert (confidence[i], kl_uniform[i]) == pytest.approx(step_figures(row, log_normaliser(row)), abs=1e-4)


def tokens(confidences, kl=None, logprob=-0.1):
    return [TokenLogprob(f"w{i}", logprob, confidence=c, self_certainty=(kl or confidences)[i])
            for i, c in enumerate(confidences)]


def test_the_lowest_window_finds_the_unsure_stretch_a_mean_hides():
    answer = tokens([10, 10, 2, 3, 10, 10, 10, 10])
    assert certainty(answer, "lowest-window", window=2) == pytest.approx(2.5)  # the window over tokens 3-4
    assert certainty(answer, "lowest-window", window=100) == pytest.approx(65 / 8)  # shorter: one window, the mean
    assert certainty(answer, "self-certainty") == pytest.approx(65 / 8)
    assert certainty(answer, "mean") == pytest.approx(-0.1)
    assert certainty([TokenLogprob("x", -0.2)], "self-certainty") is None  # no figures: unknown, never guessed
    assert set(certainties(answer)) == {"mean", "lowest-window", "self-certainty"}


def test_an_endpoints_alternatives_give_an_approximation_that_says_so():
    top = [("Paris", math.log(0.6)), ("Lyon", math.log(0.3))]
    token = from_alternatives(TokenLogprob("Paris", math.log(0.6), list(top)))
    assert token.approximate and token.self_certainty == pytest.approx(-math.log(0.1))
    assert token.confidence == pytest.approx(-(math.log(0.6) + math.log(0.3)) / 2)
    # the whole distribution: the unnamed 0.1 spread unevenly over a 5000-token vocabulary
    rest = np.random.default_rng(0).dirichlet(np.ones(4998)) * 0.1
    full = np.log(np.concatenate([[0.6, 0.3], rest]))
    exact = step_figures(full, log_normaliser(full))[1]
    assert exact >= token.self_certainty - 0.01, "spread evenly is the most uncertain the rest can be"


@pytest.fixture
def capped(monkeypatch):
    from gemfuse.testing.upstream import create_app, serve_in_thread

    app = create_app()
    with serve_in_thread(app) as base_url:
        yield base_url, app


async def test_an_endpoint_is_asked_for_the_alternatives_and_the_caller_gets_what_it_asked(capped):
    base_url, app = capped
    model = OpenAIModel("m", OpenAISpec(base_url=base_url, model="ok"))
    completion = await model.generate([Message.user("one two")], GenerateOptions(logprobs=True))
    assert all(t.top == [] and t.approximate and t.confidence is not None for t in completion.logprobs)
    limited = OpenAIModel("m", OpenAISpec(base_url=base_url, model="top-5"))
    for _ in range(2):  # refused 20 alternatives once: asked without them, log-probabilities kept
        answer = await limited.generate([Message.user("one two")], GenerateOptions(logprobs=True, top_logprobs=3))
        assert [len(t.top) for t in answer.logprobs] == [3, 3, 3] and answer.certainty == -0.25
    assert limited._top_refused and TOP_K > 5
    await model.aclose()
    await limited.aclose()


def scripted(text, confidences, logprob):
    return ScriptedModel(text, logprobs=lambda messages: [
        TokenLogprob(w, logprob, confidence=c, self_certainty=c) for w, c in zip(text.split(), confidences, strict=True)])


def test_the_modes_read_the_measure_they_are_given():
    # `sure` is surer on average, but one of its words was a guess; `steady` never wavered
    registry = scripted_registry({"sure": scripted("The capital is Quorran", [15, 15, 15, 1], -0.05),
                                  "steady": scripted("The capital is Velmo", [9, 9, 9, 9], -0.2)})
    by_mean = fuse("Q?", pool=["sure", "steady"], mode="confidence", registry=registry)
    by_window = fuse("Q?", pool=["sure", "steady"], mode="confidence", certainty="lowest-window", certainty_window=2,
                     registry=registry)
    assert by_mean.chosen == "sure" and by_window.chosen == "steady"
    assert by_window.trace.confidence == pytest.approx({"sure": 8.0, "steady": 9.0})
    assert by_window.trace.confidence_method.startswith("DeepConf's lowest group confidence")
    assert "windows of 2 tokens" in by_window.trace.confidence_method
    calls = by_window.trace.candidates
    assert calls[0].certainties == pytest.approx({"mean": -0.05, "lowest-window": 8.0, "self-certainty": 11.5})
    cascade = fuse("Q?", pool=["sure", "steady"], mode="cascade", certainty="self-certainty", threshold=12,
                   registry=registry)
    assert cascade.trace.answered_by_tier is None and "self-certainty certainty 11.500 < threshold 12" in \
        cascade.trace.tiers[0].why


def test_auroc_by_hand():
    from gemfuse.evals.separation import auroc

    assert auroc([(3, True), (2, True), (1, False), (0, False)]) == 1.0
    assert auroc([(0, True), (1, False)]) == 0.0
    assert auroc([(1, True), (1, False), (2, True), (0, False)]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert auroc([(1, True), (2, True)]) is None  # no wrong answer: undefined, never 1


async def test_the_eval_says_which_measure_tells_right_from_wrong_and_calibrates_the_cascade(tmp_path):
    """A cheap member that guesses (wrong) on every third question with one unsure word in a sure sentence: the
    lowest window sees it, the mean barely does. The cascade is calibrated on dev by that measure and escalates
    exactly the guesses."""
    import json

    from gemfuse.evals import arun
    from gemfuse.models.spec import Price

    def number(messages) -> int:
        return int(messages[-1].text.split()[2].rstrip("?"))

    def guesses(messages) -> bool:
        return number(messages) % 3 == 0

    def cheap_tokens(messages):
        words = f"It is {3 * number(messages) + guesses(messages)} for sure".split()
        window = [6, 6, 1.5 if guesses(messages) else 5, 6, 6]
        # the mean log-probability cannot tell: a guess differs by a hair, and in the wrong direction half the time
        mean = -0.2 + (0.01 if guesses(messages) and number(messages) % 2 else -0.01 if guesses(messages) else 0)
        return [TokenLogprob(w, mean, confidence=c, self_certainty=10.0) for w, c in zip(words, window, strict=True)]

    cheap = ScriptedModel(lambda m: f"It is {3 * number(m) + guesses(m)} for sure", price=Price(input=1, output=1),
                          logprobs=cheap_tokens)
    dear = ScriptedModel(lambda m: f"It is {3 * number(m)} indeed", price=Price(input=100, output=100),
                         logprobs=lambda m: [TokenLogprob(w, -0.1, confidence=6, self_certainty=10.0)
                                             for w in f"It is {3 * number(m)} indeed".split()])
    registry = scripted_registry({"cheap": cheap, "dear": dear})
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"prompt": f"What is {i}? Triple it.", "answer": str(3 * i)}) + "\n"
                             for i in range(48)))
    report = await arun(items, registry=registry, cache=tmp_path / "c.sqlite", pool=["cheap", "dear"],
                        systems=["members", "cascade"], certainty="lowest-window", seed=1, out=tmp_path / "out")
    told = report.data["certainty"]
    assert told["on"] == "dev" and told["pick"] == "lowest-window"
    assert told["measures"]["lowest-window"]["members"]["cheap"] == 1.0
    assert told["measures"]["mean"]["members"]["cheap"] < 0.8
    assert told["measures"]["self-certainty"]["members"]["cheap"] == 0.5  # the same everywhere: chance
    low, high = told["measures"]["lowest-window"]["interval"]
    assert low <= 1.0 <= high + 1e-9
    cascade = report.system("cascade")
    assert cascade["certainty"] == "lowest-window" and cascade["calibration"]["on"] == "dev"
    # five tokens, shorter than a window: a guess's confidence is 5.1, a known fact's 5.8
    assert 5.1 < cascade["threshold"] < 5.8 and cascade["accuracy"] == 1.0
    test_guesses = sum(1 for r in report.records if r.system == "cascade" and int(r.item.split("-")[1]) % 3 == 0)
    # dear answered every item once, as a member: the calibration on dev and the cascade re-used those calls
    assert len(registry.get("dear").calls) == report.data["dev"] + report.data["test"]
    assert cascade["calls_per_item"] == pytest.approx(1 + test_guesses / cascade["n"])
    assert any("calibrated on" in line and "lowest-window" in line for line in report.data["findings"])
    assert "| lowest-window (pick) | 1.00" in (tmp_path / "out" / "report.md").read_text()
