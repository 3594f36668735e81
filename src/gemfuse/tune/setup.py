"""Everything a run needs before its first step, built once and then read only: the data checked and planned,
the base loaded on its device in its dtype and wrapped with LoRA, the optimizer and schedule, the loss, and the
memory estimate. `setup(config)` builds it; the loop (loop.py) runs it."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..data.collate import Collator, length_grouped_batches
from ..data.schema import Example
from ..data.sources import read_rows
from ..data.target import Target, load_target
from ..data.validate import validate_examples
from ..devices import pick_device, training_dtype
from ..errors import ConfigError
from .base import Base, load_for_training, resolve_base
from .batches import Plan, encode_rows, row_lengths
from .checkpoint import checkpoints, trainable_weights
from .compiled import check_compilable, compile_layers
from .config import TuneConfig
from .guests import after_lora, before_lora, frozen_head_parts
from .lora import apply_lora
from .loss import full_logits_loss, supervised_loss
from .memory import Estimate, estimate, start_measuring
from .run_folder import is_run
from .runtime import DataError, distributed, make_optimizer, schedule_factor, seed_everything
from .shard import check_shardable, load_whole, shard_model, wants_sharding

# oneDNN (bf16 matmuls on a CPU) keeps a kernel, with its buffers, for every shape it met, up to 1024 by default;
# batches of ever new lengths grew a run's memory by ~0.3 GiB in 30 steps of Gemma 3 270M. One step of it meets
# some 40 shapes: with 8 kept, kernels were remade all the time (a step 20% slower); 64 hold a step's shapes.
ONEDNN_CACHE = "64"

if TYPE_CHECKING:
    import torch
    from peft import PeftModel

Loss = Callable[[dict], tuple[Any, int]]  # a micro-batch -> (summed loss over supervised tokens, their count)


class StepPlan(Protocol):
    """Which micro-batches make step k (batches.Plan; a toy loop gives its own)."""

    def step_batches(self, step: int) -> list[dict | None]: ...


@dataclass(frozen=True)
class RunInfo:
    """What describes a real run, for its run folder and its progress display (handed to them whole, nothing
    optional): where it is written, the base and its data target, the rows, the LoRA modules, the memory
    estimate and how activations are kept."""

    run_dir: Path
    resuming: bool
    base: Base
    target: Target
    train_rows: list[Example]
    val_rows: list[Example]
    modules: list[str]
    estimate: Estimate
    checkpointing: bool  # activations recomputed in backward (the config's choice, or "auto"'s)
    peak_from_start: bool  # the measured peak is this run's own (reset as it began)
    resume_from: Path | None = None  # the checkpoint a resumed run continues from (None: none was written)


@dataclass(frozen=True)
class Setup:
    """What the loop reads: all a loop needs (a toy model fills only these), and `run`, the description of a
    real run (None for a toy)."""

    config: TuneConfig
    model: PeftModel  # the base wrapped with LoRA (a toy loop gives any module)
    params: list[torch.nn.Parameter]  # the trainable parameters
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    plan: StepPlan
    loss: Loss
    total: int  # optimizer steps
    device: str = "cpu"
    dtype: torch.dtype | None = None
    validation: Callable[[], Iterator[dict]] | None = None  # this rank's validation micro-batches
    rank: int = 0
    world: int = 1
    sharded: bool = False  # FSDP2: layers' weights are DTensors, each rank holding its shard (shard.py)
    run: RunInfo | None = None
    began: float = field(default_factory=time.perf_counter)  # the run's clock (set-up included)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def trainable(self) -> int:
        return sum(p.numel() for p in self.params)


def setup(config: TuneConfig, resume: bool = False, warn: Callable[[list], None] = lambda issues: None) -> Setup:
    """Check the data (every error with file and line before anything loads), load and wrap the base, and make
    the optimizer; `warn` receives the data's warnings. Each step is a builder below, in this order."""
    began = time.perf_counter()
    run_dir = Path(config.out).expanduser()
    place = placement(config, run_dir, resume)
    base = resolve_base(config.model)
    target = load_target(str(base.folder))
    data = plan_data(config, target, place, warn)
    found = checkpoints(run_dir) if resume else []
    resume_from = found[-1] if found else None  # looked up once: FSDP loads it before sharding, the loop restores it
    model, modules, sharded = build_model(config, base, target, place, resume_from)
    params, optimizer, scheduler = build_optimizer(model, config, place, data.total, sharded)
    memory, checkpointing = plan_memory(model, config, place, data.plan)
    data.plan.share_prefixes = shares_prefixes(config, checkpointing, sharded)
    loss = training_loss(model)
    if config.train.compile:  # last: the guests' checks above run the layers as they are
        compile_layers(model)
    return Setup(config=config, model=model, params=params, optimizer=optimizer, scheduler=scheduler,
                 plan=data.plan, loss=loss, total=data.total, device=place.device, dtype=place.dtype,
                 validation=data.validation, rank=place.rank, world=place.world, began=began, sharded=sharded,
                 run=RunInfo(run_dir, resume, base, target, data.train_rows, data.val_rows, modules, memory,
                             checkpointing, place.measured_from_start, resume_from))


