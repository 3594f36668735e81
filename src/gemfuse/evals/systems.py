"""What an eval compares: systems, each a fusion preset. A single model is a one-member vote, so members and
fusion modes go through the same engine, ask the same requests and share their cached answers.

`--systems` takes `members` (every model of --models and --pool), a mode (`vote`, `best-of`, `merge`, `debate`,
`self`) run on --pool with --judge, `fusion/<preset>` from the config, or a model name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError, SettingError
from ..fusion.preset import FUSION_PREFIX, MODE_NAMES, FusionPreset, Member
from ..fusion.registry import ModelRegistry
from ..models.spec import LocalSpec, ModelSpec
from ..shapes import Calibration
from .cache import digest

MODES = MODE_NAMES


@dataclass
class System:
    name: str
    kind: Literal["member", "fusion"]
    preset: FusionPreset
    base: str | None = None  # a fine-tune: the system of its base model
    calibration: Calibration | None = None  # a cascade whose threshold was calibrated on dev: how

    @property
    def model(self) -> str | None:
        return self.preset.members()[0].model if self.kind == "member" else None

    @property
    def key(self) -> str:
        return digest({"kind": self.kind, "preset": self.preset.model_dump(mode="json")})

    @property
    def members(self) -> list[str]:
        return [m.model for m in self.preset.members()]


def build_systems(registry: ModelRegistry, *, models: list[str], pool: list[str], judge: str | None, systems: list[str],
                  max_tokens: int, judge_max_tokens: int, temperature: float, seed: int, extractor: str,
                  swap_check: bool = False, samples: int = 3, rounds: int = 2, certainty: str = "mean",
                  threshold: float | None = None) -> list[System]:
    """The systems to run, members first. Every pool member is also a member system, for the oracle and the
    best-member comparison."""

    def member(name: str) -> Member:
        return Member(model=name, seed=seed)

    # A cascade or a confidence fusion reads the members' log-probabilities; members asked the same way share
    # their calls, and their certainties let the report replay the cascade at any threshold.
    certain = any(entry in ("cascade", "confidence") for entry in systems)

    def member_system(name: str) -> System:
        preset = FusionPreset(pool=[member(name)], mode="vote", max_tokens=max_tokens, temperature=temperature,
                              extractor=extractor, logprobs=certain)
        return System(name, "member", preset)

    chosen: dict[str, System] = {}
    wanted_members = [*models, *pool] if "members" in systems else []
    for entry in systems:
        if entry in MODES:
            wanted_members.extend(pool)  # each pool member on its own: the oracle and the best member need them
        elif entry != "members" and not entry.startswith(FUSION_PREFIX):
            wanted_members.append(entry)  # a model name
    for name in dict.fromkeys(wanted_members):
        registry.spec(name)  # unknown names fail here, with the known ones listed
        chosen[name] = member_system(name)
    for entry in systems:
        if entry in MODES:
            if not pool:
                raise SettingError("pool", None, f"system {entry!r} fuses a pool: give its members, e.g. a,b")
            if entry == "self":
                members = [member(pool[0])]
            else:
                members = [member(m) for m in pool]
            try:
                preset = FusionPreset(pool=members, judge=judge, mode=entry, max_tokens=max_tokens,
                                      judge_max_tokens=judge_max_tokens, temperature=temperature, extractor=extractor,
                                      swap_check=swap_check, samples=samples, rounds=rounds, logprobs=certain,
                                      debate_final="vote" if not judge else "best-of", certainty=certainty,
                                      threshold=threshold)
            except ValueError as exc:
                raise ConfigError(f"eval: system {entry!r}: {_first_error(exc)}") from None
            name = f"self({pool[0]})" if entry == "self" else entry
            chosen[name] = System(name, "fusion", preset)
        elif entry.startswith(FUSION_PREFIX):
            chosen[entry] = System(entry, "fusion", registry.preset(entry))
    for system in chosen.values():
        if system.kind == "fusion":
            registry.check_preset(system.preset)
    _pair_fine_tunes(registry, chosen)
    if not chosen:
        raise SettingError("models", None, "no systems to run; give models, or a pool with systems vote,best-of,...")
    return list(chosen.values())


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    return errors()[0]["msg"].removeprefix("Value error, ") if callable(errors) else str(exc)


def _pair_fine_tunes(registry: ModelRegistry, systems: dict[str, System]) -> None:
    """A fine-tune (a run folder's spec carries its base) is compared with its base model: a member system that
    loads the same weights without an adapter, else the base as the fine-tune runs it (same runtime, template
    and precision), added under the configured name of those weights (a built-in's `gemma-3-270m-hf`, never an
    internal path)."""
    bases: dict[str, str] = {}  # weights (resolved path) -> the member system that loads them without adapter
    for name, system in systems.items():
        spec = registry.spec(name) if system.kind == "member" else None
        if isinstance(spec, LocalSpec) and spec.base is None and not getattr(spec, "adapter", None):
            bases.setdefault(_same_path(spec.path), name)
    for name, system in list(systems.items()):
        found = _finetune(registry.spec(name)) if system.kind == "member" else None
        if found is None:
            continue
        weights, base = found
        key = _same_path(weights)
        if key not in bases:
            base_name = _configured_name(registry, base, key) or weights
            registry.add_spec(base_name, base.model_copy(update={"description": f"the base of {name}, as it runs"}))
            systems[base_name] = System(base_name, "member", system.preset.model_copy(
                update={"pool": [system.preset.members()[0].model_copy(update={"model": base_name})]}))
            bases[key] = base_name
        system.base = bases[key]


def _finetune(spec: ModelSpec) -> tuple[str, LocalSpec] | None:
    """(the base's weights, the base as the fine-tune runs it) for a fine-tune: a run folder, or a configured
    model with an adapter; None for anything else."""
    if not isinstance(spec, LocalSpec):
        return None
    if spec.base is not None and spec.finetune_of is not None:
        return spec.finetune_of, spec.base
    if getattr(spec, "adapter", None):
        return spec.path, spec.model_copy(update={"adapter": None})
    return None


def _configured_name(registry: ModelRegistry, spec: ModelSpec, key: str) -> str | None:
    """The name the config gives these weights (on the fine-tune's backend first), if any."""
    specs = registry.specs()
    same = [n for n, s in specs.items()
            if isinstance(s, LocalSpec) and not getattr(s, "adapter", None) and _same_path(s.path) == key]
    same.sort(key=lambda n: specs[n].backend != spec.backend)
    return same[0] if same else None


def _same_path(path: str) -> str:
    candidate = Path(path).expanduser()
    return str(candidate.resolve()) if candidate.exists() else path
