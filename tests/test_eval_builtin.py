"""A real eval, offline: the two built-in models, alone, voting and judged, on 20 generated problems."""

import json

import pytest

from gemfuse import evaluate

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only


@pytest.mark.slow
def test_builtin_models_on_generated_arithmetic(tmp_path):
    models = ["smollm2-135m", "gemma-3-270m"]
    settings = dict(models=models, pool=models, judge="smollm2-135m", systems=["members", "vote", "best-of"], n=20,
                    cache=tmp_path / "cache.sqlite", max_tokens=48)
    report = evaluate("builtin:arithmetic", out=tmp_path / "out", **settings)
    data = report.data
    assert (data["items"], data["dev"], data["test"]) == (20, 5, 15)
    assert [s["name"] for s in data["systems"]] == [*models, "vote", "best-of"]
    for system in data["systems"]:
        assert system["errors"] == 0 and system["n"] == 15
        assert 0 <= system["interval"][0] <= system["accuracy"] <= system["interval"][1] <= 1
        assert system["cost"] == 0 and not system["unpriced"], "built-in models are free, not unpriced"
        assert system["completion_tokens_per_item"] > 0 and system["latency_p50_s"] > 0
    assert data["best_member"] in models
    best_of = report.system("best-of")
    assert best_of["calls_per_item"] >= 3, "two members and at least one judge call"
    # members answer 20 items each; the fusions re-use those answers: one call per member per item, no more
    assert data["calls"]["made"]["gemma-3-270m"] == 20
    records = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 20 + 2 * 15
    # a warm re-run makes no model call at all and reports the same
    again = evaluate("builtin:arithmetic", **settings)
    assert again.data["calls"]["made"] == {} and again.data["calls"]["results_reused"] == 70
    assert again.data["systems"] == data["systems"]
