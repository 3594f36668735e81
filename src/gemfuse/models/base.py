"""The one small interface every backend implements: `stream` (and `generate`, derived from it by default)."""

from __future__ import annotations

import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import BadRequestError, UnsupportedInputError
from ..messages import Message
from ..tool_calls import ToolCall, ToolSet
from .spec import ModelSpec

DEFAULT_MAX_TOKENS = 512

# The sampling bounds, defined once: GenerateOptions, the server's request schema, fusion presets and members,
# eval settings and the command line's options all take these types.
MaxTokens = Annotated[int, Field(ge=1)]
Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(gt=0, le=1)]


class GenerateOptions(BaseModel):
    """Sampling options every backend understands. `temperature=0` means greedy decoding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: MaxTokens = DEFAULT_MAX_TOKENS
    temperature: Temperature | None = None
    top_p: TopP | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: dict | None = Field(None, description="the reply is JSON of this schema (a grammar on local "
                                                       "backends, response_format on remote ones)")
    json_strict: bool = Field(False, description="refuse a schema with keywords the backend cannot enforce")
    json_lenient: bool = Field(False, description="the schema guides the answer but is no contract: a remote answer "
                                                  "that breaks it is handed back as it is (a fusion judge reads any text)")
    tools: ToolSet | None = Field(None, description="function tools the model may call, and the choice among them")
    logprobs: bool = Field(False, description="return each answer token's log-probability")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="and this many most likely alternatives per token")

    @model_validator(mode="before")
    @classmethod
    def _tools_as_a_set(cls, values: Any) -> Any:
        """`tools=[...]` with `tool_choice` and `parallel_tool_calls` beside it, as OpenAI's request spells them."""
        if not isinstance(values, dict) or not {"tool_choice", "parallel_tool_calls"} & values.keys() and \
                not isinstance(values.get("tools"), list | tuple):
            return values
        values = dict(values)
        choice, parallel = values.pop("tool_choice", "auto"), values.pop("parallel_tool_calls", True)
        given = values.get("tools")
        if not isinstance(given, ToolSet):
            values["tools"] = ToolSet(tools=tuple(given or ()), choice=choice, parallel=parallel)
        return values

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_tuple(cls, value):
        if value is None:
            return ()
        return (value,) if isinstance(value, str) else tuple(value)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False  # True when the backend did not report counts and we estimated them

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                     self.estimated or other.estimated)


@dataclass
class TokenLogprob:
    """One answer token, how likely the model found it (natural log), and the likeliest alternatives."""

    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)  # most likely first
    # the step's figures for the certainty measures (models/certainty.py); None: not computed
    confidence: float | None = None  # negative mean log-probability of the step's k likeliest tokens
    self_certainty: float | None = None  # KL divergence of the step's distribution from uniform
    approximate: bool = False  # read from the alternatives an endpoint returned, not the whole distribution

    def to_openai(self) -> dict:
        def entry(token: str, logprob: float) -> dict:
            return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

        return {**entry(self.token, self.logprob), "top_logprobs": [entry(t, lp) for t, lp in self.top]}

    @classmethod
    def from_openai(cls, raw: dict) -> TokenLogprob:
        return cls(str(raw.get("token", "")), float(raw.get("logprob", 0.0)),
                   [(str(t.get("token", "")), float(t.get("logprob", 0.0))) for t in raw.get("top_logprobs") or []])


@dataclass
class StreamChunk:
    """One piece of a streamed answer. The last chunk carries finish_reason and usage."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    latency_s: float | None = None  # set by a replayed answer (an eval's cache): the latency it was measured at
    logprobs: list[TokenLogprob] | None = None  # the tokens of this piece, when asked for
    tool_calls: list[ToolCall] | None = None  # whole calls (a stream sends each call in one piece)
    notes: list[str] | None = None  # what the backend could not enforce of the request's schema


@dataclass
class Completion:
    text: str
    model: str
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    ttft_s: float | None = None  # time to first token, when streamed
    trace: dict | None = None  # a fusion's full trace
    logprobs: list[TokenLogprob] | None = None  # None: not asked for, or the backend gives none
    tool_calls: list[ToolCall] | None = None  # the function calls the model made (finish_reason "tool_calls")
    notes: list[str] = field(default_factory=list)  # e.g. schema keywords the backend did not enforce

    @property
    def certainty(self) -> float | None:
        """Self-certainty: the mean log-probability of the answer's own tokens (0 is sure; None: unknown)."""
        if not self.logprobs:
            return None
        return sum(t.logprob for t in self.logprobs) / len(self.logprobs)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["usage"]["total_tokens"] = self.usage.total_tokens
        return data


