"""How long a fine-tune's GGUF takes to make for llama.cpp: the adapter grafted into its base's GGUF (what gemfuse
does) against the export's merge in transformers followed by llama.cpp's converter (what it did), in one run.

A LoRA of the built-in Gemma 3 270M (trained here, a few steps: this measures speed, not learning). The base's
GGUF is made first and serves both ways; each way is timed over rounds, alternating, and each file's next-token
agreement with the adapter on transformers is printed beside it.

    python benchmarks/finetune_gguf.py [--rounds 3] [--steps 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    from finetune_eval import train_run  # the same few-step LoRA of the built-in 270M

    from gemfuse.finetune_gguf import base_gguf, graft_adapter, next_token_agreement
    from gemfuse.gguf_tools import convert_to_gguf
    from gemfuse.shapes import read_manifest
    from gemfuse.tune.export import merge

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        run = train_run(folder, args.steps)
        base = base_gguf(str(run))
        timings: dict[str, list[float]] = {"graft": [], "merge + convert": []}
        files: dict[str, Path] = {}
        for round_ in range(args.rounds):
            for way in timings:
                out = folder / f"{way.split()[0]}-{round_}.gguf"
                started = time.perf_counter()
                if way == "graft":
                    assert graft_adapter(base, run, out), "the graft folds this adapter"
                else:
                    convert_to_gguf(merge(run, read_manifest(run), folder / f"merged-{round_}"), out)
                timings[way].append(time.perf_counter() - started)
                files[way] = out
        graft, full = (statistics.median(timings[w]) for w in timings)
        for way, seconds in timings.items():
            print(f"{way:16s} median {statistics.median(seconds):6.2f} s over {len(seconds)} rounds; next-token "
                  f"agreement with the adapter {next_token_agreement(files[way], run):.0%}")
        print(f"graft / (merge + convert): {graft / full:.3f} ({full / graft:.1f}x faster)")


if __name__ == "__main__":
    main()
