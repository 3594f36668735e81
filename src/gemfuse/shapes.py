"""The shapes of the files that cross packages, in one place every writer and reader imports: a run's manifest
and metrics lines (tune/ writes; models/, distil/, the dashboard read), a captured row and its provenance
(capture/ writes; distil/ reads), and the two kinds of report.json (evals/ and distil/ write; the dashboard
reads), told apart by their `kind`. TypedDicts, so mypy holds writers and readers to one shape; a key a newer
writer adds is optional (`total=False`), so files from before it still read.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

from ._json import finite

MANIFEST = "manifest.json"
METRICS = "metrics.jsonl"
REPORT = "report.json"
LABELLED = "labelled.jsonl"  # a distil folder's rows as the teacher labelled them


# -- a training run -------------------------------------------------------------------------------------------

class ProcessInfo(TypedDict):
    pid: int
    host: str
    start: int | None  # clock ticks since boot (Linux): a reused process id is not taken for it


class MemoryEstimate(TypedDict, total=False):
    total_gib: float
    weights_gib: float
    trainable_gib: float
    activations_gib: float
    loss_gib: float
    runtime_gib: float
    longest_row_tokens: int
    available_gib: float | None


class PeakMemory(TypedDict, total=False):
    peak_gib: float | None
    measured_by: str
    estimate_gib: float
    peak_bytes: int
    estimate_bytes: int
    estimate_over_peak: float | None
    per_rank_gib: list[float | None]  # each process's own peak, rank 0 first (runs of several processes)


class RunResult(TypedDict, total=False):
    steps: int
    train_loss: float | None
    best_val_loss: float | None
    supervised_tokens: int
    seconds: float
    skipped_steps: int
    memory: PeakMemory
    adapter: str | None


class RunManifest(TypedDict, total=False):
    status: str  # running, done, interrupted, failed
    process: ProcessInfo
    config: dict[str, Any]  # the TuneConfig as run (model as the user named it)
    base_model: str  # the base's resolved path
    base_folder: str
    family: str
    chat_template: str | None
    device: str
    dtype: str
    world_size: int
    seed: int
    data_hash: str
    rows: dict[str, int]  # train, val
    total_steps: int
    lora_modules: int
    trainable_parameters: int
    memory_estimate: MemoryEstimate
    gradient_checkpointing: bool
    packages: dict[str, str]
    patches: list[dict[str, Any]]
    result: RunResult
    error: str


class MetricsLine(TypedDict, total=False):
    step: int
    loss: float
    val_loss: float
    grad_norm: float
    lr: float
    tokens: int
    seconds: float
    peak_gib: float | None
    time: float
    skipped: str


def read_manifest(run: str | Path) -> RunManifest:
    """A run folder's manifest (raises OSError or ValueError when it is missing or torn)."""
    data: RunManifest = json.loads((Path(run) / MANIFEST).read_text())
    return data


