"""The one typed config of a fine-tune: a TOML file, `--set section.key=value` on top, defaults below.

Every field is defined once here (with its description) and read by the TOML loader, `--set`, the Python API
and `gemfuse tune --init`; a mistyped key is an error naming the file, the key and the closest valid one.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config import describe_validation_error, field_names, read_toml
from ..errors import ConfigError, SettingError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Section):
    train: str = Field(description="training data: our JSONL, a `datasets` folder, or a .jsonl/.parquet file")
    val: str | None = Field(None, description="validation data, same forms as `train`")
    val_fraction: float = Field(0.0, ge=0, lt=1, description="hold out this share of `train` when no `val` is given")
    max_length: int = Field(1024, ge=16, description="tokens per row; longer rows are cut (never through media)")
    packing: bool = Field(False, description="pack text-only rows into full sequences (rows never see each other)")
    padding_free: bool = Field(False, description="each batch's text rows end to end as one sequence, no padding "
                                                  "(the same rows and gradient as the padded batch)")
    shared_prefix: bool = Field(True, description="rows of a batch that begin alike (a system prompt, tool "
                                                  "definitions) run that beginning once: the same loss and gradient, "
                                                  "less work; not under gradient checkpointing, compile or sharding")
    messages_field: str = Field("messages", description="the column holding the conversation in `datasets` data")


class LoraConfig(Section):
    r: int = Field(16, ge=1, description="LoRA rank")
    alpha: float = Field(32, gt=0, description="LoRA alpha (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: str = Field("language", description="language | language+vision | language+audio | all | a regex "
                                                 "over module names")
    layers: Literal["attention", "all-linear"] = Field("all-linear", description="which linear layers of each block")
    dora: bool = Field(False, description="weight-decomposed LoRA (DoRA)")


class TrainConfig(Section):
    epochs: float = Field(1.0, gt=0, description="passes over the data (ignored when max_steps is set)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    batch_size: int = Field(4, ge=1, description="rows per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(2e-4, gt=0, description="peak learning rate")
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip gradients to this norm; none to skip")
    max_skipped_steps: int = Field(3, ge=1, description="steps in a row whose loss or gradient is not finite (each "
                                                        "skipped, the weights untouched), or whose loss stays far "
                                                        "above the first step's, before the run stops as diverged")
    seed: int = 0
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto", description="recompute activations in backward: less memory, ~30% slower; auto: on only when the "
                            "memory estimate says the run would not fit without it")
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    dtype: Literal["auto", "bfloat16", "float32"] = Field("auto", description="auto: bf16 where the device runs it "
                                                                             "well, else fp32 (never fp16 scaling)")
    quantize: Literal["none", "4bit", "8bit"] = Field("none", description="the frozen base in bitsandbytes 4-bit NF4 "
                                                                      "(QLoRA) or 8-bit, on CUDA or a CPU")
    threads: int | None = Field(None, ge=1, description="torch CPU threads")
    compile: bool = Field(False, description="compile each transformer layer with torch.compile: faster steps once "
                                             "the first ones have compiled (about 30 s on a CPU); same checkpoints")
    shard: Literal["none", "fsdp", "auto"] = Field(
        "none", description="fsdp: under torchrun, each process holds 1/N of the base and the adapters (FSDP2), for "
                            "a model one device cannot hold; auto: fsdp when there are several processes and the "
                            "base's weights would not fit one device")


class RunConfig(Section):
    eval_every: int = Field(0, ge=0, description="validation loss every N steps (0: at the end only)")
    save_every: int = Field(0, ge=0, description="checkpoint every N steps (0: only at the end and on a signal)")
    log_every: int = Field(1, ge=1)
    keep: int = Field(2, ge=1, description="checkpoints kept")
    progress: bool = Field(True, description="a live progress bar on a terminal")


class TuneConfig(Section):
    model: str = Field(description="a model folder, a hub id, or a configured transformers model name")
    out: str = Field("runs/lora", description="the run folder")
    data: DataConfig
    lora: LoraConfig = Field(default_factory=LoraConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _check(self) -> TuneConfig:
        if self.data.packing and self.train.batch_size != 1:
            raise ValueError("data.packing fills each sequence to max_length; set train.batch_size = 1 "
                             "and raise train.grad_accum instead")
        if self.data.packing and self.data.padding_free:
            raise ValueError("data.packing and data.padding_free: choose one (packing already has no padding)")
        return self


def parse_value(text: str) -> Any:
    """`--set` values are TOML values; a bare word that is not one is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingError("overrides", item, "expected section.key=value, e.g. train.lr=1e-4", option="--set")
        node = raw
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SettingError("overrides", item, f"{part} is not a section", option="--set")
        node[leaf] = parse_value(value.strip())
    return raw


def load_tune_config(path: str | Path | None = None, overrides: list[str] | None = None,
                     base: dict | None = None) -> TuneConfig:
    """Defaults < the TOML file (or `base`) < `overrides`. Relative paths are read from the file's folder."""
    raw: dict[str, Any] = dict(base or {})
    where = "--set"
    if path is not None:
        path = Path(path)
        where = str(path)
        raw = read_toml(path, f"tune config {path} does not exist")
    raw = apply_overrides(raw, overrides or [])
    try:
        config = TuneConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, where, known=field_names(TuneConfig))) from None
    if path is not None:
        config = relative_to(config, path.parent)
    return config


def relative_to(config: TuneConfig, folder: Path) -> TuneConfig:
    """Data paths in a config file are read from its folder (the model too, when it names a folder there); `out`
    stays relative to where the command runs, like every other path the user types."""
    def local(value: str | None) -> str | None:
        return value if value is None or Path(value).expanduser().is_absolute() else str(folder / value)

    data = config.data.model_copy(update={"train": local(config.data.train), "val": local(config.data.val)})
    model = str(folder / config.model) if (folder / config.model).exists() else config.model
    return config.model_copy(update={"data": data, "model": model})


INIT = {
    "text": ("gemma-3-270m-hf", "data/train.jsonl", "language", 512),
    "image": ("google/gemma-3-4b-it", "data/images.jsonl", "language+vision", 1024),
    "audio": ("google/gemma-3n-E2B-it", "data/audio.jsonl", "language+audio", 1024),
}


def init_config(kind: str) -> str:
    """A commented starting config for `text`, `image` or `audio` data."""
    if kind not in INIT:
        raise SettingError("kind", kind, "choose text, image or audio", option="--init")
    model, train, targets, max_length = INIT[kind]
    lines = [f"# gemfuse tune config ({kind}). Run: gemfuse tune this.toml [--set train.lr=1e-4 ...]",
             "# Paths are relative to this file. `gemfuse data validate DATA --model MODEL` checks the data first.",
             "", f'model = "{model}"   # {TuneConfig.model_fields["model"].description}',
             f'out = "runs/{kind}-lora"   # {TuneConfig.model_fields["out"].description}', ""]
    values: dict[str, dict[str, Any]] = {"data": {"train": train, "max_length": max_length},
                                         "lora": {"targets": targets}}
    for name in ("data", "lora", "train", "run"):
        section: Any = TuneConfig.model_fields[name].annotation
        lines.append(f"[{name}]")
        for key, info in section.model_fields.items():
            value = values.get(name, {}).get(key, info.default)
            if info.is_required() and value is None:
                value = ""
            text = "# " + key + " = ..." if value is None else f"{key} = {toml_value(value)}"
            note = f"   # {info.description}" if info.description else ""
            lines.append(text + note)
        lines.append("")
    return "\n".join(lines)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)
