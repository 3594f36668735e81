"""The trainer across what it trains: text on the real Gemma 3 270M (against TRL's SFTTrainer + PEFT, the same
workload as tune_throughput.py), images and audio on the tiny random-weight Gemma 3n and Gemma 4 (the colour
and tone tasks the suite learns). Each cell runs in its own process; one table of supervised tokens/s, step
time and peak memory (RSS, and the GPU's on CUDA).

    python benchmarks/tune_matrix.py                 # 12 steps a cell (2 warm-up)
    python benchmarks/tune_matrix.py --steps 30 --only text
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tune_throughput import make_data, side_trl, timing  # noqa: E402  (the text workload and its TRL side)

# workload -> (family of the tiny model or None for the real text model, task, LoRA targets)
CELLS = {
    "text / Gemma 3 270M": (None, "text", "language"),
    "image / tiny Gemma 3n": ("gemma3n", "colour", "language+vision"),
    "image / tiny Gemma 4": ("gemma4", "colour", "language+vision"),
    "audio / tiny Gemma 3n": ("gemma3n", "tone", "language+audio"),
    "audio / tiny Gemma 4": ("gemma4", "tone", "language+audio"),
}


def prepare(cell: str, work: Path) -> tuple[str, str]:
    """(model, training file) for a cell, built under `work`."""
    family, task, _ = CELLS[cell]
    if family is None:
        (work / "text").mkdir(parents=True, exist_ok=True)
        return "gemma-3-270m-hf", str(make_data(work / "text"))
    from gemfuse.testing import build_tiny_model
    from gemfuse.testing.tasks import colour_task, tone_task

    model = work / f"tiny-{family}"
    if not model.exists():
        build_tiny_model(family, model)
    made = (colour_task if task == "colour" else tone_task)(work / task, n_train=64, n_held=4)
    return str(model), str(made.train)


def side_gemfuse(args) -> dict:
    from gemfuse.tune import load_tune_config, train

    out = Path(tempfile.mkdtemp()) / "run"
    config = load_tune_config(None, [], base={
        "model": args.model, "out": str(out), "data": {"train": args.data, "max_length": args.max_length},
        "lora": {"r": 16, "alpha": 32, "targets": CELLS[args.cell][2]},
        "train": {"max_steps": args.steps, "batch_size": args.batch, "lr": 2e-4, "schedule": "constant",
                  "max_grad_norm": 1.0, "seed": 0, "dtype": args.dtype},
        "run": {"progress": False}})
    train(config)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return timing(metrics, args.warmup, [m["loss"] for m in metrics if "loss" in m])


def run_cell(cell: str, tool: str, model: str, data: str, args) -> dict:
    command = [sys.executable, __file__, "--cell", cell, "--tool", tool, "--model", model, "--data", data,
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
               "--max-length", str(args.max_length), "--dtype", args.dtype]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1][:120] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cell")
    parser.add_argument("--tool", default="gemfuse")
    parser.add_argument("--model")
    parser.add_argument("--data")
    parser.add_argument("--only", help="run the cells whose name contains this")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    if args.cell:
        side = side_gemfuse if args.tool == "gemfuse" else side_trl
        print(json.dumps(side(args)))
        return
    if args.dtype == "auto":  # every cell, and TRL, in the dtype gemfuse picks for this machine
        import torch

        from gemfuse.devices import training_dtype

        args.dtype = str(training_dtype("cuda" if torch.cuda.is_available() else "cpu", "auto")).removeprefix("torch.")
    work = Path(tempfile.mkdtemp())
    rows = []
    for cell in CELLS:
        if args.only and args.only not in cell:
            continue
        model, data = prepare(cell, work)
        tools = ["gemfuse", "trl"] if CELLS[cell][0] is None else ["gemfuse"]
        for tool in tools:
            rows.append((cell, tool, run_cell(cell, tool, model, data, args)))
            print(f"  {cell}, {tool}: done", file=sys.stderr, flush=True)
    print(f"{args.steps} steps a cell ({args.warmup} warm-up), batch {args.batch}, LoRA r=16, dtype {args.dtype}; "
          "TRL runs the text cell only (its image and audio paths need another dataset shape and collator, not set up here)")
    print(f"{'workload':24}{'tool':9}{'sup tok/s':>11}{'step s':>9}{'peak RSS GiB':>14}{'peak GPU GiB':>14}{'loss':>9}")
    for cell, tool, r in rows:
        if "error" in r:
            print(f"{cell:24}{tool:9}  failed: {r['error']}")
            continue
        gpu = f"{r['peak_gpu_gib']:.2f}" if r["peak_gpu_gib"] is not None else "-"
        print(f"{cell:24}{tool:9}{r['tokens_per_s']:11.1f}{r['step_s']:9.3f}{r['peak_rss_gib']:14.2f}{gpu:>14}"
              f"{r['final_loss']:9.3f}")
    text = {tool: r for cell, tool, r in rows if cell.startswith("text") and "error" not in r}
    if len(text) == 2:
        g, t = text["gemfuse"], text["trl"]
        print(f"text, gemfuse / TRL: tokens/s {g['tokens_per_s'] / t['tokens_per_s']:.2f}x, "
              f"peak RSS {g['peak_rss_gib'] / t['peak_rss_gib']:.2f}x")


if __name__ == "__main__":
    main()
