"""What a fusion produced and what it cost: candidates, failures, judge calls, timings, usage and money.

Everything here serialises to plain JSON (`FusionTrace.to_dict`) and appends to a JSONL file.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..models.base import TokenLogprob, Usage
from ..prompted_tools import call_text
from ..shapes import TierRecord
from ..tool_calls import ToolCall


@dataclass
class Call:
    """One model call inside a fusion: a member's answer, a revision, or a judge call."""

    role: str  # "member", "revision", "judge", "backup_judge", "repair"
    member: str  # pool member id (model name, #n when a model appears twice) or judge name
    model: str
    text: str = ""
    usage: Usage = field(default_factory=Usage)
    cost: float | None = None  # None: the model has no price in the config (unpriced)
    latency_s: float = 0.0
    queued_s: float = 0.0  # waiting for the model's concurrency slot
    started_s: float = 0.0  # offsets from the start of the fusion
    ended_s: float = 0.0
    round: int = 0
    error: str | None = None  # a typed reason: timeout, rate_limit, upstream, empty, cut, ...
    message: str | None = None  # the error's text
    certainty: float | None = None  # how sure it was, by the preset's measure, when the model gave log-probabilities
    certainties: dict[str, float] = field(default_factory=dict)  # every measure its tokens allow
    certainty_approximate: bool = False  # read from an endpoint's top alternatives, not the whole distribution
    certainty_tokens: int = 0  # how many tokens it is taken over
    logprobs: list[TokenLogprob] | None = field(default=None, repr=False)  # the tokens themselves (not in to_dict)
    tool_calls: list[ToolCall] | None = None  # the function calls it answered with

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def said(self) -> str:
        """The answer as a judge or a debating member reads it: the text, or the calls as written."""
        return call_text(self.tool_calls) if self.tool_calls else self.text


@dataclass
class Verdict:
    """One judge pass of best-of: what it was shown, what it replied, and the choice read from it (if any)."""

    pass_number: int  # 1: the first order; 2: the swap check's rotated order
    judge: str
    role: str  # "judge", "backup_judge" or "repair"
    order: list[str]  # member ids in the order shown
    choice: int | None  # 1-based position in `order`; None: no explicit verdict
    read_as: str | None  # "json", "explicit" or None
    reply: str

    def to_dict(self) -> dict[str, Any]:
        return {"pass": self.pass_number, "judge": self.judge, "role": self.role, "order": self.order,
                "choice": self.choice, "read_as": self.read_as, "reply": self.reply}


@dataclass
class Tier:
    """One tier of a cascade: the model asked, how sure it was, and whether its answer was taken and why."""

    tier: int  # 1-based, cheapest first
    model: str
    accepted: bool
    why: str
    certainty: float | None  # by the preset's measure; None when the tier gave no log-probabilities
    agreed: bool  # its samples agreed (tier_samples > 1)
    chosen: str | None  # the member whose answer it would give
    seconds: float
    cost: float
    tokens: int

    def to_record(self) -> TierRecord:
        return {"tier": self.tier, "model": self.model, "accepted": self.accepted, "why": self.why,
                "certainty": self.certainty, "agreed": self.agreed, "chosen": self.chosen, "seconds": self.seconds,
                "cost": self.cost, "tokens": self.tokens}


