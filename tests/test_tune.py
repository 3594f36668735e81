"""The tuner's correctness: config, loss, gradient accumulation, resume, signals, run folder, merge."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gemfuse.errors import ConfigError
from gemfuse.tune import DataError, init_config, load_tune_config, train
from gemfuse.tune.config import TuneConfig


def tiny_config(model, data, out, **train) -> TuneConfig:
    settings = {"max_steps": 3, "batch_size": 4, "lr": 1e-2, "dtype": "float32", "seed": 1, **train}
    return load_tune_config(None, [], base={"model": str(model), "out": str(out), "data": {"train": str(data)},
                                            "lora": {"r": 4, "alpha": 8}, "train": settings,
                                            "run": {"progress": False}})


def adapter_weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


def assert_same_weights(a: dict, b: dict, atol: float = 1e-4) -> None:
    """Equal within float noise (Adam magnifies it where gradients are near zero; a wrong loss scaling moves
    weights by ~1e-2 here)."""
    import torch

    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.allclose(a[key], b[key], atol=atol, rtol=0), key


# -- config ---------------------------------------------------------------------------------------------------------
def test_config_precedence_relative_paths_and_named_errors(tmp_path):
    config = tmp_path / "tune.toml"
    config.write_text('model = "gemma-3-270m-hf"\n[data]\ntrain = "data/train.jsonl"\n[train]\nlr = 1e-3\nbatch_size = 2\n')
    loaded = load_tune_config(config, ["train.lr=5e-4", "lora.r=4", "train.gradient_checkpointing=true"])
    assert (loaded.train.lr, loaded.train.batch_size, loaded.lora.r) == (5e-4, 2, 4)  # --set > file > defaults
    assert loaded.train.gradient_checkpointing is True and loaded.train.grad_accum == 1
    assert loaded.data.train == str(tmp_path / "data" / "train.jsonl")

    config.write_text('model = "m"\n[data]\ntrain = "t.jsonl"\n[train]\nbatchsize = 2\n')
    with pytest.raises(ConfigError) as excinfo:
        load_tune_config(config)
    assert "tune.toml" in str(excinfo.value) and "train.batchsize" in str(excinfo.value)
    assert "did you mean batch_size" in str(excinfo.value)

    config.write_text('model = "m"\n[data]\ntrain = "t.jsonl"\n')
    with pytest.raises(ConfigError, match="train.batch_size"):
        load_tune_config(config, ["train.batch_size=many"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_tune_config(config, ["lr"])
    with pytest.raises(ConfigError, match="packing"):
        load_tune_config(config, ["data.packing=true", "train.batch_size=4"])


@pytest.mark.parametrize("kind", ["text", "image", "audio"])
def test_init_configs_load(tmp_path, kind):
    path = tmp_path / f"{kind}.toml"
    path.write_text(init_config(kind))
    loaded = load_tune_config(path)
    assert loaded.lora.targets == {"text": "language", "image": "language+vision", "audio": "language+audio"}[kind]
    assert "# " in path.read_text()  # commented
    # the examples are these templates (the text one on its own data file): a new setting reaches them
    example = (Path(__file__).parent.parent / "examples" / f"tune-{kind}.toml").read_text()
    assert example == init_config(kind).replace('train = "data/train.jsonl"', 'train = "data/text.jsonl"')


def test_examples_load_and_run_a_few_steps(tmp_path, tiny_model):
    examples = sorted((Path(__file__).parent.parent / "examples").glob("tune-*.toml"))
    assert {p.stem for p in examples} >= {"tune-text", "tune-image", "tune-audio"}
    for example in examples:
        loaded = load_tune_config(example)
        assert Path(loaded.data.train).is_file(), example
        family = "gemma3" if "text" in example.stem or "image" in example.stem else "gemma3n"
        result = train(example, [f"model={tiny_model(family)}", f"out={tmp_path / example.stem}", "train.max_steps=2",
                                 "train.dtype=float32", "run.progress=false"])
        assert result.steps == 2 and (result.adapter / "adapter_model.safetensors").is_file(), example


# -- loss -----------------------------------------------------------------------------------------------------------
def test_supervised_loss_equals_the_full_logits_loss(tiny_model, text_data, media):
    import torch
    from transformers import AutoModelForImageTextToText

    from gemfuse.data.collate import Collator
    from gemfuse.data.schema import read_jsonl
    from gemfuse.data.target import load_target
    from gemfuse.tune.loss import supervised_loss

    folder = tiny_model("gemma3")
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    collator = Collator(load_target(str(folder)))
    batch = collator(list(read_jsonl(text_data))[:4])
    ours, count = supervised_loss(model, batch, chunk=7)  # several chunks
    reference = model(**batch).loss
    assert count == int((batch["labels"][:, 1:] != -100).sum()) > 10
    assert torch.allclose(ours / count, reference, rtol=1e-5), (float(ours / count), float(reference))
    ours.backward()
    assert model.model.language_model.layers[0].self_attn.q_proj.weight.grad is not None


def test_loss_equal_with_and_without_kv_cache(tiny_model, text_data):
    """Gemma 3n / 4 share KV across layers; training without a cache must give the loss a cached forward gives."""
    import torch
    from transformers import AutoModelForImageTextToText

    from gemfuse.data.collate import Collator
    from gemfuse.data.schema import read_jsonl
    from gemfuse.data.target import load_target

    for family in ("gemma3n", "gemma4"):
        folder = tiny_model(family)
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
        batch = Collator(load_target(str(folder)))(list(read_jsonl(text_data))[:3])
        with torch.no_grad():
            cached = model(**batch, use_cache=True).loss
            uncached = model(**batch, use_cache=False).loss
        assert torch.allclose(cached, uncached, rtol=1e-5), family


# -- the loop ---------------------------------------------------------------------------------------------------------
def test_gradient_accumulation_equals_one_big_batch(tmp_path, tiny_model, text_data):
    folder = tiny_model("gemma3")
    big = train(tiny_config(folder, text_data, tmp_path / "big", batch_size=4, grad_accum=1))
    accumulated = train(tiny_config(folder, text_data, tmp_path / "acc", batch_size=1, grad_accum=4))
    assert abs(big.train_loss - accumulated.train_loss) < 1e-5
    assert_same_weights(adapter_weights(big.run), adapter_weights(accumulated.run))
    baseline = adapter_weights(big.run)
    # and the weights did move: not a no-op
    import torch

    assert any(float(v.abs().sum()) > 0 for k, v in baseline.items() if "lora_B" in k)
    assert torch.isfinite(torch.tensor(big.train_loss))


def test_resume_equals_uninterrupted(tmp_path, tiny_model, text_data):
    from gemfuse.tune import resume

    folder = tiny_model("gemma3")

    def config(out):
        loaded = tiny_config(folder, text_data, tmp_path / out, max_steps=6, batch_size=2)
        loaded.lora.dropout = 0.1  # dropout draws random numbers: the RNG state must be restored too
        return loaded

    whole = train(config("whole"))
    first = train(config("part"), on_step=lambda step, loss: step == 3)  # stop as a signal would, after step 3
    assert first.interrupted and first.steps == 3 and first.adapter is None
    resumed = resume(tmp_path / "part")
    assert resumed.steps == 6 and not resumed.interrupted
    assert_same_weights(adapter_weights(whole.run), adapter_weights(resumed.run))
    manifest = json.loads((tmp_path / "part" / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["seed"] == 1 and manifest["data_hash"]
    logged = [json.loads(line) for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged if "loss" in m] == [1, 2, 3, 4, 5, 6]  # no step logged twice
    whole_losses = [m["loss"] for m in map(json.loads, (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines())
                    if "loss" in m]
    assert [m["loss"] for m in logged if "loss" in m] == pytest.approx(whole_losses, rel=1e-4)
    assert (tmp_path / "part" / "loss.png").stat().st_size > 1000


def test_bad_data_stops_before_training_with_file_and_line(tmp_path, tiny_model, text_data):
    with open(text_data, "a") as handle:
        handle.write('{"messages": [{"role": "user", "content": "hi"}]}\n')
        handle.write("not json\n")
    with pytest.raises(DataError) as excinfo:
        train(tiny_config(tiny_model("gemma3"), text_data, tmp_path / "run"))
    message = str(excinfo.value)
    assert f"{text_data}:9" in message and "no_assistant" in message and f"{text_data}:10" in message
    assert not (tmp_path / "run" / "adapter").exists()


def test_existing_run_folder_is_not_overwritten(tmp_path, tiny_model, text_data):
    folder = tiny_model("gemma3")
    train(tiny_config(folder, text_data, tmp_path / "run", max_steps=1))
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_config(folder, text_data, tmp_path / "run", max_steps=1))


def test_sigterm_mid_run_leaves_a_loadable_checkpoint_and_resumes(tmp_path, tiny_model, text_data):
    folder = tiny_model("gemma3")
    config = tmp_path / "tune.toml"
    config.write_text(f'model = "{folder}"\nout = "{tmp_path / "run"}"\n[data]\ntrain = "{text_data}"\n'
                      '[train]\nmax_steps = 100000\nbatch_size = 2\ndtype = "float32"\n[run]\nprogress = false\n')
    process = subprocess.Popen([sys.executable, "-m", "gemfuse.cli", "tune", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    from gemfuse.tune.checkpoint import checkpoints

    saved = checkpoints(tmp_path / "run")
    assert saved, output
    step = int(saved[-1].name.split("-")[1])
    assert step >= 3
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "interrupted"
    from gemfuse.tune import resume

    result = resume(tmp_path / "run", [f"train.max_steps={step + 2}"])
    assert result.steps == step + 2 and (result.adapter / "adapter_config.json").is_file()


def test_kill_9_between_checkpoints_resumes_to_the_uninterrupted_adapter(tmp_path, tiny_model, text_data):
    """SIGKILL lands between two checkpoints (no handler runs, the steps after the last checkpoint are lost);
    --resume redoes them from that checkpoint and ends on the adapter an uninterrupted run ends on."""
    import torch

    from gemfuse.tune import resume
    from gemfuse.tune.checkpoint import checkpoints

    folder = tiny_model("gemma3")

    def config(out):
        loaded = tiny_config(folder, text_data, tmp_path / out, max_steps=20, batch_size=2)
        loaded.lora.dropout = 0.1  # the RNG state must come back too
        loaded.run.save_every = 5
        return loaded

    import tomlkit

    (tmp_path / "tune.toml").write_text(tomlkit.dumps(config("killed").model_dump(mode="json", exclude_none=True)))
    process = subprocess.Popen([sys.executable, "-m", "gemfuse.cli", "tune", str(tmp_path / "tune.toml")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline, killed_at = time.monotonic() + 120, None
    while time.monotonic() < deadline and killed_at is None and process.poll() is None:
        text = metrics.read_text() if metrics.exists() else ""
        steps = [json.loads(line)["step"] for line in text[:text.rfind("\n") + 1].splitlines()]
        if steps and steps[-1] >= 6 and steps[-1] % 5:
            process.kill()
            killed_at = steps[-1]
        time.sleep(0.01)
    process.wait(timeout=30)
    assert killed_at is not None, "the run ended before it could be killed"
    saved = [int(p.name.split("-")[1]) for p in checkpoints(tmp_path / "killed")]
    assert saved and saved[-1] < 20
    assert json.loads((tmp_path / "killed" / "manifest.json").read_text())["status"] == "running"  # no last word
    resumed = resume(tmp_path / "killed")
    whole = train(config("whole"))
    assert resumed.steps == 20 and not resumed.interrupted
    a, b = adapter_weights(whole.run), adapter_weights(resumed.run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "bit for bit"
    logged = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert logged == list(range(1, 21)), "the lost steps were redone once, none logged twice"


def torchrun(*args: str, nodes: int = 1, per_node: int = 2, kill_at_step: int | None = None) -> list[subprocess.Popen]:
    """`gemfuse tune ARGS` under torchrun on CPU ranks: one agent of `per_node` processes, or `nodes` agents on
    127.0.0.1 meeting through torchrun's own c10d rendezvous, as machines do. With `kill_at_step`, the whole job
    is killed with SIGKILL once rank 0 has logged that step (tests/killed_at_step.py)."""
    from gemfuse.testing.upstream import free_port

    port = free_port()
    agents = [["--nproc-per-node", str(per_node), "--master-port", str(port)]] if nodes == 1 else \
        [["--nnodes", str(nodes), "--node-rank", str(rank), "--nproc-per-node", str(per_node), "--rdzv-backend", "c10d",
          "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "gemfuse-test"] for rank in range(nodes)]
    entry = ["-m", "gemfuse.cli"] if kill_at_step is None else [str(Path(__file__).with_name("killed_at_step.py"))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"KILL_AT_STEP": str(kill_at_step)} if kill_at_step else {})}
    return [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *agent, *entry, "tune", *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env) for agent in agents]


def finished(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]


def test_two_nodes_stopped_by_a_signal_on_one_resume_to_one_process(tmp_path, tiny_model, text_data):
    """Two torchrun agents on 127.0.0.1 as two nodes of one CPU process each (gloo, torchrun's own c10d
    rendezvous, as across machines), batch 2 each. SIGTERM reaches one node only: both processes stop after the
    same step and checkpoint; resumed on both nodes, the run ends on the adapter of one process with batch 4."""
    folder = tiny_model("gemma3")
    config = tmp_path / "tune.toml"
    config.write_text(f'model = "{folder}"\nout = "{tmp_path / "ddp"}"\n[data]\ntrain = "{text_data}"\n'
                      '[lora]\nr = 4\nalpha = 8\n[train]\nmax_steps = 100000\nbatch_size = 2\nlr = 1e-2\n'
                      'schedule = "constant"\ndtype = "float32"\nseed = 1\ndevice = "cpu"\n[run]\nprogress = false\n')
    nodes = torchrun(str(config), nodes=2, per_node=1)  # CPU ranks, GPU or not
    metrics = tmp_path / "ddp" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    nodes[1].send_signal(signal.SIGTERM)
    for node in nodes:
        node.communicate(timeout=120)
    manifest = json.loads((tmp_path / "ddp" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["world_size"] == 2
    stopped = manifest["result"]["steps"]
    from gemfuse.tune.checkpoint import checkpoints

    assert int(checkpoints(tmp_path / "ddp")[-1].name.split("-")[1]) == stopped >= 2
    finished(torchrun("--resume", str(tmp_path / "ddp"), "--set", f"train.max_steps={stopped + 2}", nodes=2, per_node=1))
    single = train(tiny_config(folder, text_data, tmp_path / "single", batch_size=4, max_steps=stopped + 2, device="cpu",
                               schedule="constant"))
    manifest = json.loads((tmp_path / "ddp" / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["result"]["steps"] == stopped + 2
    assert len(manifest["result"]["memory"]["per_rank_gib"]) == 2
    assert_same_weights(adapter_weights(single.run), adapter_weights(tmp_path / "ddp"))
