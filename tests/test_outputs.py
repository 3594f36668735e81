"""Every command that writes a file or folder makes the missing parent folders, or says in one line what is in
the way (never a library's message)."""

import json

import pytest
from typer.testing import CliRunner

from gemfuse.cli import app
from gemfuse.errors import ConfigError, SettingError
from gemfuse.paths import output_path


def test_output_path_makes_missing_parents(tmp_path):
    target = output_path(tmp_path / "a" / "b" / "x.gguf")
    assert target.parent.is_dir() and not target.exists()
    folder = output_path(tmp_path / "c" / "d", folder=True)
    assert folder.is_dir()


def test_output_path_names_what_is_in_the_way(tmp_path):
    (tmp_path / "blocker").write_text("a file")
    with pytest.raises(SettingError, match=r"^out = .*blocker is a file") as refused:
        output_path(tmp_path / "blocker" / "sub" / "x.gguf")
    assert refused.value.for_command_line().startswith(f"--out {tmp_path / 'blocker'}")  # how the command line says it
    with pytest.raises(ConfigError, match="a folder is there"):
        output_path(tmp_path)
    with pytest.raises(ConfigError, match="^val_out = .*a file is there") as refused:
        output_path(tmp_path / "blocker", "val_out", folder=True)
    assert refused.value.for_command_line().startswith("--val-out ")


def fake_finished_run(folder):
    (folder / "adapter").mkdir(parents=True)
    (folder / "adapter" / "adapter_config.json").write_text("{}")
    (folder / "manifest.json").write_text(json.dumps({"status": "done", "base_model": "x", "family": "gemma3"}))
    return folder


@pytest.mark.parametrize("command", [
    ["export", "{run}", "--to", "gguf", "--out", "{blocked}/x.gguf"],
    ["export", "{run}", "--to", "merged", "--out", "{blocked}/merged"],
    ["data", "import", "{csv}", "--out", "{blocked}/train.jsonl"],
    ["eval", "builtin:arithmetic", "--models", "nothing", "--out", "{blocked}/report"],
])
def test_commands_refuse_an_output_under_a_file_in_one_line(tmp_path, command):
    run = fake_finished_run(tmp_path / "run")
    (tmp_path / "blocked").write_text("a file")
    (tmp_path / "t.csv").write_text("prompt,response\nhi,hello\n")
    args = [a.format(run=run, blocked=tmp_path / "blocked", csv=tmp_path / "t.csv") for a in command]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 1, done.output
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "blocked is a file" in lines[0], done.output
    assert lines[0].startswith("error: --out "), "the command line names its option; Python names the setting"


def test_a_published_folder_appears_whole_or_not_at_all(tmp_path):
    from gemfuse.paths import published_folder

    final = tmp_path / "deep" / "adapter"
    with pytest.raises(RuntimeError):
        with published_folder(final) as staging:
            (staging / "half.bin").write_text("x")
            raise RuntimeError("killed mid-write")
    assert not final.exists() and list((tmp_path / "deep").iterdir()) == []  # no staging left behind
    with published_folder(final) as staging:
        (staging / "v1").write_text("1")
    with published_folder(final) as staging:
        (staging / "v2").write_text("2")
    assert [p.name for p in final.iterdir()] == ["v2"]  # replaced whole
    with published_folder(final, replace=False) as staging:  # a concurrent writer finished first: keep it
        (staging / "v3").write_text("3")
    assert [p.name for p in final.iterdir()] == ["v2"] and len(list(final.parent.iterdir())) == 1
