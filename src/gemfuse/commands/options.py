"""Command-line options generated from pydantic settings, so a setting defined once (with its description and
bounds) is an option without being written out twice: every fusion setting (gemfuse.fusion.settings) is an
option of `gemfuse ask`, every EvalSettings field one of `gemfuse eval`."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

import typer
from pydantic.fields import FieldInfo

from ..fusion.settings import plain_type, setting_fields


def flag(setting: str) -> str:
    """A setting's command-line flag: max_tokens -> --max-tokens."""
    return "--" + setting.replace("_", "-")


def bounds(kind: Any) -> dict[str, Any]:
    """typer's min / max from a field or an annotated type's inclusive bounds (ge / le), so the command line
    refuses what the library would (a strict gt is left to the library's own check)."""
    found: dict[str, Any] = {}
    metadata = list(getattr(kind, "metadata", []))
    annotation = getattr(kind, "annotation", kind)
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is typing.Annotated:
            for extra in typing.get_args(arg)[1:]:
                metadata += list(getattr(extra, "metadata", [extra]))
    for item in metadata:
        if getattr(item, "ge", None) is not None:
            found["min"] = item.ge
        if getattr(item, "le", None) is not None:
            found["max"] = item.le
    return found


def is_list(annotation: Any) -> bool:
    return any(typing.get_origin(a) is list for a in (annotation, *typing.get_args(annotation)))


def with_options(fields: Mapping[str, FieldInfo], *, into: str, panel: str | None = None,
                 short: Mapping[str, str] | None = None, default_note: Callable[[FieldInfo], str] | None = None
                 ) -> Callable[[Callable], Callable]:
    """Add an option for every field the command does not declare itself; the values given (None: not given)
    reach the command as the dict `into`. Booleans get --x/--no-x; a list is written a,b,c, or its option repeated."""
    short = short or {}

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        own = set(signature.parameters)
        added = []
        lists: set[str] = set()
        for name, field in fields.items():
            if name in own:
                continue
            option = flag(name)
            kind = plain_type(field.annotation)
            declared = [f"{option}/--no-{option[2:]}" if kind is bool else option, *([short[name]] if name in short else [])]
            note = default_note(field) if default_note else ""
            help_text = (field.description or name.replace("_", " ")) + note
            limits = bounds(field) if kind in (int, float) else {}
            if is_list(field.annotation):  # repeatable: every --set counts, each may also be a,b,c
                lists.add(name)
            annotation = list[str] | None if name in lists else kind | None
            added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                           default=typer.Option(None, *declared, help=help_text,
                                                                rich_help_panel=panel, **limits)))
        names = [p.name for p in added]

        @functools.wraps(command)
        def wrapper(**values):
            given = {name: values.pop(name) for name in names}
            for name in lists & given.keys():
                given[name] = ",".join(given[name]) if given[name] else None
            return command(**values, **{into: {k: v for k, v in given.items() if v is not None}})

        kept = [p for p in signature.parameters.values() if p.name != into]
        wrapper.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def with_fusion_options(command: Callable) -> Callable:
    """`--min-answers`, `--grace-ms`, ... for every fusion setting; unset ones inherit the preset's."""
    return with_options(setting_fields(), into="fusion_settings", panel="Fusion",
                        default_note=lambda field: " (default: the preset's)")(command)


def shown_default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None or value == []:
        return ""
    return f" (default: {','.join(value) if isinstance(value, list) else value})"