def read_json_object(path: Path) -> dict | None:
    """A JSON object from disk for a reader that polls: None while it is missing, being replaced (files are
    written whole, so a retry finds it) or not an object; a non-finite figure (an older writer's NaN) reads as
    None."""
    try:
        data = finite(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def manifest_if_readable(run: str | Path) -> RunManifest | None:
    """A run folder's manifest for a reader that polls (the dashboard), or None (read_json_object)."""
    return cast(RunManifest | None, read_json_object(Path(run) / MANIFEST))


_metrics_read: dict[tuple[Path, int | None], tuple[tuple[int, int], list[MetricsLine]]] = {}
_metrics_lock = threading.Lock()


def read_metrics(run: str | Path, tail_bytes: int | None = None) -> list[MetricsLine]:
    """A run folder's metrics.jsonl as whole lines (only those in its last `tail_bytes` when given), for writers
    and pollers alike: a line still being written, or torn, is left out, a missing file is no lines, and the
    file is parsed again only when it changed (size or time)."""
    path = Path(run) / METRICS
    try:
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        with _metrics_lock:
            cached = _metrics_read.get((path, tail_bytes))
        if cached and cached[0] == key:
            return cached[1]
        start = max(0, stat.st_size - tail_bytes) if tail_bytes else 0
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read()
    except OSError:
        return []
    pieces = data.split(b"\n")[1 if start else 0:]  # from the middle of a file, the first piece is a line's end
    lines = []
    for piece in pieces:
        try:
            line = json.loads(piece)
        except ValueError:  # empty, or a last line still being written
            continue
        if isinstance(line, dict):
            lines.append(cast(MetricsLine, line))
    with _metrics_lock:
        _metrics_read[(path, tail_bytes)] = (key, lines)
    return lines


# -- a captured or labelled row -------------------------------------------------------------------------------

class Agreement(TypedDict):
    answer: str | None  # the most common reading; None when nothing could be read
    count: int
    of: float
    margin: int
    extractor: str | None


class JudgeMeta(TypedDict):
    model: str
    chosen: str | None
    read_as: str | None
    swap_check: str | None


class TokenCounts(TypedDict):
    prompt: int
    completion: int
    estimated: bool


class RowMeta(TypedDict, total=False):
    v: int
    source: str  # serve, fuse, ask, label
    model: str
    mode: str | None
    members: dict[str, str]
    failed: dict[str, str | None]
    agreement: Agreement
    judge: JudgeMeta | None
    chosen: str | None
    degraded: str | None
    cost: float | None
    unpriced: list[str]
    tokens: TokenCounts
    latency_s: float
    time: str
    request_id: str | None
    finish_reason: str | None
    # a labelled prompt's: where it came from and the reference it had, if any
    prompt: str
    where: str
    reference: str | None
    reference_calls: list[dict[str, Any]]  # the calls it had as its reference (OpenAI's shape)


class CapturedRow(TypedDict):
    messages: list[dict[str, Any]]
    meta: RowMeta


# -- a fusion trace's cascade tier, as an eval record keeps it ---------------------------------------------------

class TierRecord(TypedDict):
    tier: int  # 1-based, cheapest first
    model: str
    accepted: bool
    why: str  # "certainty -0.050 >= threshold -0.3", "3 answers agreed", ...
    certainty: float | None  # by the preset's measure
    agreed: bool  # its samples agreed (tier_samples > 1)
    chosen: str | None  # the member whose answer it would give
    seconds: float
    cost: float
    tokens: int


# -- reports --------------------------------------------------------------------------------------------------

class PairedTest(TypedDict):
    """McNemar's test of a system against another on the same test items (vs_best, vs_base)."""
    against: str
    only_a: int  # items this system got right and the other wrong
    only_b: int  # the reverse
    p_value: float
    method: str  # "exact" (binomial) or "chi2"


class ScorerFigures(TypedDict):
    """One scorer's items of a system (by_scorer): accuracy with its interval and the mean value."""
    n: int
    correct: int
    accuracy: float
    interval: tuple[float | None, float | None]
    score: float


class PositionBiasFigures(TypedDict):
    """Where a judge's verdicts pointed (the shown positions, 1-based order), against chance."""
    picks: list[int]
    shares: list[float]
    expected: list[float]
    verdicts: int
    p_value: float


class CascadePoint(TypedDict):
    """A cascade replayed at one threshold."""
    threshold: float
    n: int
    accuracy: float
    interval: tuple[float | None, float | None]
    cost_per_item: float
    latency_p50_s: float
    escalated: float  # the share of items that went past the first tier


class Calibration(TypedDict, total=False):
    """The threshold chosen for a goal (a cascade's own on dev, or the replayed frontier's); threshold None and
    `why` when none meets it."""
    goal: str
    threshold: float | None
    why: str
    certainty: str
    on: str
    dev: CascadePoint
    test: CascadePoint
    candidates: int


class Frontier(TypedDict, total=False):
    """A cascade over the pool replayed from the members' answers, at each threshold, with the oracle."""
    pool: list[str]
    points: list[CascadePoint]
    oracle: dict[str, float]  # accuracy, cost_per_item
    dominated: list[dict[str, str]]  # system, by
    calibrated: Calibration


class SystemRow(TypedDict, total=False):
    name: str
    kind: str  # member or fusion
    members: list[str]
    mode: str
    judge: str | None
    base: str | None
    n: int
    correct: int
    accuracy: float | None  # None: the system failed (`failed` says why)
    interval: tuple[float | None, float | None]
    score: float | None
    failed: str
    errors: int
    degraded: int
    cost: float
    cost_per_correct: float | None
    unpriced: list[str]
    eval_cost: float
    prompt_tokens_per_item: float
    completion_tokens_per_item: float
    calls_per_item: float
    latency_p50_s: float
    latency_p95_s: float
    dev_accuracy: float | None
    by_scorer: dict[str, ScorerFigures]  # items scored more than one way (or as calls / JSON): each scorer's figures
    # fusions
    degraded_reasons: dict[str, int]
    oracle: float
    regret: int
    regret_rate: float
    rescue: int
    rescue_rate: float
    ties: int
    judge_replies: int
    verdict_share: float
    position_bias: PositionBiasFigures
    swap_disagreement: float
    vs_best: PairedTest
    vs_base: PairedTest
    certainty: str
    threshold: float
    calibration: Calibration | None


class EvalReport(TypedDict, total=False):
    kind: Literal["eval"]
    dataset: str
    answers: str  # the items' answers: number, choice or text (before `kind` was the report's, under `kind`)
    items: int
    dev: int
    test: int
    scorer: dict[str, Any]
    seed: int
    best_member: str | None
    best_chosen_on: str
    systems: list[SystemRow]
    calls: dict[str, Any]
    frontier: Frontier
    certainty: dict[str, Any]  # separation.py: on, measures, pick
    findings: list[str]


class DistilReport(TypedDict, total=False):
    kind: Literal["distil"]
    teacher: str
    members: list[str]
    student: dict[str, Any]  # name, model, base, run
    label: dict[str, Any]
    filter: dict[str, Any]
    training: dict[str, Any]
    eval: dict[str, Any]  # dataset, folder, items, max_tokens (each answer's length), accuracy by system
    gain_kept: dict[str, Any]
    cost_fraction: dict[str, Any]
    latency_fraction: dict[str, Any]
    stage_seconds: dict[str, float]
    registered: Any


def report_kind(data: dict[str, Any]) -> str | None:
    """"eval" or "distil" for a report.json (files from before `kind` are told by their keys); None otherwise."""
    if data.get("kind") in ("eval", "distil"):
        return str(data["kind"])
    if isinstance(data.get("systems"), list):
        return "eval"
    if "gain_kept" in data:
        return "distil"
    return None
