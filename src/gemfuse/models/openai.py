"""Any OpenAI-compatible chat endpoint (OpenRouter, vLLM, Ollama, llama.cpp server), over one shared aiohttp
pool per origin (transport.py).

SSE streaming, connect/read/total timeouts, retries with exponential backoff and full
jitter on 429, 5xx and connection errors (honouring Retry-After), and typed errors. The API key is read from
the environment at call time and scrubbed from anything the provider sends back.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import AuthError, BadRequestError, ModelError, ModelTimeoutError, RateLimitError, UpstreamError
from ..json_schema import JSON_OBJECT
from ..messages import Message
from ..prompted_tools import render, with_schema_hint
from ..tool_calls import ToolCall
from . import contract
from .base import Completion, Embeddings, GenerateOptions, Model, StreamChunk, TokenLogprob, Usage, estimate_tokens
from .certainty import TOP_K, from_alternatives
from .spec import ModelSpec
from .transport import Client, Response, TransportError, TransportTimeout

log = logging.getLogger(__name__)
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})


class Timeouts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    connect: float = Field(10.0, gt=0, description="seconds to open a connection")
    read: float = Field(120.0, gt=0, description="seconds of silence allowed between bytes")
    total: float | None = Field(600.0, gt=0, description="seconds for the whole call, retries included")


class OpenAISpec(ModelSpec):
    backend: Literal["openai"] = "openai"
    base_url: str = Field(description="e.g. https://openrouter.ai/api/v1 or http://127.0.0.1:8080/v1")
    model: str = Field(description="the provider's model id")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    timeout: Timeouts = Timeouts()
    max_retries: int = Field(3, ge=0)
    backoff_s: float = Field(0.5, ge=0, description="first retry delay; doubles each retry, with full jitter")
    max_backoff_s: float = Field(30.0, ge=0)
    headers: dict[str, str] = Field(default_factory=dict)
    modalities: list[Literal["text", "image", "audio"]] = ["text", "image", "audio"]


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def provider_message(body: bytes) -> str:
    """The provider's own error text, from the usual shapes: {"error": {"message"}}, {"error": "..."}, text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:500]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or err)[:500]
        return str(err)[:500]
    return str(data)[:500]


