"""One fixed LoRA workload through gemfuse (as it is, and with gradient checkpointing) and through TRL's
SFTTrainer + PEFT (completion-only loss), each run in its own process, alternating for several rounds. Prints
supervised tokens/s, step time, peak RSS (and peak GPU memory on CUDA), final loss, the ratios gemfuse / TRL, and
model FLOP use against the matmul rate measured in this run (bf16 or fp32, whichever this machine runs faster).

    python benchmarks/tune_throughput.py                       # real Gemma 3 270M (built-in), CPU
    python benchmarks/tune_throughput.py --model FOLDER --steps 30 --rounds 3
    python benchmarks/tune_throughput.py --random-gemma-270m   # same architecture, random weights (no download)
    python benchmarks/tune_throughput.py --random-shape 1b --batch 16 --max-length 512 \
        --sides trl,trl-no-checkpointing,trl-liger,gemfuse,gemfuse-checkpointed     # the GPU pairs
    --sides trl,gemfuse,gemfuse-compiled,gemfuse-checkpointed,gemfuse-compiled-checkpointed --warmup 6
        # train.compile: its first steps compile, so warm up past them
    --max-length defaults to the longest row (rounded up to 64), so every row is trained whatever the tokenizer
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def make_data(folder: Path, rows: int = 96, seed: int = 0) -> Path:
    """Fixed synthetic instructions: a ~50-word prompt, a ~25-word answer (rewrite words in reverse order)."""
    rng = random.Random(seed)
    lines = []
    for _ in range(rows):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 25))]
        prompt = "Write these words in reverse order, separated by spaces: " + " ".join(words) + ". " + \
                 " ".join(rng.choice(WORDS) for _ in range(25))
        lines.append({"messages": [{"role": "user", "content": prompt},
                                   {"role": "assistant", "content": " ".join(reversed(words))}]})
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def matmul_rate() -> tuple[float, str]:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = 4096 if device == "cuda" else 1024
    best = (0.0, "")
    for dtype in (torch.bfloat16, torch.float32):
        a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        for _ in range(3):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < 1.0:
            a @ b
            count += 1
        if device == "cuda":
            torch.cuda.synchronize()
        rate = 2 * n**3 * count / (time.perf_counter() - start)
        best = max(best, (rate, str(dtype).removeprefix("torch.")))
    return best


# -- the two sides, each run as `python tune_throughput.py --side NAME ...` in its own process -------------------
def side_gemfuse(args) -> dict:
    from gemfuse.tune import load_tune_config, train

    out = Path(tempfile.mkdtemp()) / "run"
    config = load_tune_config(None, [], base={
        "model": args.model, "out": str(out),
        "data": {"train": args.data, "max_length": args.max_length, "padding_free": args.side == "gemfuse-padding-free",
                 "shared_prefix": args.side != "gemfuse-unshared"},
        "lora": {"r": 16, "alpha": 32, "targets": "language"},
        "train": {"max_steps": args.steps, "batch_size": args.batch, "lr": 2e-4, "schedule": "constant",
                  "max_grad_norm": 1.0, "seed": 0, "dtype": args.dtype,
                  "gradient_checkpointing": args.side.endswith("-checkpointed"),
                  "compile": args.side.startswith("gemfuse-compiled")},
        "run": {"progress": False}})
    train(config)
    steps, losses = read_metrics((out / "metrics.jsonl").read_text())
    return timing(steps, args.warmup, losses)


def read_metrics(text: str) -> tuple[list[dict], list[float]]:
    """A run's metrics.jsonl: (each optimizer step's line, logged or skipped, with its clock and token count;
    the logged losses). Validation lines carry neither and are left out."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    steps = [m for m in lines if "seconds" in m and "tokens" in m]
    return steps, [m["loss"] for m in lines if "loss" in m]


def side_trl(args) -> dict:
    import torch

    from gemfuse._torchvision import import_transformers

    transformers = import_transformers()
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from gemfuse.data.target import load_target
    from gemfuse.families import LINEAR_TEXT
    from gemfuse.tune.base import resolve_base

    base = resolve_base(args.model)
    target = load_target(str(base.folder))
    tokenizer = target.tokenizer
    tokenizer.chat_template = target.chat_template
    rows = load_dataset("json", data_files=args.data, split="train")
    # prompt-completion form: TRL's completion_only_loss puts the loss on the answer alone, as gemfuse does
    def split(row):
        prompt = target.render(row["messages"][:1], add_generation_prompt=True)
        full = target.render(row["messages"])
        return {"prompt": prompt, "completion": full[len(prompt):]}
    rows = rows.map(split, remove_columns=["messages"])
    dtype = getattr(torch, args.dtype) if args.dtype != "auto" else torch.float32
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base.folder), dtype=dtype)
    times, losses, tokens = [], [], []

    class Clock(transformers.TrainerCallback):
        def on_step_begin(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)

        def on_log(self, _args, state, control, logs=None, **k):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    config = SFTConfig(output_dir=tempfile.mkdtemp(), max_steps=args.steps, per_device_train_batch_size=args.batch,
                       learning_rate=2e-4, lr_scheduler_type="constant", max_grad_norm=1.0, seed=0, logging_steps=1,
                       save_strategy="no", report_to=[], completion_only_loss=True, max_length=args.max_length,
                       bf16=dtype == torch.bfloat16, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
                       disable_tqdm=True, gradient_checkpointing=args.side != "trl-no-checkpointing",
                       use_liger_kernel=args.side == "trl-liger")
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LINEAR_TEXT, task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=rows, processing_class=tokenizer, peft_config=peft,
                         callbacks=[Clock()])
    for batch in trainer.get_train_dataloader():  # supervised tokens per step, as TRL batches them
        tokens.append(int((batch["labels"][:, 1:] != -100).sum()))
    trainer.train()
    per_step = [statistics.fmean(tokens)] * len(times)  # TRL shuffles on its own: use the mean per step
    return timing([{"seconds": sum(times[:i + 1]), "tokens": sum(per_step[:i + 1])} for i in range(len(times))],
                  args.warmup, losses)


