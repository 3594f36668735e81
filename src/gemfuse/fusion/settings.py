"""The fusion settings, defined once: every FusionPreset field but the pool is a setting a caller may give per
request. `gemfuse ask` options, `fuse()` keywords and the server's `fusion` block are all generated from
FusionPreset's fields here, so they cannot drift. Unset (None) means "inherit from the preset"; the one
default of each setting is FusionPreset's own.
"""

from __future__ import annotations

import copy
import typing
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, create_model
from pydantic.fields import FieldInfo

from ..models.base import GenerateOptions
from .preset import FusionPreset

NOT_SETTINGS = ("pool", "description")


def setting_fields() -> dict[str, FieldInfo]:
    return {name: field for name, field in FusionPreset.model_fields.items() if name not in NOT_SETTINGS}


def optional_fields() -> dict[str, tuple[Any, FieldInfo]]:
    """Each setting as an optional field with the preset's own constraints and description, default None."""
    fields: dict[str, tuple[Any, FieldInfo]] = {}
    for name, field in setting_fields().items():
        optional = copy.copy(field)
        optional.default, optional.default_factory = None, None
        fields[name] = (Optional[field.annotation], optional)  # noqa: UP045  (an annotation object, not syntax)
    return fields


def settings_model(name: str, **extra: Any) -> type[BaseModel]:
    """A pydantic model holding every setting (all optional) plus `extra` fields."""
    fields: dict[str, Any] = {**extra, **optional_fields()}
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


FusionSettings = settings_model("FusionSettings")


def options_set(options: GenerateOptions | None) -> dict[str, Any]:
    """The answer length and temperature a caller set on a request to a fusion (unset ones inherit the
    preset's): the one rule for the server and a fusion asked as a model."""
    if options is None:
        return {}
    return {k: getattr(options, k) for k in ("max_tokens", "temperature")
            if k in options.model_fields_set and getattr(options, k) is not None}


def asked_of_members(options: GenerateOptions | None) -> dict[str, Any]:
    """What a request to a fusion asks of every member: its tools and schema (kept by the fused answer too), and
    the sampling a preset has no setting for (top_p where a member sets none, stop)."""
    if options is None:
        return {}
    sampling = {k: getattr(options, k) for k in ("top_p", "stop") if k in options.model_fields_set}
    return {"tools": options.tools, "json_schema": options.json_schema, "json_strict": options.json_strict,
            "sampling": sampling or None}


def given_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The settings actually given: known names with a value."""
    known = setting_fields()
    return {k: v for k, v in values.items() if k in known and v is not None}


def plain_type(annotation: Any) -> type:
    """int / float / str / bool for a setting's annotation (a Literal is a str; the preset checks its values)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    first = args[0]
    if typing.get_origin(first) is typing.Annotated:  # MaxTokens, Temperature: the type under the bounds
        first = typing.get_args(first)[0]
    if typing.get_origin(first) is typing.Literal:
        return str
    if any(a is str or typing.get_origin(a) is not None for a in args):  # str | Member etc.
        return str
    return first if isinstance(first, type) else str
