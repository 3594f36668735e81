"""How honest is a tiny judge? The built-in SmolLM2 judges two candidates (one right, one wrong) on generated
problems, in one run:

- free text, read strictly (only the verdict JSON or an explicit "best: N" counts);
- free text, read the old lenient way (any lone number in range), to show what that used to count as a verdict;
- constrained by a grammar to the verdict JSON (what gemfuse does now for llama.cpp judges).

Then determinism and its cost: each constrained judge request asked twice in one process, re-using llama.cpp's
evaluated prompt prefix (llama-cpp-python's default) and evaluating each prompt afresh (gemfuse's choice at
temperature 0), with the replies that differ and the time per call.

    python benchmarks/judge_verdicts.py [--n 60]
"""

from __future__ import annotations

import argparse
import re
import time

from gemfuse.evals.generators import generate
from gemfuse.files import resolve_path
from gemfuse.fusion.judge import parse_verdict, prompt, render_answers, verdict_schema
from gemfuse.models.builtin import builtin_specs
from gemfuse.models.llamacpp import LlamaCppModel


def lenient(text: str, count: int) -> int | None:
    """The old reading: JSON, 'best: N', 'answer N', then any lone number in range."""
    for pattern in (r'"?best"?\s*[:=]\s*"?(\d+)', r"\banswer\s*#?\s*(\d+)", r"\b(\d+)\b"):
        for match in re.finditer(pattern, text, re.IGNORECASE):
            if 1 <= int(match.group(1)) <= count:
                return int(match.group(1))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60)
    args = parser.parse_args()
    spec = builtin_specs()["smollm2-135m"]
    model = LlamaCppModel("smollm2-135m", spec)
    llama = model.load()
    template = prompt("best_of")
    requests = []
    for i, row in enumerate(generate("math", args.n, seed=11)):
        right, wrong = f"The answer is {row['answer']}.", f"The answer is {int(row['answer']) + 3}."
        shown = [right, wrong] if i % 2 == 0 else [wrong, right]
        messages = [{"role": "system", "content": template["system"].substitute()},
                    {"role": "user", "content": template["user"].substitute(question=row["prompt"], count=2,
                                                                           answers=render_answers(shown))}]
        requests.append((messages, 1 if i % 2 == 0 else 2))

    def ask(messages, constrained: bool, fresh: bool) -> tuple[str, float]:
        kwargs = {"response_format": {"type": "json_object", "schema": verdict_schema(2)}} if constrained else {}
        if fresh:
            llama.reset()
        start = time.perf_counter()
        out = llama.create_chat_completion(messages=messages, max_tokens=48, temperature=0,
                                           repeat_penalty=spec.repeat_penalty or 1.0, **kwargs)
        return out["choices"][0]["message"]["content"] or "", time.perf_counter() - start

    free = [ask(m, False, True)[0] for m, _ in requests]
    constrained = [ask(m, True, True)[0] for m, _ in requests]
    n = len(requests)
    rows = [("free text, strict reading", [parse_verdict(t, 2) for t in free]),
            ("free text, old lenient reading", [(lenient(t, 2), "lenient") for t in free]),
            ("constrained (grammar)", [parse_verdict(t, 2) for t in constrained])]
    print(f"SmolLM2-135M as best-of judge, {n} generated problems, one right and one wrong candidate")
    print(f"{'':32} {'verdicts':>9} {'JSON':>6} {'right':>6} {'picked 1st':>11}")
    for name, read in rows:
        verdicts = [c for c, _ in read if c is not None]
        json_share = sum(1 for _, how in read if how == "json")
        right = sum(1 for (c, _), (_, answer) in zip(read, requests, strict=True) if c == answer)
        print(f"{name:32} {len(verdicts):5}/{n} {json_share:6} {right:6} {verdicts.count(1):11}")
    # determinism: each request twice, re-using the evaluated prefix or not
    for fresh in (False, True):
        differ, seconds = 0, []
        for messages, _ in requests:
            first, t1 = ask(messages, True, fresh)
            ask(requests[0][0], True, fresh)  # another request in between, as in a real fusion
            second, t2 = ask(messages, True, fresh)
            differ += first != second
            seconds += [t1, t2]
        label = "fresh prompt each call (gemfuse)" if fresh else "re-used prompt prefix (default)"
        print(f"{label:36} replies that changed on a re-ask: {differ}/{n}; "
              f"{sum(seconds) / len(seconds) * 1000:.0f} ms per judge call")
    print(f"model: {resolve_path(spec.path)}")


if __name__ == "__main__":
    main()
