"""Real fusions: the two built-in models with a real judge, and a pool of real HTTP servers on 127.0.0.1."""

import json
import os
import subprocess
import sys

import pytest

from gemfuse.fusion import afuse
from gemfuse.registry import Registry

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only


@pytest.fixture(autouse=True)
def fresh_counts(upstream):
    upstream[1].clear()


async def test_default_preset_fuses_the_builtin_models():
    registry = Registry.load()
    try:
        result = await afuse("What is the capital of France? Answer in one sentence.", preset="default",
                             registry=registry, seed=5)
    finally:
        await registry.aclose()
    trace = result.trace
    assert result.text.strip()
    assert sorted(c.model for c in trace.candidates) == ["gemma-3-270m", "smollm2-135m"]
    assert any("paris" in c.text.lower() for c in trace.candidates)
    judge_calls = [c for c in trace.calls if c.role == "judge"]
    assert len(judge_calls) == 1 and judge_calls[0].model == "smollm2-135m" and judge_calls[0].usage.prompt_tokens > 50
    assert trace.cost == 0 and trace.unpriced == [], "built-in local models are priced at zero, not unpriced"
    assert trace.usage.total_tokens == sum(c.usage.total_tokens for c in trace.calls)
    assert trace.phases["fan_out"] > 0 and trace.phases["judge"] > 0


async def test_pool_of_http_members_slow_failing_and_rate_limited(upstream, isolated_config):
    base_url, calls = upstream
    isolated_config.write_text(f"""
[models.slow]
backend = "openai"
base_url = "{base_url}"
model = "slow-300"
price = {{ input = 1.0, output = 1.0 }}
[models.failing]
backend = "openai"
base_url = "{base_url}"
model = "always-503"
max_retries = 1
backoff_s = 0.01
[models.limited]
backend = "openai"
base_url = "{base_url}"
model = "429-then-ok"
[models.judge]
backend = "openai"
base_url = "{base_url}"
model = "ok"
""")
    registry = Registry.load()
    try:
        result = await afuse("2+2?", pool=["slow", "failing", "limited"], judge="judge", mode="best-of",
                             registry=registry)
    finally:
        await registry.aclose()
    trace = result.trace
    assert {c.member for c in trace.candidates} == {"slow", "limited"}
    assert [(c.member, c.error) for c in trace.failures] == [("failing", "upstream")]
    assert calls["429-then-ok"] == 2 and calls["always-503"] == 2, "retried as configured"
    assert result.text in {c.text for c in trace.candidates}
    assert trace.cost > 0 and set(trace.unpriced) == {"judge", "limited"}


def test_cli_fusion_json_and_trace(tmp_path):
    trace_file = tmp_path / "trace.jsonl"
    gemfuse = os.path.join(os.path.dirname(sys.executable), "gemfuse")
    result = subprocess.run([gemfuse, "ask", "What is 2+2?", "--pool", "smollm2-135m,gemma-3-270m", "--mode", "vote",
                             "--max-tokens", "24", "--json", "--trace", str(trace_file)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["mode"] == "vote" and data["text"] and len(data["calls"]) == 2
    assert json.loads(trace_file.read_text().splitlines()[0])["answer"] == data["text"]
    shown = subprocess.run([gemfuse, "ask", "What is 2+2?", "--preset", "default", "--mode", "best-of",
                            "--show-candidates", "--max-tokens", "24"], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert "── smollm2-135m" in shown.stdout and "── gemma-3-270m" in shown.stdout
    assert "[best-of by smollm2-135m" in shown.stderr and "cost $" in shown.stderr
