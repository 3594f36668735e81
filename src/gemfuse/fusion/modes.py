"""Fusion modes: plain async functions `mode(run) -> (answer, chosen call or None)`, in one table.

- vote: for short, checkable answers (numbers, option letters, names). No judge call: cheapest and fastest.
- best-of: a judge picks the best candidate, returned verbatim. Cheap; keeps one model's voice. Optional
  swap_check asks again with the order rotated by one place and trusts only a consistent choice.
- merge: a judge analyses agreement, contradictions and unique points, then writes one answer. Best quality
  for open questions; one judge call that reads every candidate.
- debate: members see each other's anonymised answers and revise for up to `rounds` rounds (stopping early
  when they agree), then a vote or the judge decides. For reasoning where models correct each other.
- self: one model sampled `samples` times with different seeds, then best-of or merge (Self-MoA).
- confidence: no judge; the answer its own model was surest of (token log-probabilities).
- cascade: tiers in pool order, cheapest first; the first sure enough answers, else the next is asked.

Whenever a judge fails the chain is judge -> backup judge -> vote, and the trace says degraded, and why.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence

from ..messages import Message
from ..models.certainty import DESCRIPTIONS
from .engine import FusionRun, QuorumError, Request
from .events import Delta
from .extract import Extractor, answer_key, plurality
from .judge import merge_answers, pick_best, prompt, render_answers, rotated, shuffled
from .structured import key_of, structured, vote_arguments
from .trace import Call, Tier

ModeResult = tuple[str, Call | None]


async def emit_answer(run: FusionRun, result: ModeResult) -> ModeResult:
    """Modes that return a candidate verbatim stream it whole, once chosen."""
    await run.emit(Delta(result[0]))
    return result


def tally(run: FusionRun, candidates: Sequence[Call], extractor: Extractor | None = None) -> tuple[ModeResult, list[Call]]:
    """Plurality over extracted answers: (the winner, the first candidate of each group tied for the top).
    A tie goes to the group whose first member comes first in the pool, and the trace says so."""
    keys = [answer_key(c.text, extractor) if extractor else key_of(run, c) for c in candidates]
    weights = certainty_weights(run, candidates) if run.preset.vote_weight == "confidence" else None
    counts, leaders = plurality(keys, weights)
    run.trace.votes = dict(counts)
    chosen = candidates[keys.index(leaders[0])]  # keys follow pool order: the tie-break
    tied = [candidates[keys.index(k)] for k in leaders] if len(leaders) > 1 else []
    run.trace.tie, run.trace.tied = bool(tied), leaders if tied else []
    return (chosen.text, chosen), tied


def certainty_method(run: FusionRun, candidates: Sequence[Call]) -> str:
    """How the certainties were measured, in words, and whose were approximated."""
    method = DESCRIPTIONS[run.preset.certainty]
    if run.preset.certainty == "lowest-window":
        method += f" (windows of {run.preset.certainty_window} tokens)"
    approximated = [c.member for c in candidates if c.certainty_approximate]
    if approximated:
        method += (f"; approximated for {', '.join(approximated)} from the top alternatives the endpoint returned "
                   "(not the whole distribution)")
    return method


def certainty_weights(run: FusionRun, candidates: Sequence[Call]) -> list[float] | None:
    """Each answer's weight: its mean token probability, exp(mean), or the certainty itself for the measures
    that are positive (DeepConf weighs its votes by confidence); None (and the vote counts heads, said in the
    trace) when a member gave no log-probabilities."""
    missing = [c.member for c in candidates if c.certainty is None]
    if missing:
        run.trace.degrade(f"no log-probabilities from {', '.join(missing)}: the vote counted one vote per member")
        return None
    run.trace.confidence = {c.member: c.certainty for c in candidates if c.certainty is not None}
    mean = run.preset.certainty == "mean"
    run.trace.confidence_method = certainty_method(run, candidates) + (
        "; each vote weighs exp(certainty), the mean token probability" if mean else "; each vote weighs its certainty")
    return [math.exp(c.certainty or 0.0) if mean else max(c.certainty or 0.0, 0.0) for c in candidates]


async def confidence(run: FusionRun) -> ModeResult:
    """No judge: the answer its own model was surest of, by the preset's certainty measure."""
    candidates = await run.fan_out(run.member_requests())
    scored = [c for c in candidates if c.certainty is not None]
    run.trace.confidence = {c.member: c.certainty for c in scored if c.certainty is not None}
    run.trace.confidence_method = certainty_method(run, candidates)
    missing = [c.member for c in candidates if c.certainty is None]
    if not scored:
        run.trace.degrade(f"no member returned log-probabilities ({', '.join(missing)}), so none could be compared; "
                          "the first member's answer was taken")
        return await emit_answer(run, (candidates[0].text, candidates[0]))
    if missing:
        run.trace.degrade(f"no log-probabilities from {', '.join(missing)}: chosen among the others only")
    best = max(c.certainty for c in scored if c.certainty is not None)
    leaders = [c for c in scored if c.certainty == best]
    if len(leaders) > 1:
        run.trace.tie, run.trace.tied = True, [c.member for c in leaders]
        run.trace.degrade(f"{len(leaders)} answers were equally sure; the first in pool order was taken")
    return await emit_answer(run, (leaders[0].text, leaders[0]))


