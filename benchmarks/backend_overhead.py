"""Overhead of gemfuse's local backends against calling the libraries directly, in one run.

For each built-in model and backend, the same prompts and settings go (a) through `Model.stream`, the path
`gemfuse ask` takes, and (b) straight to llama.cpp's server engine (xllamacpp) / transformers the way their docs
show, alternating
the two so machine noise hits both alike. Prints time to first token and decode tokens/s as ratios.

    python benchmarks/backend_overhead.py [--rounds 3] [--runs 4] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time

from gemfuse._torchvision import import_transformers
from gemfuse.devices import cpu_threads, pick_device, pick_dtype
from gemfuse.files import hf_copy_of_gguf, resolve_path
from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.models.builtin import SMOLLM2, builtin_specs
from gemfuse.models.llamacpp import LlamaCppModel
from gemfuse.models.transformers import TransformersModel

PROMPTS = [f"Write a short paragraph about the number {n}." for n in range(40)]


def measure(stream_fn) -> tuple[float, int, float]:
    """(ttft seconds, tokens, total seconds) for a function that yields text pieces."""
    start = time.perf_counter()
    ttft, tokens = None, 0
    for piece in stream_fn():
        if piece:
            ttft = ttft if ttft is not None else time.perf_counter() - start
            tokens += 1
    return ttft or 0.0, tokens, time.perf_counter() - start


def ours(model, prompt: str, options: GenerateOptions, counted: list):
    """Pieces from our async stream, consumed from sync code; records the reported completion tokens."""
    async def run():
        pieces, usage = [], None
        async for chunk in model.stream([Message.user(prompt)], options):
            pieces.append((time.perf_counter(), chunk.text))
            usage = chunk.usage or usage
        counted.append(usage.completion_tokens)
        return pieces

    start = time.perf_counter()
    pieces = asyncio.run(run())
    # replay with the real arrival times: TTFT is when the first piece arrived, not when we replay it
    first = next((t for t, text in pieces if text), start)
    return first - start, counted[-1], pieces[-1][0] - start


def direct_llama(server, prompt: str, max_tokens: int, repeat_penalty: float):
    import queue

    end = object()

    def gen():
        pieces: queue.Queue = queue.Queue()

        def on_chunk(chunk) -> bool:
            for choice in chunk.get("choices") or ():
                pieces.put((choice.get("delta") or {}).get("content"))
            return False

        body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0,
                "repeat_penalty": repeat_penalty, "stream": True}
        thread = threading.Thread(target=lambda: (server.handle_chat_completions(body, on_chunk), pieces.put(end)))
        thread.start()
        while (piece := pieces.get()) is not end:
            yield piece
        thread.join()
    return measure(gen)


def direct_transformers(model, tokenizer, prompt: str, max_tokens: int):
    import torch
    from transformers import TextIteratorStreamer

    output = {}

    def gen():
        inputs = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(**inputs, max_new_tokens=max_tokens, do_sample=False, streamer=streamer)

        def run():
            with torch.inference_mode():
                output["tokens"] = model.generate(**kwargs).shape[1] - inputs["input_ids"].shape[1]

        thread = threading.Thread(target=run)
        thread.start()
        yield from streamer
        thread.join()
    ttft, _, total = measure(gen)  # the streamer yields words, not tokens: count tokens from the output
    return ttft, output["tokens"], total


def summarise(label: str, ours_runs, direct_runs) -> None:
    def rate(runs):
        return statistics.median(tokens / max(total - ttft, 1e-9) for ttft, tokens, total in runs)

    ttft_o, ttft_d = statistics.median(r[0] for r in ours_runs), statistics.median(r[0] for r in direct_runs)
    rate_o, rate_d = rate(ours_runs), rate(direct_runs)
    print(f"{label:34s} TTFT ours {ttft_o * 1000:7.1f} ms  direct {ttft_d * 1000:7.1f} ms  ratio {ttft_o / ttft_d:5.3f}"
          f" | decode ours {rate_o:6.1f} tok/s  direct {rate_d:6.1f} tok/s  ratio {rate_o / rate_d:5.3f}")


def load_side(backend: str, side: str, max_tokens: int):
    """A function prompt -> (ttft, tokens, total) for one backend and side, loaded and warmed up."""
    options = GenerateOptions(max_tokens=max_tokens, temperature=0)
    counted: list = []
    if backend == "llamacpp":
        spec = builtin_specs()["smollm2-135m"]
        if side == "ours":
            model = LlamaCppModel("smollm2-135m", spec)
            call = lambda prompt: ours(model, prompt, options, counted)  # noqa: E731
        else:
            import xllamacpp

            params = xllamacpp.CommonParams()
            params.model.path = str(resolve_path(SMOLLM2))
            params.n_parallel, params.n_ctx, params.verbosity = spec.concurrency, spec.n_ctx * spec.concurrency, -1
            params.cpuparams.n_threads = params.cpuparams_batch.n_threads = cpu_threads()
            server = xllamacpp.Server(params)
            call = lambda prompt: direct_llama(server, prompt, max_tokens, spec.repeat_penalty)  # noqa: E731
    else:
        if side == "ours":
            model = TransformersModel("smollm2-135m-hf", builtin_specs()["smollm2-135m-hf"])
            call = lambda prompt: ours(model, prompt, options, counted)  # noqa: E731
        else:
            transformers = import_transformers()

            folder = hf_copy_of_gguf(resolve_path(SMOLLM2))
            device = pick_device()
            hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=pick_dtype(device)).to(device).eval()
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
            call = lambda prompt: direct_transformers(hf, tokenizer, prompt, max_tokens)  # noqa: E731
    call("warm up")
    return call


def child(backend: str, side: str, first: int, runs: int, max_tokens: int) -> None:
    call = load_side(backend, side, max_tokens)
    print(json.dumps([call(PROMPTS[first + i]) for i in range(runs)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternations of ours / direct")
    parser.add_argument("--runs", type=int, default=4, help="prompts per side and round")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--child", nargs=3, metavar=("BACKEND", "SIDE", "FIRST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        backend, side, first = args.child
        return child(backend, side, int(first), args.runs, args.max_tokens)
    # Each side runs in a process of its own: two llama.cpp/OpenMP thread teams in one process slow each other.
    print(f"{args.rounds} rounds x {args.runs} prompts per side, {args.max_tokens} new tokens, greedy; "
          "ratio = ours / direct (TTFT: lower is better; tok/s: higher is better)")
    for backend, label in (("llamacpp", "llama.cpp    smollm2-135m"), ("transformers", "transformers smollm2-135m-hf")):
        results: dict[str, list] = {"ours": [], "direct": []}
        for round_ in range(args.rounds):
            for side in (("ours", "direct") if round_ % 2 == 0 else ("direct", "ours")):
                out = subprocess.run([sys.executable, __file__, "--child", backend, side, str(round_ * args.runs),
                                      "--runs", str(args.runs), "--max-tokens", str(args.max_tokens)],
                                     capture_output=True, text=True, check=True).stdout
                results[side] += json.loads(out.strip().splitlines()[-1])
        summarise(label, results["ours"], results["direct"])


if __name__ == "__main__":
    main()
