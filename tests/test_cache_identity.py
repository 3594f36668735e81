"""A cached answer is never served for a model that changed: each change that decides an answer (a model string,
a base URL, the judge, the judge's prompt, weights retrained in place) asks again, counted at a loopback
upstream; an unchanged re-run, or a price edit, asks nothing."""

import json

import pytest

from gemfuse import distil, evals
from gemfuse.registry import Registry
from gemfuse.testing.upstream import create_app, serve_in_thread


def _config(path, url, a="slow-1", judge="judge-1", a_url=None, price=1.0):
    path.write_text("".join(f"""
[models.{name}]
backend = "openai"
base_url = "{where}"
model = "{model}"
price = {{ input = {price}, output = 2.0 }}
""" for name, model, where in (("a", a, a_url or url), ("b", "slow-2", url), ("j", judge, url))) + """
[presets.pair]
pool = ["a", "b"]
mode = "vote"
""")
    return path


@pytest.fixture
def servers():
    first, second = create_app(), create_app()
    with serve_in_thread(first) as one, serve_in_thread(second) as two:
        yield (first, one), (second, two)


def _data(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"What is {i} plus 1?", "answer": str(i + 1)}) + "\n"
                            for i in range(6)))
    return path


def _eval_calls(tmp_path, config, apps, run) -> dict:
    import asyncio

    before = [dict(app.state.calls) for app in apps]

    async def go():
        registry = Registry.load(config)
        try:
            await evals.arun(_data(tmp_path), registry=registry, models=["a", "b"], pool=["a", "b"], judge="j",
                             systems=["members", "best-of"], dev_fraction=0.0, cache=tmp_path / "cache.sqlite",
                             out=tmp_path / f"out-{run}")
        finally:
            await registry.aclose()

    asyncio.run(go())
    return {k: v - before[i].get(k, 0) for i, app in enumerate(apps) for k, v in app.state.calls.items()
            if v - before[i].get(k, 0)}


def test_an_eval_asks_again_for_each_change_that_decides_an_answer(tmp_path, servers, monkeypatch):
    (first, url), (second, url2) = servers
    apps = (first, second)
    config = tmp_path / "config.toml"

    asked = _eval_calls(tmp_path, _config(config, url), apps, 1)
    assert asked["slow-1"] == asked["slow-2"] == 6 and asked["judge-1"] == 6, asked
    assert _eval_calls(tmp_path, config, apps, 2) == {}, "unchanged: nothing asked"
    assert _eval_calls(tmp_path, _config(config, url, price=9.0), apps, 3) == {}, "a price is not an answer"

    asked = _eval_calls(tmp_path, _config(config, url, a="slow-3"), apps, 4)  # model a now points elsewhere
    # (this upstream echoes, so the judge is shown the same candidates: its call is rightly reused)
    assert asked == {"slow-3": 6}, asked

    asked = _eval_calls(tmp_path, _config(config, url, a="slow-3", a_url=url2), apps, 5)  # another server
    assert second.state.calls["slow-3"] == 6 and "slow-2" not in asked, asked

    asked = _eval_calls(tmp_path, _config(config, url, a="slow-3", a_url=url2, judge="judge-2"), apps, 6)
    assert asked == {"judge-2": 6}, "a swapped judge is asked; the members' answers are reused"

    from gemfuse.fusion import judge

    original = judge.prompt

    def reworded(name):
        return {key: type(t)("Judge carefully. " + t.template) for key, t in original(name).items()}

    monkeypatch.setattr(judge, "prompt", reworded)
    asked = _eval_calls(tmp_path, config, apps, 7)
    assert asked == {"judge-2": 6}, "a changed judge prompt is another judge"


def test_distil_labels_again_when_a_teacher_member_changes(tmp_path, servers):
    (first, url), _ = servers
    config = _config(tmp_path / "config.toml", url)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Question {i}?"}]}) + "\n"
                               for i in range(4)))

    def label(run):
        import asyncio

        before = dict(first.state.calls)

        async def go():
            registry = Registry.load(config)
            try:
                return await distil.alabel(prompts, teacher="fusion/pair", out=tmp_path / f"data-{run}",
                                           registry=registry, cache=tmp_path / "cache.sqlite")
            finally:
                await registry.aclose()

        report = asyncio.run(go())
        return report, {k: v - before.get(k, 0) for k, v in first.state.calls.items() if v - before.get(k, 0)}

    report, asked = label(1)
    assert report.labelled == 4 and asked == {"slow-1": 4, "slow-2": 4}
    report, asked = label(2)
    assert report.from_cache == 4 and asked == {}
    _config(config, url, a="slow-3")
    report, asked = label(3)
    assert report.from_cache == 0 and asked == {"slow-3": 4}, "b's answers come from the call cache"


def test_weights_rewritten_in_place_are_another_model(tmp_path):
    """A config model whose adapter folder is retrained under the same path: its identity changes."""
    import os

    from gemfuse.evals.identity import spec_identity
    from gemfuse.models.transformers import TransformersSpec

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"first")
    spec = TransformersSpec(path=str(tmp_path / "base"), adapter=str(adapter))
    before = spec_identity(spec)
    assert spec_identity(spec) == before
    weights = adapter / "adapter_model.safetensors"
    stamp = weights.stat().st_mtime_ns
    weights.write_bytes(b"second!")
    os.utime(weights, ns=(stamp, stamp))  # a clock that did not move: only the size tells
    assert weights.stat().st_mtime_ns == stamp and spec_identity(spec) != before
