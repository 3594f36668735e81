"""Every fusion setting is defined once (FusionPreset's fields) and reaches a fusion the same way through the
Python API, `gemfuse ask`, the server's `fusion` block and a `fusion/<preset>` model; unset means the preset's."""

import json
import os
import subprocess
import sys
import typing

import httpx
import pytest

from gemfuse.fusion.api import make_preset
from gemfuse.fusion.preset import FusionPreset
from gemfuse.fusion.settings import setting_fields
from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.registry import Registry
from gemfuse.serve.chat import fusion_settings
from gemfuse.serve.schemas import ChatRequest


def sample(name: str):
    """A valid value for the setting that differs from the preset's default."""
    values = {"judge": "b", "backup_judge": "a", "mode": "best-of", "extractor": "number", "temperature": 0.3,
              "max_cost": 0.5, "swap_check": True, "seed": 7, "tie_break": "judge", "debate_final": "merge",
              "self_final": "merge", "min_answers": 2, "vote_weight": "confidence", "threshold": -0.1,
              "cascade_final": "confidence", "logprobs": True, "certainty": "self-certainty"}
    if name in values:
        return values[name]
    annotation = setting_fields()[name].annotation
    assert int in typing.get_args(annotation) or annotation is int, name
    return 3


@pytest.mark.parametrize("name", sorted(setting_fields()))
def test_each_setting_is_accepted_by_the_api_the_cli_and_the_server(name):
    value = sample(name)
    base = FusionPreset(pool=["a", "b"], judge="a", mode="vote")
    assert getattr(make_preset(base, **{name: value}), name) == value  # fuse(..., name=value)
    request = ChatRequest.model_validate({"model": "x", "messages": [{"role": "user", "content": "q"}],
                                          "fusion": {"analysis_models": ["a", "b"], name: value}})
    assert fusion_settings(request)[name] == value
    import typer.main

    from gemfuse.cli import app

    command = typer.main.get_command(app).commands["ask"]
    flag = "--" + name.replace("_", "-")
    args = ["q", "--pool", "a,b", flag] if value is True else ["q", "--pool", "a,b", flag, str(value)]
    params = command.make_context("ask", args).params
    assert params[name] == value or str(params[name]) == str(value)


@pytest.fixture
def scripted(tmp_path, monkeypatch):
    from gemfuse.testing.upstream import create_app, serve_in_thread

    monkeypatch.setenv("UPSTREAM_KEY", "sk-test")
    upstream = create_app()
    with serve_in_thread(upstream) as base_url:
        config = tmp_path / "fusion.toml"
        models = "".join(f'[models.{name}]\nbackend = "openai"\nbase_url = "{base_url}"\nmodel = "{behaviour}"\n'
                         f'api_key_env = "UPSTREAM_KEY"\n\n' for name, behaviour in
                         (("a", "ok"), ("b", "slow-20"), ("c", "slow-2000")))
        config.write_text(models + '[presets.short]\npool = ["a", "b"]\nmode = "vote"\nmax_tokens = 96\n')
        yield config, upstream.state.answered


def member_max_tokens(answered, prompt: str) -> list[int]:
    bodies = [json.loads(key) for key in answered]
    return sorted(b.get("max_tokens") for b in bodies if prompt in json.dumps(b["messages"]))


