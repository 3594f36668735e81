"""Will it fit? Memory for a model's weights at each precision, its KV cache at a context, the runtime's own
buffers and, for training, LoRA parameters, gradients, optimizer state and activations; then a verdict per
precision and the longest context that fits. From the model's shape alone: no weights are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SettingError
from ..memory import TIGHT, activation_bytes, loss_bytes, system_ram, training_runtime_bytes
from .shape import ModelShape

GB = 10**9
GiB = 2**30
HEADROOM = 0.9  # leave 10% for the allocator, the OS and everything else


@dataclass(frozen=True)
class Precision:
    name: str
    bits: float  # per quantised weight, scales included
    embeddings_bits: float | None = None  # None: embeddings stored like the rest
    devices: tuple[str, ...] = ("cuda", "mps", "cpu")
    how: str = ""

    def weight_bytes(self, shape: ModelShape) -> float:
        rest = shape.params - shape.embedding_params
        embeddings = self.embeddings_bits if self.embeddings_bits is not None else self.bits
        return (rest * self.bits + shape.embedding_params * embeddings) / 8


# Plain widths (every weight at that width: the figures model cards publish), then what the loaders really do.
PRECISIONS = [
    Precision("bf16", 16, how="transformers (default on CUDA and recent CPUs)"),
    Precision("int8", 8, how="any 8-bit format, every weight"),
    Precision("int4", 4, how="any 4-bit format, every weight"),
    Precision("bnb-8bit", 8.0, 16, ("cuda",), "transformers + bitsandbytes LLM.int8 (linear layers; embeddings bf16)"),
    Precision("bnb-4bit", 4.127, 16, ("cuda",), "transformers + bitsandbytes NF4, double quant (QLoRA's)"),
    Precision("torchao-int8", 8.125, 16, ("cpu", "cuda"), "transformers + torchao int8 weight-only"),
]
# llama.cpp's quant types: bits per weight of the block formats (K-quant mixes: their typical average).
GGUF_BITS = {"F16": 16.0, "BF16": 16.0, "Q8_0": 8.5, "Q6_K": 6.56, "Q5_K_M": 5.69, "Q5_0": 5.5, "Q5_1": 6.0,
             "Q4_K_M": 4.85, "Q4_K_S": 4.58, "Q4_1": 5.0, "Q4_0": 4.5, "Q3_K_M": 3.91, "Q2_K": 3.35}
PRECISIONS += [Precision(f"gguf:{name}", bits, how="llama.cpp") for name, bits in GGUF_BITS.items()]


def own_file(shape: ModelShape) -> list[Precision]:
    """A GGUF as it is on disk (llama.cpp maps the file: its size is its weights' memory, which these bits
    per weight reproduce)."""
    if not shape.file_bytes:
        return []
    bits = 8 * shape.file_bytes / max(shape.params, 1)
    return [Precision("file", bits, how=f"llama.cpp, this file as it is ({shape.file_type})")]


@dataclass
class Needs:
    """Bytes one precision needs at the planned context and batch."""

    precision: str
    weights: float
    kv_cache: float
    runtime: float
    training: float = 0.0

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.runtime + self.training


@dataclass
class Row:
    needs: Needs
    how: str
    verdict: str  # "fits" | "too big" | "not on this device"
    max_context: int  # the longest context that fits (0: none)


@dataclass
class Plan:
    shape: ModelShape
    device: str
    memory: float | None
    memory_source: str
    context: int
    batch: int
    train: str | None
    rows: list[Row]
    shards: int = 1  # processes a LoRA run is sharded across: each row is per process
    fewest_shards: int | None = None  # the fewest processes a sharded LoRA run needs on this memory

    def best(self) -> Row | None:
        """The widest precision that fits (the least quality lost)."""
        fitting = [r for r in self.rows if r.verdict == "fits"]
        return max(fitting, key=lambda r: r.needs.weights, default=None)

    def as_dict(self) -> dict:
        best = self.best()
        return {
            "model": self.shape.name, "model_type": self.shape.model_type, "params": self.shape.params,
            "params_exact": self.shape.exact, "embedding_params": self.shape.embedding_params,
            "layers_with_kv_cache": len(self.shape.caches), "max_context": self.shape.max_context,
            "device": self.device, "memory_gb": round(self.memory / GB, 2) if self.memory else None,
            "memory_source": self.memory_source, "context": self.context, "batch": self.batch, "train": self.train,
            "shards": self.shards, "fewest_shards": self.fewest_shards,
            "best": best.needs.precision if best else None, "notes": self.shape.notes,
            "rows": [{"precision": r.needs.precision, "how": r.how, "verdict": r.verdict,
                      "total_gb": round(r.needs.total / GB, 3), "weights_gb": round(r.needs.weights / GB, 3),
                      "kv_cache_gb": round(r.needs.kv_cache / GB, 3), "runtime_gb": round(r.needs.runtime / GB, 3),
                      "training_gb": round(r.needs.training / GB, 3), "max_context": r.max_context}
                     for r in self.rows],
        }


def runtime_bytes(shape: ModelShape, device: str, batch: int) -> float:
    """The runtime's own buffers: vocabulary tables (~128 bytes a token) and compute buffers for a 512-token
    micro-batch through the widest layer; on CUDA, its context (~0.5 GB). Calibrated against llama.cpp's
    measured footprint of the two built-in models (README)."""
    compute = 6 * 512 * max(shape.intermediate, shape.hidden) * 4 * batch
    return shape.vocab * 128 + compute + (0.5 * GB if device == "cuda" else 0)


def training_bytes(shape: ModelShape, context: int, batch: int, rank: int = 16, checkpointing: bool = True,
                   width: int = 2, shards: int = 1) -> float:
    """LoRA on every attention and MLP projection: parameters, gradients and AdamW state in fp32 (16 bytes
    each, 1/shards of them per process when sharded); activations kept for backward (a process's own batch);
    the loss chunk's logits (see gemfuse.memory)."""
    per_layer = rank * (10 * shape.hidden + 3 * shape.intermediate)  # r x (in + out) of q, k, v, o, gate, up, down
    trainable = shape.layers * per_layer * 16 / shards
    tokens = batch * context
    return (trainable + activation_bytes(tokens, shape.layers, shape.hidden, shape.intermediate, checkpointing, width)
            + loss_bytes(tokens, shape.vocab))


def device_memory(device: str) -> tuple[float | None, str]:
    if device == "cpu":
        total = system_ram("MemTotal")
        return (total, "this machine's RAM") if total else (None, "unknown (pass --memory)")
    try:
        import torch

        if device == "cuda" and torch.cuda.is_available():
            return torch.cuda.mem_get_info()[1], "this GPU"
        if device == "mps" and torch.backends.mps.is_available():
            return int(torch.mps.recommended_max_memory()), "this Mac's GPU share of unified memory"
    except ImportError:
        pass
    return None, f"unknown: no {device} here (give its memory: memory_gb, --memory on the command line)"


def sharded_weights(precision: Precision, shape: ModelShape, shards: int) -> float:
    """A process's weights when training is sharded (train.shard = "fsdp"): 1/shards of the layers', and the
    embeddings (and the head tied to them) whole on every process."""
    bits = precision.embeddings_bits if precision.embeddings_bits is not None else precision.bits
    embeddings = shape.embedding_params * bits / 8
    return embeddings + (precision.weight_bytes(shape) - embeddings) / shards


def smallest_shards(shape: ModelShape, precision: Precision, device: str, memory: float, context: int, batch: int,
                    most: int = 64) -> int | None:
    """The fewest processes a sharded LoRA run needs for each to fit `memory` (activations recomputed)."""
    for shards in range(1, most + 1):
        total = (sharded_weights(precision, shape, shards) + training_runtime_bytes(device)
                 + training_bytes(shape, context, batch, shards=shards))
        if total <= HEADROOM * memory:
            return shards
    return None


def plan(shape: ModelShape, *, device: str = "cpu", memory_gb: float | None = None, context: int | None = None,
         batch: int = 1, train: str | None = None, precisions: list[str] | None = None, shards: int = 1) -> Plan:
    if device not in ("cuda", "mps", "cpu"):
        raise SettingError("device", device, "choose cuda, mps or cpu")
    if train not in (None, "lora", "qlora"):
        raise SettingError("train", train, "choose lora or qlora")
    if shards > 1 and train != "lora":
        raise SettingError("shards", shards, "sharding plans a LoRA fine-tune (train = 'lora'); QLoRA's 4-bit base is "
                           "not sharded")
    memory, source = (memory_gb * GB, "given") if memory_gb else device_memory(device)
    context = min(context or min(shape.max_context, 8192), shape.max_context)
    known = PRECISIONS + own_file(shape)
    chosen = [p for p in known if not precisions or p.name in precisions]
    if train == "lora":  # LoRA trains on 16-bit weights; QLoRA on bitsandbytes 4-bit (CUDA)
        chosen = [p for p in chosen if p.name == "bf16"]
    elif train == "qlora":
        chosen = [p for p in chosen if p.name == "bnb-4bit"]
    rows = []
    for precision in chosen:
        llama_cpp = precision.name.startswith("gguf:") or precision.name == "file"
        kv = 0.0 if train else shape.kv_bytes(context, full_windows=llama_cpp) * batch  # training keeps no cache
        runtime = training_runtime_bytes(device) if train else runtime_bytes(shape, device, batch)
        weights = sharded_weights(precision, shape, shards) if shards > 1 else precision.weight_bytes(shape)
        extra = training_bytes(shape, context, batch, checkpointing=False, shards=shards) if train else 0.0
        if train and memory and weights + runtime + extra > TIGHT * memory:
            extra = training_bytes(shape, context, batch, shards=shards)  # as the tuner's "auto": recompute
        needs = Needs(precision.name, weights, kv, runtime, extra)
        if device not in precision.devices:
            rows.append(Row(needs, precision.how, "not on this device", 0))
            continue
        longest = longest_context(shape, needs, memory, batch, train, llama_cpp, shards)
        verdict = "fits" if memory is None or needs.total <= HEADROOM * memory else "too big"
        rows.append(Row(needs, precision.how, verdict if memory else "unknown", longest))
    fewest = smallest_shards(shape, chosen[0], device, memory, context, batch) if train == "lora" and memory \
        and chosen else None
    return Plan(shape, device, memory, source, context, batch, train, rows, shards, fewest)


def longest_context(shape: ModelShape, needs: Needs, memory: float | None, batch: int, train: str | None,
                    llama_cpp: bool, shards: int = 1) -> int:
    """The largest context (up to the model's own limit) whose total fits, by bisection: memory grows with
    context, but not linearly where sliding-window layers stop growing."""
    if memory is None:
        return 0

    def total(context: int) -> float:
        if train:  # at the longest context, activations are recomputed (the tuner's "auto" when tight)
            return needs.weights + needs.runtime + training_bytes(shape, context, batch, shards=shards)
        return needs.weights + needs.runtime + shape.kv_bytes(context, full_windows=llama_cpp) * batch

    low, high = 0, shape.max_context
    if total(high) <= HEADROOM * memory:
        return high
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if total(middle) <= HEADROOM * memory else (low, middle - 1)
    return low
