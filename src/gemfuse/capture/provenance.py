"""Where a training row's answer came from, as the `meta` of the row: the model or preset, the members' answers,
how far they agreed, what the judge chose and how its reply was read, whether the swap check held, whether the
fusion was degraded and why, and what it cost. One shape for captured requests and for labelled prompts."""

from __future__ import annotations

import json
import time
from collections import Counter

from ..fusion.extract import EXTRACTORS, plurality
from ..fusion.trace import FusionResult
from ..json_schema import parse_json
from ..models.base import Completion
from ..shapes import Agreement, JudgeMeta, RowMeta
from ..tool_calls import canonical_calls, normalised

ROW_META_VERSION = 1


def agreement(answers: dict[str, str], extractor: str | None = "auto", votes: dict[str, float] | None = None
              ) -> Agreement:
    """How many of the members gave the most common answer under `extractor` (None: the answers are already
    keys, as calls in canonical form are), and the margin over the runner-up; a vote's own counts (`votes`) when
    the fusion voted. Answers nothing could be read from count as their own, lone answers."""
    if votes and all(float(v).is_integer() for v in votes.values()):  # heads, not a confidence-weighted vote
        heads = Counter({k: int(v) for k, v in votes.items()}).most_common()
        return {"answer": heads[0][0], "count": heads[0][1], "of": sum(votes.values()),
                "margin": heads[0][1] - (heads[1][1] if len(heads) > 1 else 0), "extractor": extractor}
    read = EXTRACTORS.get(extractor, EXTRACTORS["auto"]) if extractor is not None else (lambda text: text)
    keys = [read(text) or f"\0unread:{member}" for member, text in answers.items()]
    counts, leaders = plurality(keys)
    if not leaders:
        return {"answer": None, "count": 0, "of": 0, "margin": 0, "extractor": extractor}
    top, count = leaders[0], int(counts[leaders[0]])
    second = max((int(v) for k, v in counts.items() if k != top), default=0)
    return {"answer": None if top.startswith("\0") else top, "count": count, "of": len(keys),
            "margin": count - second, "extractor": extractor}


def fusion_meta(result: FusionResult, *, model: str, extractor: str = "auto", request_id: str | None = None,
                source: str = "fuse", json_answers: bool = False) -> RowMeta:
    """`json_answers`: the answers were asked under a JSON schema, and agree by value."""
    trace = result.trace
    members = {call.member: call.said for call in trace.candidates}  # calls as written
    # calls agree by canonical form (key order, spacing, number spelling normalised), JSON by value, not by text
    calls = {call.member: "calls: " + " ".join(canonical_calls(call.tool_calls or [])) if call.tool_calls
             else json_key(call.text) if json_answers else call.text for call in trace.candidates}
    read_as = None if json_answers or any(call.tool_calls for call in trace.candidates) else extractor
    judge: JudgeMeta | None = None
    read = [v for v in trace.verdicts if v.choice is not None]
    if trace.judge and (trace.verdicts or trace.mode != "vote"):
        judge = {"model": trace.judge, "chosen": result.chosen, "read_as": read[-1].read_as if read else None,
                 "swap_check": trace.swap_check}
    usage = trace.usage
    return {"v": ROW_META_VERSION, "source": source, "model": model, "mode": trace.mode, "members": members,
            "failed": {c.member: c.error for c in trace.failures},
            "agreement": agreement(calls, read_as, trace.votes), "judge": judge, "chosen": result.chosen,
            "degraded": trace.degraded_reason if trace.degraded else None,
            "cost": trace.cost, "unpriced": trace.unpriced,
            "tokens": {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens,
                       "estimated": usage.estimated},
            "latency_s": round(trace.phases.get("total", 0.0), 4), "time": _now(), "request_id": request_id}


def json_key(text: str) -> str:
    """A JSON answer as compared: its value, key order and number spelling aside (else its text)."""
    try:
        return "json: " + json.dumps(normalised(parse_json(text)), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return text


def model_meta(completion: Completion, *, model: str, cost: float | None, request_id: str | None = None,
               source: str = "serve") -> RowMeta:
    usage = completion.usage
    return {"v": ROW_META_VERSION, "source": source, "model": model, "mode": None,
            "members": {model: completion.text}, "failed": {},
            "agreement": {"answer": None, "count": 1, "of": 1, "margin": 1, "extractor": None}, "judge": None,
            "chosen": model, "degraded": None, "cost": cost or 0.0, "unpriced": [] if cost is not None else [model],
            "tokens": {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens,
                       "estimated": usage.estimated},
            "latency_s": round(completion.latency_s or 0.0, 4), "time": _now(), "request_id": request_id,
            "finish_reason": completion.finish_reason}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
