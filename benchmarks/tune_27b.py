"""Gemma 3 27B fine-tuned on one GPU: the 27B text shape with random weights made directly on the device (nothing
written to disk but its config and the tiny offline tokenizer), trained by `gemfuse.tune.train` with LoRA in bf16
and with QLoRA (NF4, double quantisation, as `train.quantize = "4bit"` loads a base), a few steps each. Per run:
supervised tokens/s, the peak memory the run reached, and both memory estimates set beside it: the tuner's
(made before the first step) and `gemfuse plan`'s (from the config alone), as ratios.

    python benchmarks/tune_27b.py                         # the 27B shape on CUDA (an 80 GB+ card for bf16)
    python benchmarks/tune_27b.py --shape tiny --device cpu   # the same path on a CPU in seconds

The random weights are made in 16 bits and, for QLoRA, quantised layer by layer; the peak is measured from after
that (a real QLoRA load never holds the base in 16 bits).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tune_throughput import SHAPES, make_data  # noqa: E402  (Gemma 3 text shapes, the fine-tuning workload)

GiB = 2**30
SHAPES = {**SHAPES, "tiny": (64, 128, 2, 2, 1)}  # hidden, intermediate, layers, heads, kv heads


def shape_folder(shape: str, folder: Path) -> Path:
    """config.json of a Gemma 3 text shape and the tiny offline tokenizer: what the tuner reads besides weights."""
    from gemfuse._torchvision import import_transformers
    from gemfuse.testing.tokenizer import build_tokenizer

    transformers = import_transformers()
    hidden, inter, layers, heads, kv = SHAPES[shape]
    transformers.Gemma3TextConfig(vocab_size=262_144, hidden_size=hidden, intermediate_size=inter,
                                  num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                                  head_dim=256 if shape != "tiny" else 32, sliding_window=1024,
                                  max_position_embeddings=131_072).save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    return folder


def quantised(model, dtype) -> None:
    """Every linear layer but the head as bitsandbytes NF4 with double quantisation, in place, one at a time."""
    import bitsandbytes as bnb
    import torch

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear or name == "lm_head":
                continue
            layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=dtype, compress_statistics=True, quant_type="nf4", device="meta")
            layer.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, compress_statistics=True,
                                             quant_type="nf4", module=layer)
            setattr(parent, name, layer.to(child.weight.device))
            del child


def random_base(base, device: str, dtype, quantize: str = "none"):
    """Stands in for the tuner's load_for_training: the model made from its config on the device."""
    import torch

    from gemfuse._torchvision import import_transformers
    from gemfuse.memory import reset_peak

    transformers = import_transformers()
    config = transformers.AutoConfig.from_pretrained(str(base.folder))
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    if quantize == "4bit":
        from peft import prepare_model_for_kbit_training

        quantised(model, dtype)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    elif quantize != "none":
        raise SystemExit(f"--quantize {quantize}: this benchmark makes 'none' or '4bit'")
    model.config.use_cache = False
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    else:
        reset_peak()
    return model


def run(kind: str, folder: Path, data: Path, work: Path, args) -> dict:
    import importlib

    from gemfuse.tune import load_tune_config, train
    from gemfuse.weights.plan import plan
    from gemfuse.weights.shape import from_config

    importlib.import_module("gemfuse.tune.setup").load_for_training = random_base  # the tuner's own path from here on
    out = work / kind
    config = load_tune_config(None, [], base={
        "model": str(folder), "out": str(out), "data": {"train": str(data), "max_length": args.max_length},
        "lora": {"r": 16, "alpha": 32, "targets": "language"},
        "train": {"max_steps": args.steps, "batch_size": args.batch, "lr": 2e-4, "schedule": "constant", "seed": 0,
                  "device": args.device, "quantize": "4bit" if kind == "qlora" else "none",
                  "gradient_checkpointing": True}, "run": {"progress": False}})
    train(config)
    manifest = json.loads((out / "manifest.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "loss" in m]
    seconds = steps[-1]["seconds"] - steps[args.warmup - 1]["seconds"]
    tokens = steps[-1]["tokens"] - steps[args.warmup - 1]["tokens"]
    memory = manifest["result"]["memory"]
    longest = manifest["memory_estimate"]["longest_row_tokens"]
    planned = plan(from_config(json.loads((folder / "config.json").read_text()), str(folder)),
                   device=args.device.split(":")[0], context=longest, batch=args.batch, train=kind).rows[0].needs
    return {"tokens_per_s": tokens / seconds, "peak": memory.get("peak_bytes"), "measured_by": memory["measured_by"],
            "estimate": memory.get("estimate_bytes"), "plan": planned.total, "loss": steps[-1]["loss"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="27b", choices=sorted(SHAPES))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--runs", default="lora,qlora", help="comma-separated: lora (bf16), qlora (NF4)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gemfuse-27b-"))
    folder = shape_folder(args.shape, work / "model")
    data = make_data(work)
    results = {kind: run(kind, folder, data, work, args) for kind in args.runs.split(",") if kind}
    print(f"Gemma 3 {args.shape} text shape, random weights, LoRA r=16 on attention+MLP, batch {args.batch}, "
          f"{args.steps} steps ({args.warmup} warm-up), gradient checkpointing, {args.device}")
    print(f"{'run':8}{'sup tok/s':>11}{'peak GiB':>10}{'tuner est.':>12}{'x peak':>8}{'plan':>9}{'x peak':>8}{'loss':>9}")
    for kind, r in results.items():
        peak = r["peak"] or float("nan")
        print(f"{kind:8}{r['tokens_per_s']:>11.1f}{peak / GiB:>10.2f}{(r['estimate'] or 0) / GiB:>12.2f}"
              f"{(r['estimate'] or 0) / peak:>8.2f}{r['plan'] / GiB:>9.2f}{r['plan'] / peak:>8.2f}{r['loss']:>9.4f}")
    print(f"peak: {next(iter(results.values()))['measured_by']}" if results else "no runs")


if __name__ == "__main__":
    main()