@dataclass
class FusionTrace:
    mode: str
    seed: int
    pool: list[str]
    judge: str | None = None
    calls: list[Call] = field(default_factory=list)
    judge_choice: int | None = None  # best-of: index into `candidates` as shown to the judge, 1-based
    judge_rationale: str | None = None
    shown_order: list[str] = field(default_factory=list)  # member ids in the order the judge saw them
    votes: dict[str, float] = field(default_factory=dict)  # answer -> members (or their summed weights)
    argument_votes: dict[str, dict[str, float]] = field(default_factory=dict)  # calls: argument -> value -> votes
    tie: bool = False  # the vote's top count was shared; `tied` holds those answers
    tied: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)  # every judge pass: order shown, choice, how read
    confidence: dict[str, float] = field(default_factory=dict)  # confidence / weighted vote: member -> certainty
    confidence_method: str | None = None  # how `confidence` was computed
    tiers: list[Tier] = field(default_factory=list)  # cascade: each tier asked, its certainty, its fate
    answered_by_tier: int | None = None  # cascade: the 1-based tier whose answer was accepted; None: the final fusion
    rounds: int = 0
    degraded: bool = False
    degraded_reason: str | None = None
    stopped_by_cost: bool = False
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase: fan_out, judge, debate...
    started_at: float = field(default_factory=time.time)

    def add(self, call: Call) -> Call:
        self.calls.append(call)
        return call

    def degrade(self, reason: str) -> None:
        self.degraded = True
        self.degraded_reason = reason if not self.degraded_reason else f"{self.degraded_reason}; {reason}"

    @property
    def candidates(self) -> list[Call]:
        """The latest successful answer of each member (after revisions, in debate)."""
        latest: dict[str, Call] = {}
        for call in self.calls:
            if call.role in ("member", "revision") and call.ok:
                latest[call.member] = call
        return list(latest.values())

    @property
    def swap_check(self) -> str | None:
        """best-of with the swap check: "agreed" when the second order chose the same member as the first,
        "disagreed" when it chose another (or none); None without a second pass."""
        def chosen(pass_number: int) -> str | None:
            read = [v for v in self.verdicts if v.pass_number == pass_number and v.choice is not None]
            return read[-1].order[read[-1].choice - 1] if read and read[-1].choice else None

        if not any(v.pass_number == 2 for v in self.verdicts):
            return None
        return "agreed" if chosen(2) == chosen(1) else "disagreed"

    @property
    def failures(self) -> list[Call]:
        return [c for c in self.calls if not c.ok]

    @property
    def usage(self) -> Usage:
        total = Usage()
        for call in self.calls:
            total = total + call.usage
        return total

    @property
    def cost(self) -> float:
        """Money spent on priced models only; see `unpriced` for the rest."""
        return sum(c.cost for c in self.calls if c.cost is not None)

    @property
    def unpriced(self) -> list[str]:
        return sorted({c.model for c in self.calls if c.cost is None and (c.usage.total_tokens or c.ok)})

    def critical_path(self) -> list[dict[str, Any]]:
        """The calls that decided the wall time: per phase, the call that ended last."""
        path: dict[tuple[str, int], Call] = {}
        for call in self.calls:
            key = ("judge" if "judge" in call.role or call.role == "repair" else "members", call.round)
            if key not in path or call.ended_s > path[key].ended_s:
                path[key] = call
        ordered = sorted(path.values(), key=lambda c: c.ended_s)
        return [{"role": c.role, "member": c.member, "round": c.round, "start_s": round(c.started_s, 4),
                 "end_s": round(c.ended_s, 4)} for c in ordered]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for call in data["calls"]:
            call.pop("logprobs", None)
            call["usage"]["total_tokens"] = call["usage"]["prompt_tokens"] + call["usage"]["completion_tokens"]
        usage = self.usage
        data.update(usage={"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                           "total_tokens": usage.total_tokens, "estimated": usage.estimated},
                    cost=self.cost, unpriced=self.unpriced, critical_path=self.critical_path(),
                    failures=[{"member": c.member, "model": c.model, "role": c.role, "reason": c.error,
                               "message": c.message} for c in self.failures],
                    verdicts=[v.to_dict() for v in self.verdicts])
        return data

    def write_jsonl(self, path: str | Path, answer: str | None = None) -> None:
        record = {"answer": answer, **self.to_dict()}
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


@dataclass
class FusionResult:
    text: str
    trace: FusionTrace
    chosen: str | None = None  # the member whose answer was returned verbatim (vote, best-of)
    tool_calls: list[ToolCall] | None = None  # the fused answer's function calls, when it is calls

    @property
    def logprobs(self) -> list[TokenLogprob] | None:
        """The chosen answer's token log-probabilities, when it is a member's answer that came with them."""
        found = [c for c in self.trace.candidates if c.member == self.chosen]
        return found[0].logprobs if found else None

    def to_dict(self) -> dict[str, Any]:
        calls = [call.to_openai() for call in self.tool_calls] if self.tool_calls else None
        return {"text": self.text, "chosen": self.chosen, "tool_calls": calls, **self.trace.to_dict()}