def timing(metrics: list[dict], warmup: int, losses: list[float]) -> dict:
    import torch

    seconds = [m["seconds"] for m in metrics]
    tokens = [m["tokens"] for m in metrics]
    steady_s = seconds[-1] - seconds[warmup - 1]
    steady_tokens = tokens[-1] - tokens[warmup - 1]
    peak_gpu = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"tokens_per_s": steady_tokens / steady_s, "step_s": steady_s / (len(seconds) - warmup),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "peak_gpu_gib": peak_gpu,
            "final_loss": statistics.fmean(losses[-5:]), "losses": losses,
            "supervised_tokens_per_step": steady_tokens / (len(seconds) - warmup),
            "warmup_s": seconds[warmup - 1]}  # the warm-up steps' time: train.compile's compile is in it


def run_side(name: str, args) -> dict:
    command = [sys.executable, __file__, "--side", name, "--model", args.model, "--data", args.data,
               "--steps", str(args.steps), "--batch", str(args.batch), "--max-length", str(args.max_length),
               "--warmup", str(args.warmup), "--dtype", args.dtype]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def model_flops_per_step(folder: str, result: dict, rows_tokens: float) -> float:
    """4 x (non-embedding parameters) x tokens (forward, and backward to the inputs; frozen weights need no
    weight gradient) + the frozen LM head at the supervised tokens, likewise 4 x (forward, gradient to the
    hidden states); recomputation is not model work and is not counted."""
    config = json.loads((Path(folder) / "config.json").read_text())
    text = config.get("text_config", config)
    hidden, layers, inter = text["hidden_size"], text["num_hidden_layers"], text["intermediate_size"]
    heads, kv = text["num_attention_heads"], text["num_key_value_heads"]
    head_dim = text.get("head_dim") or hidden // heads
    per_layer = hidden * head_dim * (2 * heads + 2 * kv) + 3 * hidden * inter
    return 4 * per_layer * layers * rows_tokens + 4 * hidden * text["vocab_size"] * result["supervised_tokens_per_step"]


# Gemma 3 text shapes: hidden, intermediate, layers, query heads, key/value heads (head_dim 256, 262k vocabulary)
SHAPES = {"270m": (640, 2048, 18, 4, 1), "1b": (1152, 6912, 26, 4, 1), "4b": (2560, 10240, 34, 8, 4),
          "12b": (3840, 15360, 48, 16, 8), "27b": (5376, 21504, 62, 32, 16)}


