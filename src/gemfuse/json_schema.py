"""JSON schemas as answers' contracts: is it a schema, what a local grammar can enforce, does an answer satisfy it.

Local backends turn a schema into a grammar the sampler obeys (llguidance, on both), which skips a few
keywords. A strict request with a keyword the grammar skips is refused naming it
(the answer could break it); a loose one is answered, validated after, and what was not enforced is said.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any

from pydantic import AfterValidator

from .errors import MessageError

JSON_OBJECT: dict[str, Any] = {"type": "object"}  # response_format json_object
# How both local backends decode a schema (llguidance: transformers' logits, llama.cpp's sampler): keywords it
# cannot enforce are skipped, and JSON is compact (free whitespace lets a weak model pad an answer to max_tokens).
GUIDANCE: Any = {"lenient": True, "whitespace_flexible": False}


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


def _a_schema(value: dict[str, Any]) -> dict[str, Any]:
    check_schema(value)
    return value


JsonSchema = Annotated[dict[str, Any], AfterValidator(_a_schema)]  # a field that must hold a JSON schema


def unenforced(schema: dict[str, Any]) -> list[str]:
    """The keywords the local grammar skips (llguidance's own list), e.g. ['if', 'uniqueItems']."""
    return list(_unenforced(json.dumps(schema, sort_keys=True)))


@functools.lru_cache(maxsize=256)  # asked on every request with a schema: compiled once per schema
def _unenforced(schema_text: str) -> tuple[str, ...]:
    import llguidance

    grammar = llguidance.LLMatcher.grammar_from_json_schema(json.loads(schema_text), defaults=GUIDANCE)
    _, warnings = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    found: list[str] = []
    for warning in warnings:
        if warning.startswith("Unimplemented keys:"):
            found += [k for k in json.loads(warning.split(":", 1)[1]) if k not in found]
    return tuple(found)


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
    """What is wrong with this answer against the schema ("is not JSON (...)", "breaks the schema: ..."), or None."""
    try:
        value = parse_json(text)
    except MessageError as exc:
        return str(exc).removeprefix("the answer ")
    problem = validate(value, schema)
    return f"breaks the schema: {problem}" if problem else None
