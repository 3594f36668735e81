"""Every failure as an OpenAI-shaped error with the right status; never a stack trace or a secret."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from ..errors import (
    AuthError,
    BadRequestError,
    ConfigError,
    GemfuseError,
    MessageError,
    ModelLoadError,
    ModelTimeoutError,
    RateLimitError,
    UnknownModelError,
    UnsupportedInputError,
    UpstreamError,
)
from ..fusion.engine import QuorumError
from .schemas import ErrorType, error_body

log = logging.getLogger("gemfuse.serve")


class QueueFull(GemfuseError):
    """Too many requests are already waiting for this model."""


class HTTPError(GemfuseError):
    def __init__(self, status: int, message: str, type_: ErrorType = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        self.status, self.type, self.param, self.code = status, type_, param, code
        super().__init__(message)


def _param(message: str) -> str | None:
    head = message.split(":", 1)[0].split(" ", 1)[0]
    return head if head.startswith("messages") or head == "fusion" else None


def describe(exc: BaseException) -> tuple[int, dict]:
    """(status, body) for an exception raised while serving a request."""
    if isinstance(exc, HTTPError):
        return exc.status, error_body(str(exc), exc.type, exc.param, exc.code)
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        problem = "unknown field" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
        code = first["type"]
        if param is None and ": " in problem:  # a check across fields names the field it is about first
            param = problem.split(": ", 1)[0]
            code = "unknown_parameter" if problem.endswith(": unknown field") else "invalid_value"
        elif code == "extra_forbidden":
            code = "unknown_parameter"
        return 400, error_body(f"{param}: {problem}" if param and not problem.startswith(param) else problem,
                               "invalid_request_error", param, code)
    if isinstance(exc, UnknownModelError):
        return 404, error_body(str(exc), "not_found_error", "model", "model_not_found")
    if isinstance(exc, UnsupportedInputError):
        return 422, error_body(str(exc), "invalid_request_error", "messages", "unsupported_input")
    if isinstance(exc, MessageError):
        return 400, error_body(str(exc), "invalid_request_error", _param(str(exc)), "invalid_message")
    if isinstance(exc, ConfigError):  # an ad-hoc fusion naming unknown models or a fusion
        return 400, error_body(str(exc), "invalid_request_error", "fusion", "invalid_fusion")
    if isinstance(exc, QueueFull):
        return 429, error_body(str(exc), "rate_limit_error", None, "queue_full")
    if isinstance(exc, RateLimitError):
        return 429, error_body(str(exc), "rate_limit_error", None, "upstream_rate_limited")
    if isinstance(exc, ModelTimeoutError):
        return 504, error_body(str(exc), "timeout_error", None, "upstream_timeout")
    if isinstance(exc, BadRequestError):
        return 400, error_body(str(exc), "invalid_request_error", None, "upstream_bad_request")
    if isinstance(exc, (AuthError, UpstreamError, QuorumError)):
        return 502, error_body(str(exc), "upstream_error", None, getattr(exc, "reason", "fusion_failed"))
    if isinstance(exc, ModelLoadError):
        return 503, error_body(str(exc), "server_error", "model", "model_unavailable")
    if isinstance(exc, GemfuseError):
        return 500, error_body(str(exc), "server_error")
    # a bug: log its type and text only (no traceback, which may carry request data), answer generically
    log.error("unexpected %s while serving a request: %s", type(exc).__name__, exc)
    return 500, error_body("internal server error", "server_error")