@dataclass(frozen=True)
class Placement:
    """Where this process trains: its rank among `world`, its device and dtype."""

    rank: int
    world: int
    device: str
    dtype: torch.dtype
    measured_from_start: bool  # the device's peak was reset for this run


def placement(config: TuneConfig, run_dir: Path, resume: bool) -> Placement:
    """This process's rank, device and dtype, with what must be refused before anything loads (a run folder
    already used, a compile without its compiler, more processes than GPUs); threads and seeds set."""
    import torch

    rank, world, local_rank = distributed()
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    if rank == 0 and not resume:  # the other ranks would see the folder rank 0 is already writing
        check_run_folder(run_dir)
    device = pick_device(config.train.device)
    if config.train.compile:
        check_compilable(device)
    measured_from_start = start_measuring(device)
    if device == "cpu":  # read by oneDNN when it makes its first kernel: see ONEDNN_CACHE
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_CACHE)
    if world > 1:
        device = init_distributed(rank_device(device, local_rank, world))  # refused before anything loads
    dtype = training_dtype(device.split(":")[0], config.train.dtype)
    seed_everything(config.train.seed)
    return Placement(rank, world, device, dtype, measured_from_start)


@dataclass(frozen=True)
class DataPlan:
    """The rows checked and split, the plan of each step's micro-batches and this rank's validation batches."""

    train_rows: list[Example]
    val_rows: list[Example]
    plan: Plan
    total: int  # optimizer steps
    validation: Callable[[], Iterator[dict]] | None


def plan_data(config: TuneConfig, target: Target, place: Placement, warn: Callable[[list], None]) -> DataPlan:
    """Read and check the rows, plan the steps, encode the validation rows; the tokenizer is let go when the
    loop will not need it."""
    train_rows, val_rows = read_data(config, target, warn)
    collator = Collator(target, config.data.max_length)
    train = config.train
    plan = Plan(train_rows, collator, train.batch_size, train.grad_accum, train.seed, config.data.packing,
                place.rank, place.world, config.data.padding_free)
    total = train.max_steps or max(1, round(train.epochs * plan.steps_per_epoch))
    val_lengths = row_lengths(val_rows, collator)
    groups = length_grouped_batches(val_lengths, train.batch_size, seed=0) if val_rows else []
    val_encoded = encode_rows(val_rows, collator, sum(val_lengths))

    def validation() -> Iterator[dict]:
        for group in groups[place.rank::place.world]:
            yield plan.join([val_encoded[i] for i in group]) if val_encoded is not None else \
                plan.collate([val_rows[i] for i in group])

    if not plan.needs_tokenizer and (val_encoded is not None or not val_rows):
        target.release()  # every row is encoded: the loop never tokenises
    return DataPlan(train_rows, val_rows, plan, total, validation if val_rows else None)


def build_model(config: TuneConfig, base: Base, target: Target, place: Placement,
                resume_from: Path | None) -> tuple[Any, list[str], bool]:
    """(model, its LoRA modules, sharded): the base loaded in its dtype, the guests let in around LoRA, and under
    FSDP the trainable weights of `resume_from` loaded whole before the layers are sharded."""
    train = config.train
    sharded = wants_sharding(train.shard, base.folder, place.device, place.world)
    if sharded:
        check_shardable(train.quantize, place.world, train.compile)
    model = load_for_training(base, "cpu" if sharded else place.device, place.dtype, train.quantize)  # shards move
    if train.gradient_checkpointing is True:
        recompute_activations(model)
    before_lora(model, place.device, rows_end_to_end=config.data.padding_free or config.data.packing)
    model, modules = apply_lora(model, target.family, config.lora)
    after_lora(model)
    if sharded:
        if resume_from is not None:
            load_whole(model, trainable_weights(resume_from))
        shard_model(model, place.device, place.dtype)
    return model, modules, sharded


