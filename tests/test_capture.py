"""Capture: answered requests become training rows with provenance; whole rows only, no secrets, rotation."""

import json

import pytest

from gemfuse.capture import CaptureWriter, Scrubber, agreement, capture_files, repair_tail
from gemfuse.data.schema import read_jsonl
from gemfuse.messages import Message
from gemfuse.testing.media import png_bytes
from gemfuse.testing.scripted import ScriptedModel, scripted_registry


def rows_of(folder):
    return [json.loads(line) for file in capture_files(folder) for line in file.read_text().splitlines()]


def test_fuse_capture_keeps_the_fused_answer_with_its_provenance(tmp_path):
    import gemfuse

    registry = scripted_registry({"a": ScriptedModel("The answer is 4."), "b": ScriptedModel("4"),
                                  "c": ScriptedModel("5")})
    picture = tmp_path / "p.png"
    picture.write_bytes(png_bytes())
    prompt = Message.user("What is 2+2? Say it.", images=[picture])
    result = gemfuse.fuse([prompt], pool=["a", "b", "c"], mode="vote", registry=registry, capture=tmp_path / "cap")
    [row] = rows_of(tmp_path / "cap")
    assert row["messages"][-1] == {"role": "assistant", "content": result.text}
    image, text = row["messages"][0]["content"]
    assert text == {"type": "text", "text": "What is 2+2? Say it."}
    assert (tmp_path / "cap" / image["path"]).read_bytes() == png_bytes()
    meta = row["meta"]
    assert meta["mode"] == "vote" and meta["source"] == "fuse" and meta["model"] == "fusion"
    assert meta["members"] == {"a": "The answer is 4.", "b": "4", "c": "5"}
    assert meta["agreement"]["count"] == 2 and meta["agreement"]["of"] == 3 and meta["agreement"]["margin"] == 1
    assert meta["degraded"] is None and meta["tokens"]["completion"] > 0
    [example] = read_jsonl(capture_files(tmp_path / "cap")[0])
    assert not example.issues, example.issues


def test_agreement_reads_answers_with_the_vote_extractors():
    same = agreement({"a": "The answer is 12.", "b": "12", "c": "twelve"}, "number")
    assert (same["answer"], same["count"], same["of"]) == ("12", 2, 3)
    unread = agreement({"a": "", "b": ""}, "number")
    assert unread["count"] == 1 and unread["answer"] is None, "unreadable answers never agree with each other"


def test_rows_rotate_at_the_size_cap_and_a_torn_tail_is_cut(tmp_path):
    writer = CaptureWriter(tmp_path, max_mb=600 / 1024 / 1024)
    for i in range(6):
        writer.add([Message.user(f"question {i} " + "x" * 150)], f"answer {i}", {"i": i})
    files = capture_files(tmp_path)
    assert len(files) >= 3 and all(f.stat().st_size <= 600 for f in files)
    assert [r["meta"]["i"] for r in rows_of(tmp_path)] == list(range(6))
    with open(files[-1], "ab") as handle:  # a process killed in the middle of a row
        handle.write(b'{"messages": [{"role": "user", "content": "half')
    assert repair_tail(files[-1]) > 0 and repair_tail(files[-1]) == 0
    with open(files[-1], "ab") as handle:
        handle.write(b'{"messages": [')
    CaptureWriter(tmp_path).add([Message.user("after")], "restart", {"i": 6})
    assert [r["meta"]["i"] for r in rows_of(tmp_path)] == list(range(7))


def test_secrets_are_replaced_in_every_text(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_PROVIDER_KEY", "zq8-provider-secret-value")
    writer = CaptureWriter(tmp_path, scrubber=Scrubber.from_env(["MY_PROVIDER_KEY", "UNSET_VARIABLE"]))
    writer.add([Message.user("my key is zq8-provider-secret-value and sk-abcdefghijklmnopqrstuv")],
               "Authorization: Bearer abcdef0123456789", {"note": "zq8-provider-secret-value"})
    text = capture_files(tmp_path)[0].read_text()
    assert "zq8-provider-secret-value" not in text and "sk-abcdefghijklmnopqrstuv" not in text
    assert "abcdef0123456789" not in text and text.count("[secret]") == 4


def test_capture_models_filter_by_pattern(tmp_path):
    writer = CaptureWriter(tmp_path, models=["fusion/*", "gpt-*"])
    assert writer.wants("fusion/default") and writer.wants("gpt-mini") and not writer.wants("smollm2-135m")


def test_an_unwritable_capture_folder_is_a_clear_error(tmp_path):
    from gemfuse.errors import ConfigError

    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="capture folder"):
        CaptureWriter(tmp_path / "file" / "cap")