@pytest.mark.heavy
async def test_a_presets_max_tokens_reaches_its_members_through_every_door(scripted):
    config, answered = scripted
    registry = Registry.load(config)
    from gemfuse.fusion.api import afuse

    await afuse("through the API", preset="short", registry=registry)
    await registry.get("fusion/short").generate([Message.user("through FusionModel")])
    await registry.get("fusion/short").generate([Message.user("an explicit 40")], GenerateOptions(max_tokens=40))
    from gemfuse.serve.app import create_app

    transport = httpx.ASGITransport(app=create_app(registry))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        reply = await client.post("/v1/chat/completions", json={
            "model": "fusion/short", "messages": [{"role": "user", "content": "through the server"}]})
        assert reply.status_code == 200, reply.text
        block = await client.post("/v1/chat/completions", json={
            "model": "any", "messages": [{"role": "user", "content": "a fusion block"}],
            "fusion": {"preset": "short", "min_answers": 2}})
        assert block.status_code == 200 and block.json()["fusion"]["calls"], block.text
    env = {**os.environ, "GEMFUSE_CONFIG": str(config)}
    for args in (["-m", "fusion/short"], ["--preset", "short"]):
        done = subprocess.run([sys.executable, "-m", "gemfuse.cli", "ask", f"through the CLI {args[0]}", *args],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    for prompt in ("through the API", "through FusionModel", "through the server", "a fusion block",
                   "through the CLI -m", "through the CLI --preset"):
        assert member_max_tokens(answered, prompt) == [96, 96], prompt
    assert member_max_tokens(answered, "an explicit 40") == [40, 40]


@pytest.mark.heavy
def test_cli_quorum_and_grace_cut_a_straggler(scripted):
    config, _ = scripted
    env = {**os.environ, "GEMFUSE_CONFIG": str(config)}
    done = subprocess.run([sys.executable, "-m", "gemfuse.cli", "ask", "who is slow?", "--pool", "a,b,c", "--mode",
                           "vote", "--min-answers", "2", "--grace-ms", "300", "--json"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    trace = json.loads(done.stdout)
    assert [f["member"] for f in trace["failures"]] == ["c"] and trace["failures"][0]["reason"] == "cut"
    assert trace["phases"]["total"] < 1.5  # the 2-second member was not waited for
    refused = subprocess.run([sys.executable, "-m", "gemfuse.cli", "ask", "q", "--min-answers", "2"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--min-answers: fusion settings" in refused.stderr


def test_a_repeated_list_option_keeps_every_value():
    """`--set train.max_steps=150 --set train.lr=3e-3` applies both (the last alone was kept), as does a,b."""
    import typer
    from typer.testing import CliRunner

    from gemfuse.commands.options import with_options
    from gemfuse.distil.settings import DistilSettings, distil_settings

    seen = {}
    app = typer.Typer()

    @app.command()
    @with_options(DistilSettings.model_fields, into="chosen")
    def run(chosen: dict) -> None:
        seen.update(distil_settings(None, **chosen).model_dump())

    done = CliRunner().invoke(app, ["--set", "train.max_steps=150", "--set", "train.lr=3e-3,train.dtype=float32"])
    assert done.exit_code == 0, done.output
    assert seen["set"] == ["train.max_steps=150", "train.lr=3e-3", "train.dtype=float32"]


def test_an_ad_hoc_pool_resolves_to_one_preset_through_every_door():
    """No mode given: a judge merges, and without one the members vote, whether the pool comes from `fuse()`,
    `ask --pool` (both make_preset) or the server's fusion block."""
    assert make_preset(pool=["a", "b"]).mode == "vote"
    assert make_preset(pool=["a", "b"], judge="j").mode == "merge"
    assert make_preset(pool=["a", "b"], mode="best-of", judge="j").mode == "best-of"
    served = fusion_settings(ChatRequest.model_validate({"model": "fusion", "messages": [{"role": "user",
                                                                                           "content": "hi"}],
                                                         "fusion": {"analysis_models": ["a", "b"]}}))
    assert make_preset(**served) == make_preset(pool=["a", "b"])
    judged = fusion_settings(ChatRequest.model_validate({"model": "fusion", "messages": [{"role": "user",
                                                                                           "content": "hi"}],
                                                         "fusion": {"analysis_models": ["a", "b"], "judge": "j"}}))
    assert make_preset(**judged) == make_preset(pool=["a", "b"], judge="j")
    assert FusionPreset(pool=["a"]).mode == "vote", "a config's preset without a mode or a judge votes"


@pytest.mark.heavy
def test_ask_with_a_pool_and_no_judge_votes(scripted):
    config, _ = scripted
    done = subprocess.run([sys.executable, "-m", "gemfuse.cli", "ask", "What is 2+2?", "--pool", "a,b", "--json"],
                          env={**os.environ, "GEMFUSE_CONFIG": str(config)}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mode"] == "vote"


async def test_a_fusion_requests_seed_top_p_and_stop_reach_it_and_n_is_refused(scripted):
    from gemfuse.serve.app import create_app

    config, answered = scripted
    transport = httpx.ASGITransport(app=create_app(Registry.load(config)))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        reply = await client.post("/v1/chat/completions", json={
            "model": "fusion/short", "messages": [{"role": "user", "content": "sampled"}], "seed": 7, "top_p": 0.5,
            "stop": ["END"]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["fusion"]["seed"] == 7, "the request's seed is the fusion's"
        refused = await client.post("/v1/chat/completions", json={
            "model": "fusion/short", "messages": [{"role": "user", "content": "twice"}], "n": 2})
    bodies = [json.loads(key) for key in answered if "sampled" in key]
    assert len(bodies) == 2 and all(b["top_p"] == 0.5 and b["stop"] == ["END"] for b in bodies), bodies
    assert refused.status_code == 400 and "one fused answer" in refused.json()["error"]["message"]
