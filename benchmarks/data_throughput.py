"""Rows per second for validation and collation against the straightforward way, in one run.

Baselines do what common tuners do: per row, parse it, decode its media, and call the processor on it alone
(validation: `apply_chat_template(tokenize=True)` with the media; collation: one processor call per row, then
padding). Ours: `validate()` (media decoded once per unique file, in threads; texts tokenised in one batch)
and the batch `Collator`. Data: text rows, and image / audio rows that reuse a small set of files, as datasets do.

    python benchmarks/data_throughput.py [--text-rows 10000] [--media-rows 400]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from gemfuse.data.collate import Collator
from gemfuse.data.schema import read_jsonl
from gemfuse.data.target import load_target
from gemfuse.data.validate import conversation, validate
from gemfuse.testing import build_tiny_model
from gemfuse.testing.media import write_png, write_wav


def make_datasets(folder: Path, text_rows: int, media_rows: int) -> dict[str, Path]:
    for i in range(20):
        write_png(folder / f"img{i}.png", size=96, color=(i * 10, 100, 200 - i * 5))
        write_wav(folder / f"clip{i}.wav", seconds=2.0, rate=44_100, freq=200 + 20 * i)
    def row(user, answer):
        return json.dumps({"messages": [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": user},
                                        {"role": "assistant", "content": answer}]})
    files = {"text": folder / "text.jsonl", "image": folder / "image.jsonl", "audio": folder / "audio.jsonl"}
    files["text"].write_text("\n".join(row(f"Question {i}: what is {i} plus {i}?", f"It is {2 * i}.")
                                       for i in range(text_rows)) + "\n")
    files["image"].write_text("\n".join(row([{"type": "image", "path": f"img{i % 20}.png"},
                                              {"type": "text", "text": f"Describe picture {i}."}], f"Picture {i}.")
                                        for i in range(media_rows)) + "\n")
    files["audio"].write_text("\n".join(row([{"type": "audio", "path": f"clip{i % 20}.wav"},
                                              {"type": "text", "text": "Transcribe this."}], f"Tone {i}.")
                                        for i in range(media_rows)) + "\n")
    return files


def naive_validate(path: Path, target) -> int:
    """Per row: parse, decode media from disk, render and tokenise through the processor."""
    from gemfuse.data.collate import _decode_audio, _decode_image

    count = 0
    for example in read_jsonl(path):
        media = [m for t in example.turns for m in t.media]
        images = [_decode_image(m) for m in media if m.kind == "image"]
        audio = [_decode_audio(m, target.sampling_rate) for m in media if m.kind == "audio"]
        text = target.render(conversation(example))
        if target.processor is target.tokenizer:
            target.tokenizer(text)
        else:
            target.processor(text=[text], images=[images] if images else None, audio=audio or None)
        count += 1
    return count


def naive_collate(examples, target, batch_size: int) -> None:
    import torch

    single = Collator(target)
    for start in range(0, len(examples), batch_size):
        rows = [single([e]) for e in examples[start:start + batch_size]]
        width = max(r["input_ids"].shape[1] for r in rows)
        torch.stack([torch.nn.functional.pad(r["input_ids"][0], (0, width - r["input_ids"].shape[1])) for r in rows])


def rate(fn, rows: int) -> float:
    start = time.perf_counter()
    fn()
    return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-rows", type=int, default=10_000)
    parser.add_argument("--media-rows", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        target = load_target(str(build_tiny_model("gemma3n", folder / "tiny-gemma3n")))
        files = make_datasets(folder, args.text_rows, args.media_rows)
        print("validation, rows/s (tiny Gemma 3n processor; ratio = ours / per-row baseline):")
        for kind, path in files.items():
            rows = args.text_rows if kind == "text" else args.media_rows
            ours = rate(lambda p=path: validate(p, target), rows)
            base = rate(lambda p=path: naive_validate(p, target), rows)
            print(f"  {kind:6s} ours {ours:9.0f}  baseline {base:9.0f}  ratio {ours / base:5.2f}")
        print(f"collation, rows/s, batch {args.batch_size}:")
        for kind, path in files.items():
            examples = list(read_jsonl(path))[:max(args.media_rows, 400)]
            collator = Collator(target)
            batches = [examples[i:i + args.batch_size] for i in range(0, len(examples), args.batch_size)]
            ours = rate(lambda c=collator, bs=batches: [c(b) for b in bs], len(examples))
            base = rate(lambda ex=examples: naive_collate(ex, target, args.batch_size), len(examples))
            print(f"  {kind:6s} ours {ours:9.0f}  baseline {base:9.0f}  ratio {ours / base:5.2f}")


if __name__ == "__main__":
    main()
