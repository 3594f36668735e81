"""JSON schemas as answers' contracts: is it a schema, what a local grammar can enforce, does an answer satisfy it.

Local backends turn a schema into a grammar the sampler obeys (llama.cpp's converter, llguidance). Both skip some
keywords; ENFORCED lists those both honour. A strict request with any other keyword is refused naming it (the
answer could break it); a loose one is answered, validated after, and what was not enforced is said.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import MessageError

JSON_OBJECT: dict[str, Any] = {"type": "object"}  # response_format json_object
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
                         "readOnly", "writeOnly"})
ENFORCED = ANNOTATIONS | frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
    "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "pattern", "minLength",
    "maxLength", "format"})
BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})  # enforced on integers only
FORMATS = frozenset({"date", "time", "date-time", "uuid"})
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMAS = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames")


def check_schema(schema: Any) -> None:
    """Raise ValueError saying what is wrong when `schema` is not a JSON schema."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, dict):
        raise ValueError(f"a JSON schema must be an object, got {type(schema).__name__}")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise ValueError(f"not a JSON schema: {exc.message}" + (f" (at {where})" if where else "")) from None


def unenforced(schema: Any, path: str = "") -> list[str]:
    """The keywords a local grammar would skip, each with where it is (`properties.age.multipleOf`)."""
    found: list[str] = []
    if not isinstance(schema, dict):
        return found
    integer = schema.get("type") == "integer"
    for key, value in schema.items():
        here = f"{path}.{key}" if path else key
        if key in BOUNDS:
            if not integer:
                found.append(here)
        elif key == "format":
            if value not in FORMATS:
                found.append(f"{here} ({value})")
        elif key not in ENFORCED:
            found.append(here)
        if key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                found += unenforced(sub, f"{here}.{name}")
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            for i, sub in enumerate(value):
                found += unenforced(sub, f"{here}[{i}]")
        elif key in _SUBSCHEMAS:
            found += unenforced(value, here)
    return found


def validate(instance: Any, schema: dict[str, Any]) -> str | None:
    """Why `instance` fails `schema` (one sentence, naming where), or None when it satisfies it."""
    from jsonschema import Draft202012Validator

    error = next(iter(sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda e: e.path)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message}" + (f" (at {where})" if where else "")


def parse_json(text: str) -> Any:
    """The JSON value an answer holds: the whole text, or the one fenced ```json block; MessageError otherwise."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    try:
        return json.loads(body)
    except ValueError as exc:
        raise MessageError(f"the answer is not JSON ({exc})") from None


def check_answer(text: str, schema: dict[str, Any]) -> str | None:
    """Why this answer does not satisfy the schema, or None."""
    try:
        value = parse_json(text)
    except MessageError as exc:
        return str(exc)
    problem = validate(value, schema)
    return f"the answer {problem}" if problem else None