def _pool_order_fallback(run: FusionRun, result: ModeResult, tied: Sequence[Call]) -> ModeResult:
    if tied:
        agreed = "no two answers agreed" if max(run.trace.votes.values()) == 1 else \
            f"{len(tied)} answers tied with {max(run.trace.votes.values())} votes each"
        run.trace.degrade(f"{agreed}, so the first successful member's answer was taken")
    return result


async def vote(run: FusionRun, candidates: Sequence[Call] | None = None) -> ModeResult:
    candidates = candidates if candidates is not None else await run.fan_out(run.member_requests())
    result, tied = tally(run, candidates)
    if run.tools is not None and max(run.trace.votes.values()) * 2 <= len(candidates):
        merged = vote_arguments(run, candidates)  # no call has a majority: argument by argument
        if merged is not None:
            run.answer_calls = merged
            return "", None
    if tied and run.preset.tie_break == "judge" and run.preset.judge:
        started = run.now()
        chosen = await pick_best(run, shuffled(run, tied))
        run.trace.phases["tie_break"] = run.now() - started
        if chosen is not None:
            return await emit_answer(run, (chosen.text, chosen))
    return await emit_answer(run, _pool_order_fallback(run, result, tied))


async def _judge_or_vote(run: FusionRun, candidates: Sequence[Call], final: str) -> ModeResult:
    if len(candidates) == 1:
        return await emit_answer(run, (candidates[0].text, candidates[0]))
    if final == "merge" and structured(run):  # a written merge could break the schema: the judge picks instead
        run.trace.degrade("the answers are calls or JSON, so the judge picked one instead of writing a merge")
        final = "best-of"
    if final == "merge":
        merged = await merge_answers(run, candidates)
        if merged is not None:
            return merged, None
    else:
        order = shuffled(run, candidates)
        chosen = await pick_best(run, order)
        if chosen is not None and run.preset.swap_check:
            again = await pick_best(run, rotated(order), pass_=2)
            if again is None or again.member != chosen.member:
                run.trace.degrade("swap check: the judge chose differently when the order changed")
                chosen = None
        if chosen is not None:
            return await emit_answer(run, (chosen.text, chosen))
    started = run.now()
    result, tied = tally(run, candidates)
    run.trace.phases["fallback_vote"] = run.now() - started
    return await emit_answer(run, _pool_order_fallback(run, result, tied))


async def best_of(run: FusionRun) -> ModeResult:
    candidates = await run.fan_out(run.member_requests())
    return await _timed_judge(run, candidates, "best-of")


async def merge(run: FusionRun) -> ModeResult:
    candidates = await run.fan_out(run.member_requests())
    return await _timed_judge(run, candidates, "merge")


async def _timed_judge(run: FusionRun, candidates: Sequence[Call], final: str) -> ModeResult:
    started = run.now()
    try:
        return await _judge_or_vote(run, candidates, final)
    finally:
        run.trace.phases["judge"] = run.now() - started


def agree(run: FusionRun, candidates: Sequence[Call]) -> bool:
    return len({key_of(run, c) for c in candidates}) == 1


async def debate(run: FusionRun) -> ModeResult:
    requests = {r.member: r for r in run.member_requests()}
    candidates = await run.fan_out(list(requests.values()))
    for round_ in range(1, run.preset.rounds + 1):
        if len(candidates) < 2 or agree(run, candidates):
            break
        if run.over_budget():
            run.trace.stopped_by_cost = True
            break
        revisions = []
        for own in candidates:
            others = shuffled(run, [c for c in candidates if c.member != own.member], salt=round_)
            ask = prompt("debate")["user"].substitute(answers=render_answers([c.said for c in others]))
            messages = [*run.messages, Message.assistant(own.said), Message.user(ask)]
            base = requests[own.member]
            revisions.append(Request(own.member, own.model, messages, base.options, base.timeout_s, role="revision"))
        await run.fan_out(revisions, round_=round_, phase="debate")
        run.trace.rounds = round_
        latest = {c.member: c for c in run.trace.candidates}
        candidates = [latest[c.member] for c in candidates if c.member in latest]
    if run.preset.debate_final == "vote":
        return await vote(run, candidates)
    return await _timed_judge(run, candidates, run.preset.debate_final)