@dataclass
class Embeddings:
    """One vector per text, in order, and the tokens read."""

    vectors: list[list[float]]
    prompt_tokens: int


def estimate_tokens(text: str) -> int:
    """A rough count (4 characters a token) for backends that report no usage; flagged as estimated."""
    return max(1, len(text) // 4) if text else 0


async def collect(name: str, chunks: AsyncIterator[StreamChunk],
                  on_text: Callable[[str], object] | None = None) -> Completion:
    """A stream gathered into a Completion (with time to first token); `on_text`, sync or async, sees each piece."""
    start = time.perf_counter()
    pieces: list[str] = []
    ttft = None
    finish, usage, replayed = None, None, None
    logprobs: list[TokenLogprob] | None = None
    calls: list[ToolCall] | None = None
    notes: list[str] = []
    async for chunk in chunks:
        if chunk.tool_calls:
            calls = (calls or []) + chunk.tool_calls
        notes += chunk.notes or []
        if chunk.logprobs is not None:
            logprobs = (logprobs or []) + chunk.logprobs
        if chunk.text:
            if ttft is None:
                ttft = time.perf_counter() - start
            pieces.append(chunk.text)
            if on_text is not None:
                result = on_text(chunk.text)
                if inspect.isawaitable(result):
                    await result
        finish = chunk.finish_reason or finish
        usage = chunk.usage or usage
        replayed = chunk.latency_s if chunk.latency_s is not None else replayed
    text = "".join(pieces)
    return Completion(text=text, model=name, finish_reason=finish,
                      usage=usage or Usage(0, estimate_tokens(text), estimated=True),
                      latency_s=replayed if replayed is not None else time.perf_counter() - start, ttft_s=ttft,
                      logprobs=logprobs, tool_calls=calls, notes=notes)


class Model(ABC):
    """A named model behind one interface. Subclasses implement `stream`; `generate` collects it."""

    backend: ClassVar[str] = "base"
    Spec: ClassVar[type[ModelSpec]] = ModelSpec  # the config fields this backend takes
    # True: image URLs are passed on as they are (a remote API fetches them); False: the server fetches them
    # first, within its own limits, and hands the model the bytes.
    fetches_media_urls: ClassVar[bool] = False
    # True: the weights live in this process (a server with several worker processes would load a copy each).
    in_process: ClassVar[bool] = False
    modalities: frozenset[str] = frozenset({"text"})

    def __init__(self, name: str, spec: ModelSpec | None = None):
        self.name = name
        self.spec = spec  # this backend's Spec, validated from the config (None for fusions and scripted models)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    @abstractmethod
    def stream(self, messages: Sequence[Message], options: GenerateOptions | None = None
               ) -> AsyncIterator[StreamChunk]:
        """Yield text deltas; the last chunk has finish_reason and usage."""

    async def generate(self, messages: Sequence[Message], options: GenerateOptions | None = None) -> Completion:
        return await collect(self.name, self.stream(messages, options))

    def check_input(self, messages: Sequence[Message]) -> None:
        """Refuse media this model cannot take, naming the message, instead of silently dropping it."""
        for i, message in enumerate(messages):
            for part in message.parts:
                if part.type != "text" and part.type not in self.modalities:
                    raise UnsupportedInputError(
                        f"messages[{i}] has an {part.type} part but this model takes only "
                        f"{', '.join(sorted(self.modalities))}", model=self.name)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """One vector per text; backends that can embed override this."""
        raise BadRequestError(f"the {self.backend} backend does not embed; use a GGUF model, an OpenAI-compatible "
                              "endpoint, or the built-in model 'embed'", model=self.name)

    async def check(self) -> tuple[bool, str]:
        """Is the model usable right now? (ok, short detail) for `gemfuse models`."""
        return True, "ok"

    def where(self) -> str:
        """Where the model lives (a path or a URL), for listings."""
        return ""

    async def aclose(self) -> None:
        """Release connections, threads or weights."""