class OpenAIModel(Model):
    backend = "openai"
    spec: OpenAISpec
    Spec = OpenAISpec
    fetches_media_urls = True

    def __init__(self, name: str, spec: OpenAISpec):
        super().__init__(name, spec)
        self.modalities = frozenset(spec.modalities)
        self._client = Client(spec.base_url, spec.timeout.connect, spec.timeout.read)
        self._schema_refused = False  # the endpoint refused response_format once: ask in plain text from then on
        self._tools_refused = False  # it refused tools once: the prompted format (prompted_tools.py) from then on
        self._logprobs_refused = False  # the endpoint refused logprobs once: its answers carry none from then on
        self._top_refused = False  # it refused TOP_K alternatives once: only what a caller asks for from then on

    def __repr__(self) -> str:
        return f"<OpenAIModel {self.name!r} {self.spec.model!r} at {self.spec.base_url}>"

    def where(self) -> str:
        return f"{self.spec.base_url} ({self.spec.model})"

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _api_key(self) -> str | None:
        if not self.spec.api_key_env:
            return None
        key = os.environ.get(self.spec.api_key_env)
        if not key:
            raise AuthError(f"environment variable {self.spec.api_key_env} is not set; export it with your API key",
                            model=self.name)
        return key

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.spec.api_key_env) if self.spec.api_key_env else None
        if key and len(key) >= 4:
            text = text.replace(key, "***")
        return text

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.spec.headers}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _body(self, messages: Sequence[Message], options: GenerateOptions, stream: bool) -> dict[str, Any]:
        tools = options.tools if options.tools is not None and options.tools.tools else None
        if self._tools_refused and (tools or any(m.role == "tool" or m.tool_calls for m in messages)):
            messages = render(messages, tools)  # calls and results as plain turns, the tools in the system turn
        if options.json_schema is not None and self._schema_refused:
            messages = with_schema_hint(messages, options.json_schema)
        body: dict[str, Any] = {"model": self.spec.model, "messages": [m.to_openai() for m in messages],
                                "max_tokens": options.max_tokens, "stream": stream}
        for key in ("temperature", "top_p", "seed"):
            if getattr(options, key) is not None:
                body[key] = getattr(options, key)
        if options.stop:
            body["stop"] = list(options.stop)
        if tools is not None and not self._tools_refused:
            body["tools"] = [tool.to_openai() for tool in tools.tools]
            body["tool_choice"] = tools.choice if isinstance(tools.choice, str) else tools.choice.model_dump()
            if not tools.parallel:
                body["parallel_tool_calls"] = False
        if options.json_schema is not None and not self._schema_refused:
            body["response_format"] = ({"type": "json_object"} if options.json_schema == JSON_OBJECT else
                                       {"type": "json_schema", "json_schema": {"name": "answer", "schema": options.json_schema,
                                                                               "strict": options.json_strict}})
        if options.logprobs and not self._logprobs_refused:
            body["logprobs"] = True
            # the k likeliest tokens give the certainty measures their figures (models/certainty.py)
            top = options.top_logprobs if self._top_refused else max(options.top_logprobs or 0, TOP_K)
            if top:
                body["top_logprobs"] = top
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _error(self, status: int, body: bytes, headers) -> ModelError:
        detail = self._scrub(provider_message(body))
        kwargs: dict[str, Any] = dict(model=self.name, status=status, provider_message=detail)
        text = f"provider said: {detail}" if detail else "provider returned an error"
        if status in (401, 403):
            return AuthError(text, **kwargs)
        if status == 429:
            return RateLimitError(text, retry_after=parse_retry_after(headers.get("retry-after")), **kwargs)
        if status in (408, 504):
            return ModelTimeoutError(text, retry_after=parse_retry_after(headers.get("retry-after")), **kwargs)
        if status >= 500 or status in RETRY_STATUSES:
            return UpstreamError(text, retry_after=parse_retry_after(headers.get("retry-after")), **kwargs)
        return BadRequestError(text, **kwargs)

    def _backoff(self, attempt: int, error: ModelError) -> float:
        if error.retry_after is not None:
            return error.retry_after
        return random.uniform(0, min(self.spec.max_backoff_s, self.spec.backoff_s * 2 ** attempt))

    async def _send(self, build: Callable[[], dict[str, Any]], deadline: float | None,
                    path: str = "chat/completions") -> Response:
        """POST with retries; returns a response with a 2xx status whose body is still to be read. `build` makes
        the body, again after the endpoint refuses a feature (tools, response_format, logprobs or TOP_K
        alternatives): the refusal is remembered and the request goes without it."""
        headers = self._headers()
        body = build()
        payload = json.dumps(body).encode()
        attempt = 0
        while True:
            log.debug("POST %s%s (%s, attempt %d)", self._client.base_url, path, self.spec.model, attempt + 1)
            try:
                response = await self._client.post(path, payload, headers)
            except TransportError as exc:
                error: ModelError = UpstreamError(f"connection failed: {exc}", model=self.name)
            except TransportTimeout as exc:
                if exc.phase == "connect":
                    error = UpstreamError("connection failed: connect timeout", model=self.name)
                else:
                    raise ModelTimeoutError("no response within the read timeout", model=self.name) from None
            else:
                if response.status < 400:
                    return response
                try:
                    detail = await response.read()
                except (TransportError, TransportTimeout):
                    detail = b""
                finally:
                    response.close()
                error = self._error(response.status, detail, response.headers)
                if isinstance(error, BadRequestError) and self._refuse_feature(body):
                    body = build()
                    payload = json.dumps(body).encode()
                    continue
                if response.status not in RETRY_STATUSES:
                    raise error
            if attempt == self.spec.max_retries:
                raise error
            delay = self._backoff(attempt, error)
            if deadline is not None and time.monotonic() + delay > deadline:
                raise error
            await asyncio.sleep(delay)
            attempt += 1

    def _refuse_feature(self, body: dict[str, Any]) -> bool:
        """After a 400: mark the first optional feature the body used as refused (True), or say none was."""
        if "tools" in body and not self._tools_refused:
            self._tools_refused = True  # many endpoints take no tools: the prompted format, the reply parsed
        elif "response_format" in body and not self._schema_refused:
            self._schema_refused = True  # many endpoints take no JSON schema: asked in the prompt, the reply parsed
        elif body.get("top_logprobs") == TOP_K and not self._top_refused:
            self._top_refused = True  # the certainty measures beyond the mean go without alternatives
        elif "logprobs" in body and not self._logprobs_refused:
            self._logprobs_refused = True  # the answer comes without them, and says so (logprobs None)
        else:
            return False
        return True

    def _deadline(self) -> float | None:
        total = self.spec.timeout.total
        return time.monotonic() + total if total else None

    def _total_timeout(self) -> ModelTimeoutError:
        return ModelTimeoutError(f"no complete answer within the total timeout ({self.spec.timeout.total:g} s)",
                                 model=self.name)

    @contextlib.asynccontextmanager
    async def _within(self, deadline: float | None):
        """The total timeout around a block; our own typed timeouts pass through unchanged."""
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                yield
        except TimeoutError as exc:
            if isinstance(exc, ModelTimeoutError):
                raise
            raise self._total_timeout() from None

    @staticmethod
    def _usage(reported: dict | None, messages: Sequence[Message], text: str) -> Usage:
        """The provider's counts, or an estimate flagged as such when it sent none."""
        if reported and reported.get("prompt_tokens") is not None:
            return Usage(int(reported.get("prompt_tokens") or 0), int(reported.get("completion_tokens") or 0))
        return Usage(sum(estimate_tokens(m.text) for m in messages), estimate_tokens(text), estimated=True)

    # -- the interface ---------------------------------------------------------------------------------------
    async def generate(self, messages: Sequence[Message], options: GenerateOptions | None = None) -> Completion:
        """The answer; one with tools or a schema in force is held to them (contract.py)."""
        options = options or GenerateOptions()
        self.check_input(messages)
        if contract.in_force(options):
            return await contract.checked(self._generate, messages, options, self.name)
        return await self._generate(messages, options)

    async def _generate(self, messages: Sequence[Message], options: GenerateOptions) -> Completion:
        start = time.perf_counter()
        deadline = self._deadline()
        async with self._within(deadline):
            response = await self._send(lambda: self._body(messages, options, stream=False), deadline)
            try:
                payload = await response.read()
            except TransportTimeout:
                raise ModelTimeoutError("response body stalled past the read timeout", model=self.name) from None
            except TransportError as exc:
                raise UpstreamError(f"response cut: {exc}", model=self.name) from None
            finally:
                response.close()
        try:
            data = json.loads(payload)
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            calls = [ToolCall.from_openai(c) for c in choice["message"].get("tool_calls") or []]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise UpstreamError(f"malformed response body: {self._scrub(payload[:200].decode('utf-8', 'replace'))!r}",
                                model=self.name, status=response.status) from None
        return Completion(text=text, model=self.name, finish_reason=choice.get("finish_reason"),
                          usage=self._usage(data.get("usage"), messages, text), latency_s=time.perf_counter() - start,
                          logprobs=_logprobs(choice, options.top_logprobs) if options.logprobs else None,
                          tool_calls=calls or None)

    async def stream(self, messages: Sequence[Message], options: GenerateOptions | None = None
                     ) -> AsyncIterator[StreamChunk]:
        options = options or GenerateOptions()
        self.check_input(messages)
        if contract.in_force(options):  # checked whole before any of it is sent on
            answer = await self.generate(messages, options)
            if answer.text:
                yield StreamChunk(text=answer.text)
            yield StreamChunk(finish_reason=answer.finish_reason or "stop", usage=answer.usage,
                              logprobs=answer.logprobs, tool_calls=answer.tool_calls, notes=answer.notes or None)
            return
        deadline = self._deadline()
        async with self._within(deadline):
            response = await self._send(lambda: self._body(messages, options, stream=True), deadline)
        at = _loop_time(deadline)  # computed once: the per-line timeout below is on the hot path
        finish, reported, done, produced = None, None, False, []
        try:
            lines = response.lines()
            while True:
                try:
                    async with asyncio.timeout_at(at):
                        line = await anext(lines)
                except StopAsyncIteration:
                    break
                except TransportTimeout:
                    raise ModelTimeoutError("stream stalled past the read timeout", model=self.name) from None
                except TimeoutError:
                    raise self._total_timeout() from None
                except TransportError as exc:
                    raise UpstreamError(f"stream cut mid-way: {exc}", model=self.name) from None
                if not line.startswith("data:"):
                    continue  # SSE comments, event names, keep-alives
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                except ValueError:
                    raise UpstreamError(f"malformed stream event: {self._scrub(data[:200])!r}",
                                        model=self.name) from None
                if not isinstance(event, dict):
                    raise UpstreamError(f"malformed stream event: {self._scrub(data[:200])!r}", model=self.name)
                if "error" in event:
                    raise UpstreamError(f"provider said: {self._scrub(provider_message(data.encode()))}",
                                        model=self.name)
                if event.get("usage"):
                    reported = event["usage"]
                for choice in event.get("choices") or []:
                    delta = (choice.get("delta") or {}).get("content")
                    finish = choice.get("finish_reason") or finish
                    tokens = _logprobs(choice, options.top_logprobs) if options.logprobs else None
                    if delta or tokens:
                        produced.append(delta or "")
                        yield StreamChunk(text=delta or "", logprobs=tokens)
        finally:
            response.close()
        if not done and finish is None:
            raise UpstreamError("stream ended before the answer was complete", model=self.name)
        yield StreamChunk(finish_reason=finish or "stop", usage=self._usage(reported, messages, "".join(produced)))

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """The endpoint's /embeddings, with the same retries and timeouts as its chat."""
        deadline = self._deadline()
        async with self._within(deadline):
            response = await self._send(lambda: {"model": self.spec.model, "input": list(texts),
                                                 "encoding_format": "float"}, deadline, "embeddings")
            try:
                payload = await response.read()
            finally:
                response.close()
        try:
            data = json.loads(payload)
            rows = sorted(data["data"], key=lambda row: row.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (ValueError, KeyError, TypeError):
            raise UpstreamError(f"malformed embeddings body: {self._scrub(payload[:200].decode('utf-8', 'replace'))!r}",
                                model=self.name) from None
        return Embeddings(vectors, int((data.get("usage") or {}).get("prompt_tokens") or 0))

    async def check(self) -> tuple[bool, str]:
        import httpx  # a one-off GET for `gemfuse models`, outside the shared pool

        try:
            headers = self._headers()
        except AuthError as exc:
            return False, str(exc).removeprefix(f"{self.name}: ")
        try:
            async with httpx.AsyncClient(timeout=3.0) as client:
                response = await client.get(self.spec.base_url.rstrip("/") + "/models", headers=headers)
        except httpx.HTTPError as exc:
            return False, f"unreachable ({type(exc).__name__})"
        if response.status_code in (401, 403):
            return False, f"auth refused (HTTP {response.status_code})"
        return response.status_code < 500, f"HTTP {response.status_code}"

    async def aclose(self) -> None:
        await self._client.aclose()


def _logprobs(choice: dict, asked: int | None) -> list[TokenLogprob] | None:
    """A choice's `logprobs.content` as tokens, each with its certainty figures read from the alternatives and
    then only the `asked` likeliest of them kept; None when the endpoint sent none."""
    content = (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
    if not isinstance(content, list):
        return None
    tokens = [from_alternatives(TokenLogprob.from_openai(t)) for t in content if isinstance(t, dict)]
    for token in tokens:
        token.top = token.top[:asked or 0]
    return tokens


def _loop_time(deadline: float | None) -> float | None:
    """Convert a time.monotonic() deadline to the running loop's clock for asyncio.timeout_at."""
    if deadline is None:
        return None
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
