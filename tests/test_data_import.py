"""Importers round-trip their sample files into JSONL that validates cleanly."""

import json
import os
import subprocess
import sys

import pytest

from gemfuse.data.importers import import_dataset
from gemfuse.data.schema import read_jsonl
from gemfuse.data.target import load_target
from gemfuse.data.validate import validate
from gemfuse.testing.media import write_png, write_wav


def rows(path):
    return [json.loads(line)["messages"] for line in path.read_text().splitlines()]


def test_csv_layouts(tmp_path):
    write_png(tmp_path / "cat.png")
    write_wav(tmp_path / "hello.wav")
    samples = {
        "text.csv": ("prompt,response\nWhat is 2+2?,4\n\"Say \"\"hi\"\"\",hi\n",
                     [[{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
                      [{"role": "user", "content": 'Say "hi"'}, {"role": "assistant", "content": "hi"}]]),
        "captions.csv": ("image_path,caption\ncat.png,A red square.\n",
                         [[{"role": "user", "content": [{"type": "image", "path": "cat.png"},
                                                        {"type": "text", "text": "Describe this image."}]},
                           {"role": "assistant", "content": "A red square."}]]),
        "vqa.csv": ("image_path,question,answer\ncat.png,What colour?,Red.\n",
                    [[{"role": "user", "content": [{"type": "image", "path": "cat.png"},
                                                   {"type": "text", "text": "What colour?"}]},
                      {"role": "assistant", "content": "Red."}]]),
        "asr.csv": ("audio_path,text\nhello.wav,hello world\n",
                    [[{"role": "user", "content": [{"type": "audio", "path": "hello.wav"},
                                                   {"type": "text", "text": "Transcribe this audio clip."}]},
                      {"role": "assistant", "content": "hello world"}]]),
    }
    for name, (body, expected) in samples.items():
        (tmp_path / name).write_text(body)
        out = tmp_path / f"{name}.jsonl"
        result = import_dataset(tmp_path / name, out)
        assert rows(out) == expected and result.rows == len(expected) and not result.skipped, name


def test_instruction_and_missing_files_are_reported(tmp_path):
    write_png(tmp_path / "a.png")
    (tmp_path / "c.csv").write_text("image_path,caption\na.png,ok\nmissing.png,lost\n")
    result = import_dataset(tmp_path / "c.csv", tmp_path / "c.jsonl", instruction="What is shown?")
    assert result.rows == 1 and len(result.skipped) == 1 and "c.csv:3" in result.skipped[0]
    assert rows(tmp_path / "c.jsonl")[0][0]["content"][1]["text"] == "What is shown?"
    (tmp_path / "odd.csv").write_text("question,reply\na,b\n")
    with pytest.raises(Exception, match="unknown columns"):
        import_dataset(tmp_path / "odd.csv", tmp_path / "odd.jsonl")


def test_media_folders(tmp_path, tiny_model):
    images = tmp_path / "images"
    images.mkdir()
    write_png(images / "one.png")
    write_png(images / "two.png", color=(0, 0, 255))
    (images / "metadata.jsonl").write_text(json.dumps({"file_name": "one.png", "caption": "red"}) + "\n")
    (images / "two.txt").write_text("blue\n")
    write_png(images / "three.png")  # no caption anywhere
    out = tmp_path / "data" / "images.jsonl"
    result = import_dataset(images, out)
    assert result.rows == 2 and len(result.skipped) == 1 and "three.png" in result.skipped[0]
    captions = [r[1]["content"] for r in rows(out)]
    assert captions == ["red", "blue"]
    paths = [r[0]["content"][0]["path"] for r in rows(out)]
    assert all(p.startswith("media/") for p in paths), "files outside the output folder are copied in"
    report = validate(out, load_target(str(tiny_model("gemma3"))))
    assert report.ok, [str(i) for i in report.issues]

    clips = tmp_path / "clips"
    clips.mkdir()
    write_wav(clips / "a.wav")
    (clips / "metadata.csv").write_text("file_name,transcription\na.wav,a tone\n")
    out = clips / "asr.jsonl"
    assert import_dataset(clips, out).rows == 1
    assert rows(out)[0][0]["content"][0] == {"type": "audio", "path": "a.wav"}
    assert validate(out, load_target(str(tiny_model("gemma3n")))).ok


def test_alpaca_and_sharegpt(tmp_path):
    (tmp_path / "alpaca.json").write_text(json.dumps([
        {"instruction": "Add", "input": "2 and 2", "output": "4"},
        {"instruction": "Greet", "input": "", "output": "Hello", "system": "Be warm."},
        {"instruction": "", "output": "orphan"}]))
    result = import_dataset(tmp_path / "alpaca.json", tmp_path / "a.jsonl")
    assert rows(tmp_path / "a.jsonl") == [
        [{"role": "user", "content": "Add\n\n2 and 2"}, {"role": "assistant", "content": "4"}],
        [{"role": "system", "content": "Be warm."}, {"role": "user", "content": "Greet"},
         {"role": "assistant", "content": "Hello"}]]
    assert len(result.skipped) == 1
    (tmp_path / "sharegpt.json").write_text(json.dumps([
        {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"conversations": [{"from": "alien", "value": "?"}]}]))
    result = import_dataset(tmp_path / "sharegpt.json", tmp_path / "s.jsonl")
    assert rows(tmp_path / "s.jsonl") == [[{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                                           {"role": "assistant", "content": "a"}]]
    assert "unknown speaker 'alien'" in result.skipped[0]


@pytest.mark.heavy
def test_seeded_split_and_cli(tmp_path):
    body = "prompt,response\n" + "".join(f"q{i},a{i}\n" for i in range(50))
    (tmp_path / "t.csv").write_text(body)
    gemfuse = os.path.join(os.path.dirname(sys.executable), "gemfuse")
    run = subprocess.run([gemfuse, "data", "import", str(tmp_path / "t.csv"), "--out", str(tmp_path / "train.jsonl"),
                          "--val-out", str(tmp_path / "val.jsonl"), "--val-fraction", "0.2", "--seed", "7"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "wrote 40 rows" in run.stdout and "and 10 to" in run.stdout
    train = {m[0]["content"] for m in rows(tmp_path / "train.jsonl")}
    val = {m[0]["content"] for m in rows(tmp_path / "val.jsonl")}
    assert len(train) == 40 and len(val) == 10 and not train & val
    again = import_dataset(tmp_path / "t.csv", tmp_path / "t2.jsonl", val_out=tmp_path / "v2.jsonl",
                           val_fraction=0.2, seed=7)
    assert {m[0]["content"] for m in rows(tmp_path / "v2.jsonl")} == val and again.val_rows == 10
    assert len(list(read_jsonl(tmp_path / "train.jsonl"))) == 40
