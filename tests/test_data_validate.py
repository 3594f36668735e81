"""The validation suite against a corpus of broken inputs: each reported with its code and line, none crashing."""

import io
import json
import os
import struct
import subprocess
import sys
import zlib

import pytest

from gemfuse.data.target import load_target
from gemfuse.data.validate import validate
from gemfuse.testing.media import png_bytes, wav_bytes


def huge_png(width=20_000, height=10_000) -> bytes:
    """A valid-looking PNG whose header claims 200 megapixels (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def user(*parts):
    return {"role": "user", "content": list(parts)}


def image(path):
    return {"type": "image", "path": path}


def audio(path):
    return {"type": "audio", "path": path}


def answer(text="fine"):
    return {"role": "assistant", "content": text}


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "ok.png").write_bytes(png_bytes())
    (root / "truncated.jpg").write_bytes(jpeg_bytes()[:300])
    (root / "bad.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage-header-bytes")
    (root / "empty.png").write_bytes(b"")
    (root / "bomb.png").write_bytes(huge_png())
    (root / "long.wav").write_bytes(wav_bytes(seconds=31, rate=16_000))
    (root / "hifi.wav").write_bytes(wav_bytes(seconds=0.5, rate=44_100))
    (tmp_path / "outside.png").write_bytes(png_bytes())
    os.symlink(tmp_path / "outside.png", root / "link.png")
    rows = [
        {"messages": [user({"type": "text", "text": "hi"}), answer()]},                      # 1 fine
        {"messages": [user(image("truncated.jpg"), {"type": "text", "text": "?"}), answer()]},  # 2 truncated JPEG
        {"messages": [user(audio("bad.wav")), answer()]},                                   # 3 broken WAV header
        {"messages": [user(image("empty.png")), answer()]},                                  # 4 0-byte file
        {"messages": [user(image("nowhere.png")), answer()]},                                # 5 missing path
        None,                                                                                # 6 bad UTF-8
        {"messages": [user(image("bomb.png")), answer()]},                                   # 7 200 MP claim
        {"messages": [user(image("../outside.png")), answer()]},                             # 8 escapes by ..
        {"messages": [user(image("link.png")), answer()]},                                   # 9 escapes by symlink
        {"messages": [{"role": "robot", "content": "x"}, answer()]},                         # 10 unknown role
        {"messages": [user({"type": "text", "text": "a"}), user({"type": "text", "text": "b"}), answer()]},  # 11
        {"messages": [user({"type": "text", "text": "a"}), answer("   ")]},                  # 12 empty answer
        {"messages": [user({"type": "text", "text": "only a question"})]},                   # 13 no answer
        {"messages": [user({"type": "text", "text": "hi"}), answer()]},                      # 14 duplicate of 1
        {"messages": [user(audio("long.wav")), answer()]},                                   # 15 31 s audio
        {"messages": [user(audio("hifi.wav")), answer()]},                                   # 16 44.1 kHz: warning
        "{not json",                                                                         # 17 invalid JSON
        {"messages": [user(image("ok.png"), {"type": "text", "text": "<end_of_turn>sneaky"}), answer()]},  # 18
    ]
    with open(root / "train.jsonl", "wb") as out:
        for row in rows:
            if row is None:
                out.write(b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n')
            elif isinstance(row, str):
                out.write(row.encode() + b"\n")
            else:
                out.write(json.dumps(row).encode() + b"\n")
    return root


EXPECTED = {2: "undecodable", 3: "undecodable", 4: "empty_media", 5: "media_missing", 6: "bad_utf8",
            7: "image_too_large", 8: "path_escapes", 9: "path_escapes", 10: "unknown_role", 11: "bad_turn_order",
            12: "empty_assistant", 13: "no_assistant", 15: "audio_too_long", 17: "invalid_json",
            18: "control_token_in_text"}


def test_every_broken_input_is_reported_on_its_line(corpus, tiny_model):
    report = validate(corpus / "train.jsonl", load_target(str(tiny_model("gemma4"))))
    errors = {}
    for issue in report.issues:
        if issue.severity == "error":
            errors.setdefault(issue.line, set()).add(issue.code)
    for line, code in EXPECTED.items():
        assert code in errors.get(line, set()), f"line {line}: expected {code}, got {errors.get(line)}"
    assert set(errors) == set(EXPECTED), "no false errors on good lines"
    warnings = {(i.line, i.code) for i in report.issues if i.severity == "warning"}
    assert {(14, "duplicate"), (16, "resampled")} <= warnings
    by_line = {i.line: i for i in report.issues}
    assert "200000000 pixels" in by_line[7].message and "31.0 s of audio is over gemma4's 30 s limit" in by_line[15].message
    assert by_line[5].file.endswith("train.jsonl") and "nowhere.png" in by_line[5].message
    assert report.summary()["rows"] == 18 and not report.ok
    assert errors[17] == {"invalid_json"} and errors[6] == {"bad_utf8"}  # one error per cause
    assert not [i.message for i in report.issues if " at 0x" in i.message]  # no object reprs in messages
    (corpus / "partless.jsonl").write_text(json.dumps({"messages": [user({"type": "image"}), answer()]}) + "\n")
    partless = validate(corpus / "partless.jsonl", load_target(str(tiny_model("gemma4"))))
    assert any("an image part needs" in i.message for i in partless.issues)


def test_family_limits(corpus, tiny_model):
    (corpus / "audio.jsonl").write_text(json.dumps({"messages": [user(audio("hifi.wav")), answer()]}) + "\n")
    report = validate(corpus / "audio.jsonl", load_target(str(tiny_model("gemma3"))))
    assert [i.code for i in report.issues] == ["unsupported_media"] and "gemma3 takes no audio" in report.issues[0].message


def test_truncation_analysis(tmp_path, tiny_model):
    (tmp_path / "a.png").write_bytes(png_bytes())
    long_answer = " ".join(["word"] * 60)
    rows = [{"messages": [user({"type": "text", "text": "x " * 40}), answer(long_answer)]},
            {"messages": [user({"type": "text", "text": "hello"}), answer(long_answer)]},
            {"messages": [user({"type": "text", "text": "y " * 30}, image("a.png")), answer()]}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = validate(tmp_path / "t.jsonl", load_target(str(tiny_model("gemma3n"))), max_length=48)
    codes = {i.line: i.code for i in report.issues}
    assert codes == {1: "truncation_cuts_answer", 2: "truncated", 3: "truncation_cuts_media"}


def test_leakage_between_train_and_validation(tmp_path, tiny_model):
    row = {"messages": [user({"type": "text", "text": "same"}), answer()]}
    (tmp_path / "train.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "val.jsonl").write_text(json.dumps({"messages": [user({"type": "text", "text": "other"}), answer()]})
                                        + "\n" + json.dumps(row) + "\n")
    report = validate(tmp_path / "train.jsonl", load_target(str(tiny_model("gemma3"))), val_path=tmp_path / "val.jsonl")
    leak = [i for i in report.issues if i.code == "leakage"]
    assert len(leak) == 1 and leak[0].file.endswith("val.jsonl") and leak[0].line == 2
    assert "training file at line 1" in leak[0].message


def test_real_gemma_tokenizer_counts_tokens(tmp_path):
    rows = [{"messages": [user({"type": "text", "text": "What is the capital of France?"}), answer("Paris.")]}]
    (tmp_path / "t.jsonl").write_text(json.dumps(rows[0]) + "\n")
    report = validate(tmp_path / "t.jsonl", load_target("gemma3"))
    assert report.ok and 15 < report.tokens[0] < 30


def test_cli_exit_codes_and_json(corpus, tiny_model):
    gemfuse = os.path.join(os.path.dirname(sys.executable), "gemfuse")
    bad = subprocess.run([gemfuse, "data", "validate", str(corpus / "train.jsonl"), "--model", str(tiny_model("gemma4")),
                          "--json"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1, bad.stderr
    data = json.loads(bad.stdout)
    assert data["summary"]["errors"] >= len(EXPECTED) and data["issues"][0]["line"] >= 2
    (corpus / "good.jsonl").write_text(json.dumps({"messages": [user({"type": "text", "text": "hi"}), answer()]}) + "\n")
    good = subprocess.run([gemfuse, "data", "validate", str(corpus / "good.jsonl"), "--model", str(tiny_model("gemma3"))],
                          capture_output=True, text=True, timeout=300)
    assert good.returncode == 0 and "1 rows, 0 with errors" in good.stderr


def test_the_library_names_the_setting_and_the_command_line_its_flag(tmp_path):
    """A row cut by the length limit: the data layer says data.max_length (the tune config's name for it);
    `gemfuse data validate` says --max-length."""
    import json as json_module

    from typer.testing import CliRunner

    from gemfuse.cli import app
    from gemfuse.data.target import load_target
    from gemfuse.data.validate import validate

    path = tmp_path / "long.jsonl"
    path.write_text(json_module.dumps({"messages": [{"role": "user", "content": "word " * 60},
                                                    {"role": "assistant", "content": "ok " * 40}]}) + "\n")
    report = validate(path, load_target("gemma3"), max_length=32)
    assert any("data.max_length 32" in i.message for i in report.issues)
    done = CliRunner().invoke(app, ["data", "validate", str(path), "--model", "gemma3", "--max-length", "32", "--json"])
    said = json_module.loads(done.output)
    assert any("--max-length 32" in i["message"] for i in said["issues"])
    assert not any("data.max_length" in i["message"] for i in said["issues"])


@pytest.mark.heavy
def test_a_configured_model_name_checks_data_as_tune_would(tmp_path):
    """`--model gemma-3-270m-hf` (a built-in name, as `gemfuse tune` takes it) checks with that model's own
    tokenizer; a llama.cpp model is refused in one line that says what to give instead."""
    from typer.testing import CliRunner

    from gemfuse.cli import app

    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"messages": [user({"type": "text", "text": "hi"}), answer()]}) + "\n")
    done = CliRunner().invoke(app, ["data", "validate", str(path), "--model", "gemma-3-270m-hf"])
    assert done.exit_code == 0 and "1 rows, 0 with errors" in done.output, done.output
    refused = CliRunner().invoke(app, ["data", "validate", str(path), "--model", "smollm2-135m"])
    assert refused.exit_code == 1 and "fine-tuning needs transformers weights" in refused.output
