"""The user config file (TOML): named models, fusion presets and the server's settings. Every mistake names file
and key.

    default_model = "smollm2-135m"

    [models.gpt-mini]
    backend = "openai"
    base_url = "https://openrouter.ai/api/v1"
    model = "openai/gpt-4o-mini"
    api_key_env = "OPENROUTER_API_KEY"
    price = { input = 0.15, output = 0.60 }     # USD per million tokens
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError
from .fusion.preset import FUSION_PREFIX, FusionPreset, builtin_presets
from .models.spec import ModelSpec
from .paths import config_path


class ServerSettings(BaseModel):
    """The `[server]` table of the config."""

    model_config = ConfigDict(extra="forbid")
    api_key_env: str = Field("GEMFUSE_API_KEY", description="environment variable holding the bearer key")
    max_body_mb: float = Field(32, gt=0, description="largest request body accepted")
    max_queue: int = Field(16, ge=0, description="requests allowed to wait for one model beyond its concurrency")
    allow_remote_images: bool = Field(False, description="fetch http(s) image URLs for local models")
    remote_image_max_mb: float = Field(10, gt=0)
    allow_private_image_hosts: bool = Field(False, description="let image fetches reach loopback/private addresses")
    capture_dir: str | None = Field(None, description="keep every answered chat request as a training row here")
    capture_models: list[str] = Field(default_factory=list,
                                      description="capture only these models (names or patterns: fusion/*); all if empty")
    capture_max_mb: float = Field(100, gt=0, description="size of one capture file before the next is started")
    runs_dir: str | None = Field("runs", description="the dashboard shows the fine-tune run folders under this folder")
    evals_dir: str | None = Field("evals", description="the dashboard shows the eval reports under this folder")
    distil_dir: str | None = Field("distil", description="the dashboard shows the distil runs under this folder")


# Spec fields gemfuse fills for a fine-tune's run folder (models/finetuned.py); a config file may not set them.
RUN_FOLDER_FIELDS = frozenset({"finetune_of", "base", "trained_weights"})


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_model: str | None = None
    finetune_runtime: Literal["auto", "llamacpp", "transformers"] = Field(
        "auto", description="how a run folder runs as a model; auto: merged into a GGUF on llama.cpp for a text "
                            "model trained on a CPU (faster there), else transformers with its adapter")
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    server: ServerSettings = Field(default_factory=ServerSettings)


def read_toml(path: Path, missing: str) -> dict[str, Any]:
    """A TOML file's table; `missing` is what to say when the file is not there."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(missing) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def describe_validation_error(exc: ValidationError, where: str, prefix: str = "",
                              known: dict[tuple, list[str]] | None = None) -> str:
    """One line per problem: `file: models.gpt.base_ur: unknown key (did you mean base_url?)`."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in (prefix, *loc) if p != "")
        if err["type"] == "extra_forbidden":
            options = (known or {}).get(loc[:-1], [])
            close = difflib.get_close_matches(str(loc[-1]), options, n=1)
            hint = f" (did you mean {close[0]}?)" if close else (f" (known keys: {', '.join(options)})" if options else "")
            lines.append(f"{where}: {key}: unknown key{hint}")
        elif err["type"] == "missing":
            lines.append(f"{where}: {key}: required key is missing")
        else:
            lines.append(f"{where}: {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def field_names(model: type[BaseModel], seen: frozenset[type] = frozenset()) -> dict[tuple, list[str]]:
    """Known keys of a pydantic model and its nested models, by location, for 'did you mean' hints (a model
    nested in itself, like a fine-tune's base spec, is walked once)."""
    known: dict[tuple, list[str]] = {(): sorted(model.model_fields)}
    for name, info in model.model_fields.items():
        sub = info.annotation
        for candidate in getattr(sub, "__args__", (sub,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel) and candidate not in seen | {model}:
                for loc, names in field_names(candidate, seen | {model}).items():
                    known[(name, *loc)] = names
    return known


class Config:
    """The parsed config: validated model specs (built-ins first, the file's own on top) and presets."""

    def __init__(self, path: Path | None, file: ConfigFile, specs: dict[str, ModelSpec],
                 presets: dict[str, FusionPreset] | None = None):
        self.path = path
        self.file = file
        self.specs = specs
        self.presets = presets or {}

    @property
    def server(self) -> ServerSettings:
        return self.file.server

    @property
    def default_model(self) -> str:
        return self.file.default_model or "smollm2-135m"


def load_config(path: str | Path | None = None) -> Config:
    """Read `path` (or $GEMFUSE_CONFIG, or the platform default); a missing default file is fine."""
    from .models.backends import spec_class
    from .models.builtin import builtin_specs

    explicit = path is not None
    file_path = Path(path).expanduser() if path is not None else config_path()
    raw: dict[str, Any] = {}
    if file_path.is_file():
        try:
            raw = tomllib.loads(file_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file_path}: not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{file_path}: not UTF-8 text") from None
    elif explicit:
        raise ConfigError(f"config file {file_path} does not exist")
    try:
        file = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, str(file_path), known=field_names(ConfigFile))) from None

    specs: dict[str, ModelSpec] = dict(builtin_specs())
    for name, body in file.models.items():
        if "run" in body:  # a fine-tune's run folder under a name of its own (gemfuse distil registers these)
            specs[name] = _run_folder_spec(file_path, name, body, file.finetune_runtime)
            continue
        backend = body.get("backend")
        cls = spec_class(backend, where=f"{file_path}: models.{name}.backend")
        reserved = sorted(RUN_FOLDER_FIELDS & set(body))
        if reserved:
            raise ConfigError(f"{file_path}: models.{name}.{reserved[0]}: set by gemfuse for a run folder, not in a "
                              "config; use adapter = \"runs/NAME\" or the run folder's path as the model name")
        try:
            specs[name] = cls.model_validate(body)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, str(file_path), prefix=f"models.{name}",
                                                        known=field_names(cls))) from None
    presets: dict[str, FusionPreset] = dict(builtin_presets())
    for name, body in file.presets.items():
        try:
            presets[name] = FusionPreset.model_validate(body)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, str(file_path), prefix=f"presets.{name}",
                                                        known=field_names(FusionPreset))) from None
    for name, preset in presets.items():
        problem = preset_problem(name, preset, specs, presets)
        if problem:
            raise ConfigError(f"{file_path}: presets.{name}: {problem}")
    known = [*specs, *(FUSION_PREFIX + p for p in presets)]
    if file.default_model and file.default_model not in known:
        raise ConfigError(f"{file_path}: default_model: {unknown_model_message(file.default_model, known)}")
    return Config(file_path if file_path.is_file() else None, file, specs, presets)


def _run_folder_spec(file_path: Path, name: str, body: dict[str, Any], runtime) -> ModelSpec:
    from .models.finetuned import run_spec

    extra = sorted(set(body) - {"run", "description"})
    if extra:
        raise ConfigError(f"{file_path}: models.{name}.{extra[0]}: a run-folder model takes only run and description")
    spec = run_spec(str(body["run"]), runtime)
    if spec is None:
        raise ConfigError(f"{file_path}: models.{name}.run: {body['run']} is not a finished fine-tune run folder "
                          "(manifest.json and adapter/)")
    return spec.model_copy(update={"description": body["description"]}) if body.get("description") else spec


def preset_problem(name: str | None, preset: FusionPreset, specs, presets) -> str | None:
    """Why a preset cannot run: an unknown model, or a fusion inside a fusion (which could loop)."""
    for model in preset.model_names():
        if model.startswith(FUSION_PREFIX) or model in presets or model == name:
            return f"{model!r} is a fusion preset; a fusion cannot call a fusion"
        if model not in specs:
            return unknown_model_message(model, specs)
    return None


def unknown_model_message(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"unknown model {name!r}.{hint} Known models: {', '.join(sorted(known))}."