async def self_moa(run: FusionRun) -> ModeResult:
    member = run.preset.members()[0]
    temperature = member.temperature if member.temperature is not None else 0.8
    requests = []
    for i in range(run.preset.samples):
        options = run.member_options(member, temperature=temperature, seed=run.seed + i)
        requests.append(Request(f"{member.model}#{i + 1}", member.model, run.messages, options,
                                run.timeout_s(member.timeout_ms)))
    candidates = await run.fan_out(requests)
    return await _timed_judge(run, candidates, run.preset.self_final)


async def cascade(run: FusionRun) -> ModeResult:
    """Tiers in pool order (cheapest first): a tier's answer is taken when its model was sure enough (certainty
    at least `threshold`) or its `tier_samples` answers agree; otherwise the next tier is asked. When no tier is
    sure, every answer gathered is fused by `cascade_final` (the pool's vote by default)."""
    gathered: list[Call] = []
    preset = run.preset
    for tier, request in enumerate(run.member_requests(), 1):
        requests = [request]
        if preset.tier_samples > 1:
            member = preset.members()[tier - 1]
            temperature = member.temperature if member.temperature is not None else 0.8
            requests = [Request(f"{request.member}#{i + 1}", request.model, request.messages,
                                run.member_options(member, temperature=temperature, seed=run.seed + i),
                                request.timeout_s) for i in range(preset.tier_samples)]
        started = run.now()
        try:
            calls = await run.fan_out(requests, round_=tier - 1, phase="tier")
        except QuorumError:
            calls = []
        gathered.extend(calls)
        agreed = len(calls) > 1 and agree(run, calls)
        certainty = _mean_certainty(calls)
        accepted, why = tier_accepted(certainty, agreed, len(calls), preset.cascade_threshold(), preset.certainty)
        tier_calls = [c for c in run.trace.calls if c.round == tier - 1 and c.role == "member"]
        best = max(calls, key=lambda c: c.certainty if c.certainty is not None else -math.inf) if calls else None
        run.trace.tiers.append(Tier(tier=tier, model=request.model, accepted=accepted, why=why, certainty=certainty,
                                    agreed=agreed, chosen=best.member if best else None,
                                    seconds=round(run.now() - started, 4), cost=sum(c.cost or 0.0 for c in tier_calls),
                                    tokens=sum(c.usage.total_tokens for c in tier_calls)))
        if accepted and best is not None:
            run.trace.answered_by_tier = tier
            return await emit_answer(run, (best.text, best))
    if not gathered:
        raise QuorumError("no tier of the cascade answered", run.trace)
    final = preset.cascade_final
    if final == "confidence":
        scored = [c for c in gathered if c.certainty is not None] or gathered
        best = max(scored, key=lambda c: c.certainty if c.certainty is not None else -math.inf)
        return await emit_answer(run, (best.text, best))
    if final == "vote":
        result, tied = tally(run, gathered)
        surest = [c for c in tied if c.certainty is not None]
        if surest:  # the cascade holds each tier's certainty: a tie goes to the surest, not to list order
            best = max(surest, key=lambda c: c.certainty if c.certainty is not None else -math.inf)
            split = "no two answers agreed" if max(run.trace.votes.values()) == 1 else \
                f"{len(tied)} answers tied with {max(run.trace.votes.values())} votes each"
            run.trace.degrade(f"{split}, so the surest member's answer was taken ({best.member}, certainty "
                              f"{best.certainty:.4g})")
            return await emit_answer(run, (best.text, best))
        return await emit_answer(run, _pool_order_fallback(run, result, tied))
    return await _timed_judge(run, gathered, final)


def _mean_certainty(calls: Sequence[Call]) -> float | None:
    known = [c.certainty for c in calls if c.certainty is not None]
    return sum(known) / len(known) if known else None


def tier_accepted(certainty: float | None, agreed: bool, answers: int, threshold: float,
                  measure: str = "mean") -> tuple[bool, str]:
    """The cascade's one acceptance rule, for the mode and for an eval's replay of it: a tier's answers agree,
    or its certainty reaches the threshold."""
    if not answers:
        return False, "no answer"
    if agreed:
        return True, f"{answers} answers agreed"
    if certainty is None:
        return False, "no log-probabilities to judge its certainty by"
    verdict = certainty >= threshold
    return verdict, f"{measure} certainty {certainty:.3f} {'>=' if verdict else '<'} threshold {threshold:g}"


MODES: dict[str, Callable[[FusionRun], Awaitable[ModeResult]]] = {
    "vote": vote, "best-of": best_of, "merge": merge, "debate": debate, "self": self_moa, "confidence": confidence,
    "cascade": cascade,
}