@pytest.mark.heavy
def test_the_server_captures_whole_and_streamed_answers_of_models_and_fusions(tmp_path, upstream, monkeypatch):
    """`gemfuse serve --capture` driven by the official openai client; then a server killed mid-stream."""
    import base64
    import os
    import signal
    import subprocess
    import sys
    import threading

    import openai

    from gemfuse.data.target import load_target
    from gemfuse.data.validate import validate
    from gemfuse.testing.upstream import free_port, wait_until_up

    server_key, upstream_key = "srv-key-5d1c9e7a3b", "sk-upstream-0123456789abcdef"
    config = tmp_path / "config.toml"
    config.write_text(f"""
[models.remote]
backend = "openai"
base_url = "{upstream[0]}"
model = "ok"
api_key_env = "CAPTURE_TEST_UPSTREAM_KEY"
price = {{ input = 1.0, output = 2.0 }}

[models.remote2]
backend = "openai"
base_url = "{upstream[0]}"
model = "slow-10"

[models.stalls]
backend = "openai"
base_url = "{upstream[0]}"
model = "stall"

[presets.pair]
pool = ["remote", "remote2"]
mode = "vote"
""")
    capture = tmp_path / "capture"
    port = free_port()
    env = {**os.environ, "GEMFUSE_API_KEY": server_key, "CAPTURE_TEST_UPSTREAM_KEY": upstream_key}
    gemfuse = os.path.join(os.path.dirname(sys.executable), "gemfuse")
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([gemfuse, "serve", "--port", str(port), "--config", str(config), "--capture", str(capture)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", proc)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=server_key, max_retries=0, timeout=30)
        picture = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
        asked = [{"role": "user", "content": [{"type": "text", "text": f"Describe it (my key: {server_key})"},
                                              {"type": "image_url", "image_url": {"url": picture}}]}]
        answers = {}
        answers["remote"] = client.chat.completions.create(model="remote", messages=asked).choices[0].message.content
        streamed = client.chat.completions.create(model="remote", messages=[{"role": "user", "content": "streamed"}],
                                                  stream=True)
        answers["remote streamed"] = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        answers["fusion/pair"] = client.chat.completions.create(
            model="fusion/pair", messages=[{"role": "user", "content": "fused"}]).choices[0].message.content
        streamed = client.chat.completions.create(model="fusion/pair", stream=True,
                                                  messages=[{"role": "user", "content": "fused stream"}])
        answers["fusion/pair streamed"] = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)

        rows = rows_of(capture)
        assert [r["messages"][-1]["content"] for r in rows] == [a.replace(server_key, "[secret]")
                                                                for a in answers.values()]
        assert [r["meta"]["model"] for r in rows] == ["remote", "remote", "fusion/pair", "fusion/pair"]
        assert rows[0]["meta"]["cost"] > 0 and rows[0]["meta"]["request_id"].startswith("chatcmpl-")
        assert rows[2]["meta"]["members"] == {"remote": "echo: fused", "remote2": "echo: fused"}
        assert rows[3]["meta"]["agreement"]["count"] == 2
        text = "".join(f.read_text() for f in capture_files(capture))
        assert server_key not in text and upstream_key not in text and "[secret]" in text
        report = validate(capture_files(capture)[0], load_target("gemma3"))
        assert report.ok and report.summary()["rows"] == 4 and report.summary()["images"] == 1

        def stalled_stream():
            with pytest.raises(openai.APIError):
                for _ in client.chat.completions.create(model="stalls", stream=True,
                                                        messages=[{"role": "user", "content": "never ends"}]):
                    got_first.set()

        got_first = threading.Event()
        waiting = threading.Thread(target=stalled_stream, daemon=True)
        waiting.start()
        assert got_first.wait(20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        waiting.join(10)
        assert len(rows_of(capture)) == 4, "an unfinished answer is not a row; the rows before it are whole"
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


@pytest.mark.heavy
def test_ask_captures_one_model_and_a_fusion(tmp_path, upstream, isolated_config):
    import os
    import subprocess
    import sys

    isolated_config.write_text(f'[models.remote]\nbackend = "openai"\nbase_url = "{upstream[0]}"\nmodel = "ok"\n\n'
                               f'[models.remote2]\nbackend = "openai"\nbase_url = "{upstream[0]}"\nmodel = "slow-10"\n')
    gemfuse = os.path.join(os.path.dirname(sys.executable), "gemfuse")
    for extra in (["-m", "remote"], ["--pool", "remote,remote2", "--mode", "vote"]):
        done = subprocess.run([gemfuse, "ask", "What is up?", *extra, "--capture", str(tmp_path / "cap")],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    rows = rows_of(tmp_path / "cap")
    assert [r["meta"]["source"] for r in rows] == ["ask", "ask"]
    assert [r["meta"]["model"] for r in rows] == ["remote", "fusion"]
    assert all(r["messages"] == [{"role": "user", "content": "What is up?"},
                                 {"role": "assistant", "content": "echo: What is up?"}] for r in rows)
