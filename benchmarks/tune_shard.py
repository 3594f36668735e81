"""What sharding saves and costs: the built-in Gemma 3 270M fine-tuned with LoRA by one process (the whole batch),
by two data-parallel processes (train.shard = "none", half the batch each) and by two sharded ones (FSDP2, half of
every layer each), under torchrun on this machine's devices. Per process: the peak memory each rank reached from
the run's start (the manifest's per-rank figures), the memory estimate made before the first step, and the step
time, as ratios against the one-process run measured here.

    python benchmarks/tune_shard.py                  # 8 steps (2 warm-up), batch 4, CPU (gloo)
    python benchmarks/tune_shard.py --device cuda    # two GPUs (NCCL)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tune_throughput import make_data  # noqa: E402  (the text workload of the other trainer benchmarks)

GiB = 2**30


def run(kind: str, work: Path, data: Path, args) -> dict:
    out = work / kind
    processes, shard, batch = {"one": (1, "none", args.batch), "data-parallel": (2, "none", args.batch // 2),
                               "sharded": (2, "fsdp", args.batch // 2)}[kind]
    config = work / f"{kind}.toml"
    config.write_text(f'model = "{args.model}"\nout = "{out}"\n[data]\ntrain = "{data}"\nmax_length = {args.max_length}\n'
                      f'[lora]\nr = 16\nalpha = 32\n[train]\nmax_steps = {args.steps}\nbatch_size = {batch}\n'
                      f'lr = 2e-4\nschedule = "constant"\nseed = 0\ndevice = "{args.device}"\nshard = "{shard}"\n'
                      '[run]\nprogress = false\n')
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29561"] \
        if processes > 1 else [sys.executable]
    threads = str(max(1, (os.cpu_count() or 2) // processes))  # the machine's cores split between the processes
    done = subprocess.run([*launcher, "-m", "gemfuse.cli", "tune", str(config)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": threads})
    if done.returncode:
        raise SystemExit(f"{kind}: {done.stderr.strip()[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    memory = manifest["result"]["memory"]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    seconds = [m["seconds"] for m in metrics if "loss" in m]
    return {"peaks": memory.get("per_rank_gib") or [memory["peak_gib"]], "estimate": memory.get("estimate_gib"),
            "step_s": (seconds[-1] - seconds[args.warmup - 1]) / (len(seconds) - args.warmup),
            "loss": metrics[-1].get("loss"), "measured_by": memory["measured_by"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gemma-3-270m-hf")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4, help="the global batch (each of two processes has half)")
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gemfuse-shard-bench-"))
    data = make_data(work)
    results = {kind: run(kind, work, data, args) for kind in ("one", "data-parallel", "sharded")}
    one = results["one"]
    print(f"{args.model}, LoRA r=16, global batch {args.batch}, {args.steps} steps ({args.warmup} warm-up), "
          f"{args.device}; peak: {one['measured_by']}")
    print(f"{'run':15}{'peak GiB per process':>24}{'x one':>8}{'estimate GiB':>14}{'step s':>9}{'x one':>8}{'loss':>9}")
    for kind, r in results.items():
        peak = max(p for p in r["peaks"] if p is not None)
        peaks = " / ".join(f"{p:.2f}" for p in r["peaks"])
        print(f"{kind:15}{peaks:>24}{peak / max(one['peaks']):>8.2f}{r['estimate'] or float('nan'):>14.2f}"
              f"{r['step_s']:>9.2f}{r['step_s'] / one['step_s']:>8.2f}{r['loss'] or float('nan'):>9.4f}")


if __name__ == "__main__":
    main()
