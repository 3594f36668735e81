"""Each precision of a built-in model in one run: decode tokens/s, peak memory and perplexity on the fixed
text, as ratios to the transformers bf16 run. Every precision runs in its own process (peak memory is the
process's high-water mark over its own baseline after imports, while loading and decoding; perplexity is
scored after), several rounds, alternating; medians printed.

    python benchmarks/quantize.py [--model smollm2-135m-hf] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "The history of the printing press"
TOKENS = 64


def status(key: str) -> int:
    """VmRSS now, or VmHWM: this process image's own peak (ru_maxrss would carry the parent's across exec)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def rss() -> int:
    return status("VmRSS")


def worker(kind: str, path: str) -> dict:
    from gemfuse.weights import quantize as q

    if kind.startswith("gguf"):
        import llama_cpp  # noqa: F401 - imported before the baseline, like torch below

        baseline = rss()
        speed = q.decode_speed_gguf(Path(path), TOKENS)
        peak = status("VmHWM") - baseline
        return {"tokens_per_s": speed, "peak_bytes": peak, "perplexity": q.perplexity_gguf(Path(path))}
    import torch

    from gemfuse._torchvision import import_transformers
    from gemfuse.models.transformers import quantize_int8_weights

    transformers = import_transformers()
    if kind == "int8":
        import torchao.quantization  # noqa: F401
    baseline = rss()
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    if kind == "int8":
        model = quantize_int8_weights(model)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    inputs = tokenizer(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=4, do_sample=False)
        started = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=False)
        speed = (out.shape[1] - inputs["input_ids"].shape[1]) / (time.perf_counter() - started)
    peak = status("VmHWM") - baseline
    return {"tokens_per_s": speed, "peak_bytes": peak, "perplexity": q.perplexity_hf(model, tokenizer)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-hf")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", nargs=2)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    from gemfuse.gguf_tools import convert_to_gguf, quantize_gguf
    from gemfuse.weights.quantize import source_of

    folder, _ = source_of(args.model)
    work = Path(tempfile.mkdtemp(prefix="gemfuse-quantize-"))
    f16 = convert_to_gguf(folder, work / "F16.gguf")
    runs = {"bf16": str(folder), "int8": str(folder), "gguf:F16": str(f16)}
    for quant in ("Q8_0", "Q4_K_M"):
        quantize_gguf(f16, work / f"{quant}.gguf", quant)
        runs[f"gguf:{quant}"] = str(work / f"{quant}.gguf")
    results: dict[str, list[dict]] = {kind: [] for kind in runs}
    for _ in range(args.rounds):
        for kind, path in runs.items():
            done = subprocess.run([sys.executable, __file__, "--worker", kind, path], capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{kind} failed:\n{done.stderr[-2000:]}")
            results[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = {k: statistics.median(r[k] for r in results["bf16"]) for k in ("tokens_per_s", "peak_bytes", "perplexity")}
    print(f"{args.model}: {args.rounds} rounds, medians; ratios to transformers bf16 (decode {TOKENS} tokens)")
    print(f"{'precision':<13}{'tok/s':>8}{'x':>7}{'peak MiB':>10}{'x':>7}{'perplexity':>12}{'x':>8}{'tok/s spread':>15}")
    for kind, rows in results.items():
        speed = [r["tokens_per_s"] for r in rows]
        med = {k: statistics.median(r[k] for r in rows) for k in ("tokens_per_s", "peak_bytes", "perplexity")}
        print(f"{kind:<13}{med['tokens_per_s']:>8.1f}{med['tokens_per_s'] / base['tokens_per_s']:>7.2f}"
              f"{med['peak_bytes'] / 2**20:>10.0f}{med['peak_bytes'] / base['peak_bytes']:>7.2f}"
              f"{med['perplexity']:>12.3f}{med['perplexity'] / base['perplexity']:>8.3f}"
              f"{min(speed):>8.1f}-{max(speed):.1f}")


if __name__ == "__main__":
    main()
