"""Typed errors shared by every part of gemfuse.

Each carries enough context (model name, HTTP status, the provider's own message) for a user to act on it,
and never a secret: upstream messages are scrubbed before they are stored.
"""

from __future__ import annotations


class GemfuseError(Exception):
    """Base class of every error gemfuse raises on purpose."""


class ConfigError(GemfuseError):
    """A config file or a model spec is wrong; the message names the file and key."""


class SettingError(ConfigError):
    """A value given to a function, or as a command-line option, that cannot be used (or one that is missing:
    `value` None). `str()` names the setting as the Python API spells it (`to = 'x': ...`); the command line shows
    its option instead (`--to 'x': ...`, cli.py)."""

    def __init__(self, setting: str, value: object, advice: str, *, option: str | None = None):
        self.setting, self.value, self.advice = setting, value, advice
        self.option = option or "--" + setting.replace("_", "-")
        super().__init__(self._said(f"{setting} ="))

    def _said(self, name: str) -> str:
        if self.value is None:
            return f"{name.removesuffix(' =')}: {self.advice}"
        shown = repr(self.value) if isinstance(self.value, str) else str(self.value)
        return f"{name} {shown}: {self.advice}"

    def for_command_line(self) -> str:
        return self._said(self.option)


class MessageError(GemfuseError, ValueError):
    """A chat message or one of its parts is malformed; the message names the part."""


class UnknownModelError(ConfigError, KeyError):
    """A model name that is not configured; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence
        return str(self.args[0]) if self.args else ""


class ModelError(GemfuseError):
    """A model call failed. `reason` is a short machine-readable tag used by traces and the server."""

    reason = "error"

    def __init__(self, message: str, *, model: str | None = None, status: int | None = None,
                 provider_message: str | None = None, retry_after: float | None = None):
        self.model = model
        self.status = status
        self.provider_message = provider_message
        self.retry_after = retry_after
        prefix = f"{model}: " if model else ""
        suffix = f" (HTTP {status})" if status else ""
        super().__init__(f"{prefix}{message}{suffix}")


class AuthError(ModelError):
    reason = "auth"


class RateLimitError(ModelError):
    reason = "rate_limit"


class ModelTimeoutError(ModelError, TimeoutError):
    reason = "timeout"


class BadRequestError(ModelError):
    reason = "bad_request"


class UpstreamError(ModelError):
    """The provider failed (5xx, a connection error, a cut stream or a body that is not valid JSON)."""

    reason = "upstream"


class InvalidAnswerError(UpstreamError):
    """The provider's answer broke the request's tool set or JSON schema, and so did its answer to one repair."""

    reason = "invalid_answer"


class UnsupportedInputError(ModelError):
    """The model cannot take this input (an image sent to a text-only model, say)."""

    reason = "unsupported_input"


class ModelLoadError(ModelError):
    """Local weights could not be found or loaded."""

    reason = "load"
