"""Rows from where TRL and Unsloth users keep them: transformers-style parts in JSONL, a `datasets` folder with
decoded images (TRL's `images` column), Parquet; problems still named by row."""

import base64
import json

from gemfuse.data.sources import read_rows
from gemfuse.testing.media import png_bytes, wav_bytes


def media_of(example):
    return [m for t in example.turns for m in t.media]


def test_transformers_style_parts_in_jsonl(tmp_path, media):
    (tmp_path / "cat.png").write_bytes(png_bytes())
    (tmp_path / "tone.wav").write_bytes(wav_bytes())
    audio_url = "data:audio/wav;base64," + base64.b64encode(wav_bytes()).decode()
    rows = [
        {"messages": [{"role": "user", "content": [{"type": "image", "image": "cat.png"}, {"type": "text", "text": "?"}]},
                      {"role": "assistant", "content": "A cat."}]},
        {"messages": [{"role": "user", "content": [{"type": "audio", "audio": "tone.wav"},
                                                   {"type": "audio", "audio": audio_url}]},
                      {"role": "assistant", "content": "Two tones."}]},
        {"messages": [{"role": "user", "content": [{"type": "image", "url": "https://example.org/x.png"}]},
                      {"role": "assistant", "content": "?"}]},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first, second, third = read_rows(path)
    assert [m.kind for m in media_of(first)] == ["image"] and media_of(first)[0].path.name == "cat.png"
    kinds = [(m.kind, m.path is not None, m.format) for m in media_of(second)]
    assert kinds == [("audio", True, "wav"), ("audio", False, "wav")]
    assert [i.code for i in third.issues] == ["remote_media"] and third.line == 3


def test_datasets_folder_with_pil_images_and_parquet(tmp_path):
    import datasets
    from PIL import Image

    picture = Image.new("RGB", (40, 40), (10, 200, 10))
    table = datasets.Dataset.from_list([
        {"messages": [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "Colour?"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "Green."}]}],
         "images": [picture]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]}], "images": []},
    ], features=datasets.Features({
        "messages": [{"role": datasets.Value("string"),
                      "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}]}],
        "images": datasets.Sequence(datasets.Image())}))
    table.save_to_disk(tmp_path / "folder")
    table.to_parquet(tmp_path / "rows.parquet")
    for source in (tmp_path / "folder", tmp_path / "rows.parquet"):
        first, second = read_rows(source)
        assert not first.issues and not second.issues, (first.issues, second.issues)
        image = media_of(first)[0]
        assert image.kind == "image" and image.data[:4] == b"\x89PNG"
        assert Image.open(__import__("io").BytesIO(image.data)).getpixel((5, 5)) == (10, 200, 10)
        assert first.turns[-1].text == "Green." and not media_of(second)


def test_missing_messages_column_is_named(tmp_path):
    import datasets
    import pytest

    from gemfuse.errors import ConfigError

    datasets.Dataset.from_list([{"conversation": []}]).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(ConfigError, match="no 'messages' column.*conversation.*messages_field"):
        read_rows(tmp_path / "x.parquet")


def test_validate_and_preview_read_parquet(tmp_path, tiny_model):
    import datasets

    from gemfuse.commands.data import run_preview
    from gemfuse.data.target import load_target
    from gemfuse.data.validate import validate

    datasets.Dataset.from_list([
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]},
        {"messages": [{"role": "user", "content": "Hi"}]},
    ]).to_parquet(tmp_path / "rows.parquet")
    folder = str(tiny_model("gemma3"))
    report = validate(tmp_path / "rows.parquet", load_target(folder))
    assert report.rows == 2 and [(i.line, i.code) for i in report.issues] == [(2, "no_assistant")]
    assert run_preview(tmp_path / "rows.parquet", folder, 1, None) == 0


def test_a_capture_folder_reads_as_its_rows(tmp_path):
    """`gemfuse data validate DIR` on what `serve --capture DIR` keeps: every capture file's rows, each problem
    named by its file and line (a folder was taken for a `datasets` folder and refused)."""
    from gemfuse.capture import CaptureWriter
    from gemfuse.messages import Message

    writer = CaptureWriter(tmp_path / "cap")
    for i in range(3):
        writer.add([Message.user(f"question {i}")], f"answer {i}", {"model": "m", "time": "2026-12-04T10:00:00Z"})
    rows = read_rows(tmp_path / "cap")
    assert len(rows) == 3 and all(r.turns[-1].role == "assistant" for r in rows)
    [file] = sorted((tmp_path / "cap").glob("*.jsonl"))
    with open(file, "a") as handle:
        handle.write('{"messages": "not a list"}\n')
    broken = read_rows(tmp_path / "cap")
    assert len(broken) == 4 and broken[-1].issues and broken[-1].file.endswith(file.name) and broken[-1].line == 4
