"""Sharded LoRA training (train.shard = "fsdp", FSDP2) on CPU processes with gloo: equal to one process, across
two nodes, with an audio tower trained, and resumed after the whole job was killed with SIGKILL."""

import json

import pytest

from gemfuse.errors import ConfigError
from gemfuse.tune import train
from test_tune import adapter_weights, assert_same_weights, finished, tiny_config, torchrun


def sharded_config(path, config, **train):
    """`config` (a loaded TuneConfig) as a file for torchrun, with these train settings and shard = "fsdp"."""
    import tomlkit

    data = config.model_dump(mode="json", exclude_none=True)
    data["train"].update({"shard": "fsdp", "device": "cpu", **train})
    path.write_text(tomlkit.dumps(data))
    return str(path)


def test_two_sharded_nodes_equal_one_process(tmp_path, tiny_model, text_data):
    """Two torchrun agents on 127.0.0.1, each a node of one process holding half of every layer, give the adapter
    of one process with the whole batch."""
    folder = tiny_model("gemma3")
    single = train(tiny_config(folder, text_data, tmp_path / "single", batch_size=4, max_steps=3, device="cpu"))
    config = sharded_config(tmp_path / "tune.toml", tiny_config(folder, text_data, tmp_path / "fsdp"), batch_size=2)
    finished(torchrun(config, nodes=2, per_node=1))
    manifest = json.loads((tmp_path / "fsdp" / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["status"] == "done" and manifest["config"]["train"]["shard"] == "fsdp"
    assert_same_weights(adapter_weights(single.run), adapter_weights(tmp_path / "fsdp"))


def test_a_killed_sharded_audio_run_resumes_on_another_number_of_processes(tmp_path, tiny_model):
    """Gemma 3n with its audio tower trained (conformer blocks sharded, the audio projection whole), two processes;
    the job killed with SIGKILL between two checkpoints, then --resume on four processes: the adapter one process
    ends on with the whole batch, and each step logged once."""
    from gemfuse.testing.tasks import tone_task
    from gemfuse.tune.checkpoint import checkpoints

    data = tone_task(tmp_path / "tone", n_train=16, n_held=2, seconds=0.5).train
    folder = tiny_model("gemma3n")

    def config(out, **settings):
        loaded = tiny_config(folder, data, tmp_path / out, max_steps=8, **settings)
        loaded.lora.targets = "language+audio"
        loaded.run.save_every = 3
        return loaded

    single = train(config("single", batch_size=4, device="cpu"))
    [job] = torchrun(sharded_config(tmp_path / "tune.toml", config("fsdp"), batch_size=2), kill_at_step=4)
    _, err = job.communicate(timeout=240)
    assert job.returncode == -9, err[-3000:]  # SIGKILL, after step 4 and the checkpoint of step 3
    metrics = tmp_path / "fsdp" / "metrics.jsonl"
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()][-1] == 4
    saved = [int(p.name.split("-")[1]) for p in checkpoints(tmp_path / "fsdp")]
    assert saved[-1] == 3
    assert json.loads((tmp_path / "fsdp" / "manifest.json").read_text())["status"] == "running"  # no last word
    # resumed on four processes of one row each: the same global batch, the checkpoint cut four ways
    finished(torchrun("--resume", str(tmp_path / "fsdp"), "--set", "train.batch_size=1", per_node=4))
    resumed = adapter_weights(tmp_path / "fsdp")
    assert json.loads((tmp_path / "fsdp" / "manifest.json").read_text())["world_size"] == 4
    assert any("audio_tower" in key for key in resumed)
    assert_same_weights(adapter_weights(single.run), resumed)
    logged = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert logged == list(range(1, 9)), "the lost steps were redone once, none logged twice"


def test_sharding_says_what_it_cannot_do(tmp_path, tiny_model, text_data):
    from gemfuse.tune.shard import check_shardable, wants_sharding

    big = tmp_path / "big"
    big.mkdir()
    with open(big / "model.safetensors", "wb") as handle:  # sparse: weights no machine here holds
        handle.truncate(2**40)
    assert wants_sharding("auto", big, "cpu", 2) and not wants_sharding("auto", big, "cpu", 1)
    assert not wants_sharding("auto", tiny_model("gemma3"), "cpu", 2) and wants_sharding("fsdp", big, "cpu", 1)

    with pytest.raises(ConfigError, match="FSDP cannot shard bitsandbytes"):
        check_shardable("4bit", 2)
    with pytest.raises(ConfigError, match="train.compile = false"):
        check_shardable("none", 2, compiled=True)
    with pytest.raises(ConfigError, match="needs several processes: start it with torchrun"):
        train(tiny_config(tiny_model("gemma3"), text_data, tmp_path / "one", shard="fsdp", device="cpu"))
