"""Command-line options generated from the fusion settings (gemfuse.fusion.settings), so every preset field is
an option of `gemfuse ask` without being written out twice."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import typer

from ..fusion.settings import plain_type, setting_fields


def with_fusion_options(command: Callable) -> Callable:
    """Add `--min-answers`, `--grace-ms`, ... for every setting the command does not declare itself; their
    values reach the command as `fusion_settings` (only those given)."""
    signature = inspect.signature(command)
    own = set(signature.parameters)
    added = []
    for name, field in setting_fields().items():
        if name in own:
            continue
        flag = "--" + name.replace("_", "-")
        kind = plain_type(field.annotation)
        declared = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
        help_text = (field.description or name.replace("_", " ")) + " [default: the preset's]"
        added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind | None,
                                       default=typer.Option(None, declared, help=help_text, rich_help_panel="Fusion")))
    names = [p.name for p in added]

    @functools.wraps(command)
    def wrapper(**values):
        given = {name: values.pop(name) for name in names}
        return command(**values, fusion_settings={k: v for k, v in given.items() if v is not None})

    kept = [p for p in signature.parameters.values() if p.name != "fusion_settings"]
    wrapper.__signature__ = signature.replace(parameters=kept + added)
    return wrapper