def build_optimizer(model, config: TuneConfig, place: Placement, total: int, sharded: bool):
    """(trainable parameters, optimizer, schedule)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, config, place.device.split(":")[0], fused=not sharded)
    train = config.train
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: schedule_factor(s, total, train.warmup_steps, train.schedule))
    return params, optimizer, scheduler


def plan_memory(model, config: TuneConfig, place: Placement, plan: Plan) -> tuple[Estimate, bool]:
    """(the memory estimate, whether activations are recomputed): under "auto", recomputed when the estimate
    does not fit with them kept."""
    checkpointing = config.train.gradient_checkpointing is True
    memory = estimate(model, config, place.device, place.dtype, plan, checkpointing)
    if config.train.gradient_checkpointing == "auto" and memory.tight():
        recompute_activations(model)
        checkpointing, memory = True, estimate(model, config, place.device, place.dtype, plan, True)
    return memory, checkpointing


def shares_prefixes(config: TuneConfig, checkpointing: bool, sharded: bool) -> bool:
    """Whether padded batches run their rows' shared beginning once (loss.forward): its cache is what the rows
    attend, and recomputed layers (checkpointing) drop a cache; a compiled or sharded layer is left its one call."""
    data = config.data
    return data.shared_prefix and not (checkpointing or config.train.compile or sharded or data.packing
                                       or data.padding_free)


def training_loss(model) -> Loss:
    """The frozen-head loss where it fits the model (a guest), else the model's own logits' loss."""
    parts = frozen_head_parts(model)
    return partial(supervised_loss, model, parts=parts) if parts else partial(full_logits_loss, model)


def recompute_activations(model) -> None:
    """Gradient checkpointing through frozen layers: the inputs carry gradients so the recomputed layers do."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()


def check_run_folder(run_dir: Path) -> None:
    if is_run(run_dir) or (run_dir.exists() and any(run_dir.iterdir())):
        raise ConfigError(f"run folder {run_dir} already holds a run: continue it with "
                          f"`gemfuse tune --resume {run_dir}`, or set out to a new folder")


def rank_device(device: str, local_rank: int, world: int) -> str:
    """This process's device: one GPU per process on CUDA (refused in one line when a node runs more processes
    than it has GPUs); CPU ranks share the CPU; MPS has one device, so one process."""
    import torch

    if device == "cuda":
        gpus = torch.cuda.device_count()
        if local_rank >= gpus:
            raise ConfigError(f"{world} processes but this node has {gpus} CUDA GPU{'s' * (gpus != 1)}: start at "
                              f"most {gpus} per node (torchrun --nproc-per-node {gpus}), or set train.device = 'cpu' "
                              "for CPU processes")
        return f"cuda:{local_rank}"
    if device == "mps":
        raise ConfigError(f"{world} processes on MPS: an Apple GPU takes one training process; start one, or set "
                          "train.device = 'cpu' for CPU processes")
    return device


def init_distributed(device: str) -> str:
    """Join the process group on this rank's device (as `rank_device` placed it)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    return device


def read_data(config: TuneConfig, target: Target, warn: Callable[[list], None]) -> tuple[list, list]:
    cfg = config.data
    train = read_rows(cfg.train, cfg.messages_field)
    val = read_rows(cfg.val, cfg.messages_field) if cfg.val else []
    files = [cfg.train] + ([cfg.val] if cfg.val else [])
    report = validate_examples([train, val] if cfg.val else [train], files, target, max_length=cfg.max_length)
    if not report.ok:
        errors = [i for i in report.issues if i.severity == "error"]
        shown = "\n".join(f"  {i}" for i in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise DataError(f"the training data has {len(errors)} errors; nothing was trained. Fix them "
                        f"(gemfuse data validate shows them all):\n{shown}{more}")
    warn([i for i in report.issues if i.severity == "warning"])
    if not cfg.val and cfg.val_fraction:
        order = list(range(len(train)))
        random.Random(config.train.seed).shuffle(order)
        held = set(order[:max(1, round(len(train) * cfg.val_fraction))])
        val = [e for i, e in enumerate(train) if i in held]
        train = [e for i, e in enumerate(train) if i not in held]
    if not train:
        raise DataError(f"{cfg.train}: no training rows")
    return train, val