def random_gemma(shape: str, folder: Path) -> str:
    """A Gemma 3 text shape with random weights (built on the GPU in bf16 where there is one: seconds for a 1B)
    and the tiny offline tokenizer."""
    import torch

    from gemfuse._torchvision import import_transformers

    transformers = import_transformers()
    from gemfuse.testing.tokenizer import build_tokenizer

    hidden, inter, layers, heads, kv = SHAPES[shape]
    config = transformers.Gemma3TextConfig(vocab_size=262_144, hidden_size=hidden, intermediate_size=inter,
                                           num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                                           head_dim=256, sliding_window=512, max_position_embeddings=32_768)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = transformers.Gemma3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side")
    parser.add_argument("--model", default="gemma-3-270m-hf")
    parser.add_argument("--random-gemma-270m", action="store_true", help="the same as --random-shape 270m")
    parser.add_argument("--random-shape", choices=sorted(SHAPES), help="a Gemma 3 text shape with random weights")
    parser.add_argument("--sides", default="trl,gemfuse,gemfuse-checkpointed",
                        help=f"comma-separated, from {','.join(SIDES)} (trl checkpoints, as SFTConfig does by default; "
                             "trl-liger needs liger-kernel)")
    parser.add_argument("--data")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=None, help="default: the longest row, rounded up to 64")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    if args.side:
        print(json.dumps(SIDES[args.side](args)))
        return
    work = Path(tempfile.mkdtemp())
    args.data = args.data or str(make_data(work))
    shape = args.random_shape or ("270m" if args.random_gemma_270m else None)
    if shape:
        args.model = random_gemma(shape, work / f"gemma-{shape}-random")
    from gemfuse.tune.base import resolve_base

    folder = str(resolve_base(args.model).folder)
    if args.max_length is None:  # every row fits, whatever the tokenizer (the random model's tiny one splits finely)
        args.max_length = fitting_length(folder, args.data)
    if args.dtype == "auto":  # both sides train in the dtype gemfuse picks for this machine
        import torch

        from gemfuse.devices import training_dtype

        args.dtype = str(training_dtype("cuda" if torch.cuda.is_available() else "cpu", "auto")).removeprefix("torch.")
    rate, rate_dtype = matmul_rate()
    sides = [name for name in args.sides.split(",") if name]
    unknown = [name for name in sides if name not in SIDES]
    if unknown or "trl" not in sides:
        raise SystemExit(f"--sides: {', '.join(unknown) or 'trl is the baseline and must be one'}; from {', '.join(SIDES)}")
    results: dict[str, list] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name in sides:
            results[name].append(run_side(name, args))
            print(f"  {name}: {results[name][-1]['tokens_per_s']:.1f} supervised tok/s", file=sys.stderr, flush=True)
    summary = {}
    for name, runs in results.items():
        summary[name] = {k: statistics.median(r[k] for r in runs) for k in
                         ("tokens_per_s", "step_s", "peak_rss_gib", "final_loss", "supervised_tokens_per_step",
                          "warmup_s")}
        summary[name]["spread_tokens_per_s"] = (min(r["tokens_per_s"] for r in runs), max(r["tokens_per_s"] for r in runs))
        gpu = [r["peak_gpu_gib"] for r in runs if r["peak_gpu_gib"] is not None]
        summary[name]["peak_gpu_gib"] = statistics.median(gpu) if gpu else None
    row_tokens = args.batch * estimate_row_tokens(folder, args.data)
    ours = "gemfuse" if "gemfuse" in summary else next(n for n in sides if n.startswith("gemfuse"))
    flops = model_flops_per_step(folder, summary[ours], row_tokens) / summary[ours]["step_s"]
    print(f"workload: {args.model}, LoRA r=16 on attention+MLP, batch {args.batch}, max length {args.max_length}, "
          f"{args.steps} steps ({args.warmup} warm-up), {args.rounds} rounds, dtype {args.dtype}")
    print(f"{'':30}{'sup tok/s':>12}{'spread':>18}{'step s':>9}{'warm-up s':>11}{'peak RSS GiB':>14}"
          f"{'peak GPU GiB':>14}{'final loss':>12}")
    for name, s in summary.items():
        gpu = f"{s['peak_gpu_gib']:.2f}" if s["peak_gpu_gib"] is not None else "-"
        print(f"{name:30}{s['tokens_per_s']:12.1f}{s['spread_tokens_per_s'][0]:9.1f}-{s['spread_tokens_per_s'][1]:<8.1f}"
              f"{s['step_s']:9.3f}{s['warmup_s']:11.1f}{s['peak_rss_gib']:14.2f}{gpu:>14}{s['final_loss']:12.4f}")
    t = summary["trl"]
    for name in [n for n in sides if n != "trl"]:
        g = summary[name]
        print(f"ratios {name}/TRL: tokens/s {g['tokens_per_s'] / t['tokens_per_s']:.2f}x, peak RSS "
              f"{g['peak_rss_gib'] / t['peak_rss_gib']:.2f}x" + (f", peak GPU {g['peak_gpu_gib'] / t['peak_gpu_gib']:.2f}x"
                                                                if g["peak_gpu_gib"] and t["peak_gpu_gib"] else ""))
    print(f"model FLOP use ({ours}): {flops / 1e9:.1f} GFLOP/s = {flops / rate:.1%} of the measured {rate_dtype} "
          f"matmul rate ({rate / 1e9:.0f} GFLOP/s)")


def row_tokens(folder: str, data: str) -> list[int]:
    from gemfuse.data.target import load_target

    target = load_target(folder)
    rows = [json.loads(line) for line in Path(data).read_text().splitlines()]
    return [len(target.tokenizer(target.render(r["messages"]), add_special_tokens=False).input_ids) for r in rows]


SIDES = {"trl": side_trl, "trl-no-checkpointing": side_trl, "trl-liger": side_trl, "gemfuse": side_gemfuse,
         "gemfuse-checkpointed": side_gemfuse, "gemfuse-padding-free": side_gemfuse, "gemfuse-compiled": side_gemfuse,
         "gemfuse-compiled-checkpointed": side_gemfuse, "gemfuse-unshared": side_gemfuse}


def estimate_row_tokens(folder: str, data: str) -> float:
    return statistics.fmean(row_tokens(folder, data))


def fitting_length(folder: str, data: str) -> int:
    return -(-(max(row_tokens(folder, data)) + 2) // 64) * 64


if __name__ == "__main__":
    main()
