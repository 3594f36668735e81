"""What the in-process backends share: a thread per slot of each model, and a bridge from them to asyncio.

A call holds one of its model's threads while it runs, so calls past the slots wait in FIFO order, off the event
loop; the backend batches the calls in flight (llama.cpp's engine, or models/batcher.py for transformers).
Streamed pieces cross to the loop through `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from ..messages import Message
from . import structured
from .base import GenerateOptions, Model, StreamChunk
from .spec import LOCAL_SLOTS, LocalSpec

_END = object()


class Cancelled(Exception):
    """Raised inside the worker when the consumer went away (client disconnect, deadline)."""


class WorkerBridge:
    """Runs `produce(emit, cancelled)` on the model's thread and yields what it emits, in order."""

    def __init__(self, name: str, workers: int = 1):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"gemfuse-{name}")

    async def call(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def stream(self, produce: Callable[[Callable[[Any], None], threading.Event], None]) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: Any) -> None:
            if cancelled.is_set():
                raise Cancelled()
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed under us: nobody is listening any more
                cancelled.set()
                raise Cancelled() from None

        def work() -> None:
            try:
                produce(emit, cancelled)
                emit(_END)
            except Cancelled:
                pass
            except BaseException as exc:  # hand every failure to the awaiting side
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, _Failure(exc))
                except RuntimeError:
                    pass

        future = loop.run_in_executor(self._executor, work)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            cancelled.set()
            if not future.done():
                # Let the worker notice; do not block the loop waiting for it.
                future.add_done_callback(lambda f: f.exception())

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class LocalModel(Model):
    """A model that runs in-process: subclasses set `_bridge` and implement `_produce` (on the worker thread)."""
    spec: LocalSpec

    in_process = True
    library: ClassVar[str]  # the import name of the library it needs
    extra: ClassVar[str]  # the gemfuse extra that installs it
    _bridge: WorkerBridge

    def __init__(self, name: str, spec: LocalSpec):
        super().__init__(name, spec)
        self._bridge = WorkerBridge(name, self.slots)

    @property
    def slots(self) -> int:
        return self.spec.concurrency or LOCAL_SLOTS

    def _produce(self, messages: Sequence[Message], options: GenerateOptions, emit, cancelled) -> None:
        raise NotImplementedError

    async def _prepare(self, messages: Sequence[Message]) -> None:
        self.check_input(messages)

    async def _takes_tools(self, messages: Sequence[Message]) -> bool:
        """Whether the model's own chat template renders tools (its calls are then read in its own format)."""
        return False

    async def stream(self, messages: Sequence[Message], options: GenerateOptions | None = None
                     ) -> AsyncIterator[StreamChunk]:
        """Text as it comes; with tools in play the text is held until it is known to be a call or not."""
        options = options or GenerateOptions()
        native = (options.tools is not None or any(m.role == "tool" for m in messages)) and \
            await self._takes_tools(messages)
        plan = structured.plan(messages, options, self.name, native)
        held: list[str] = []
        holding = plan.holds_text
        async for chunk in self._text(plan.messages, plan.options):
            if chunk.finish_reason is not None:
                yield structured.finish(plan, "".join(held), chunk) if holding or plan.schema is not None else chunk
                continue
            held.append(chunk.text)
            if holding and not structured.may_be_a_call("".join(held), plan):  # plain text: stream it from here
                holding = False
                chunk = StreamChunk(text="".join(held), logprobs=chunk.logprobs)
            if not holding:
                yield chunk

    async def _text(self, messages: Sequence[Message], options: GenerateOptions) -> AsyncIterator[StreamChunk]:
        await self._prepare(messages)
        started = False
        async for chunk in self._bridge.stream(lambda emit, cancelled: self._produce(messages, options, emit,
                                                                                     cancelled)):
            if chunk.text and not started:  # templates ending in "Assistant:" leave a leading space
                chunk.text = chunk.text.lstrip()
                started = bool(chunk.text)
                if not started:
                    continue
            yield chunk

    async def check(self) -> tuple[bool, str]:
        if importlib.util.find_spec(self.library) is None:
            return False, f"{self.library} is not installed: pip install 'gemfuse[{self.extra}]'"
        from ..files import check_path

        return check_path(self.spec.path)

    async def aclose(self) -> None:
        self._bridge.shutdown()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class StopFilter:
    """Cuts streamed text at the first stop sequence, holding back any tail that could still become one
    (generate()'s stop_strings halt decoding but leave the stop text in the output)."""

    def __init__(self, stops):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self.stops:
            return text
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending, self.stopped = self.pending[:min(hits)], "", True
            return out
        keep = max((k for s in self.stops for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0)
        cut = len(self.pending) - keep
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out


class quiet_stderr:
    """Silence C-level writes to fd 2 (llama.cpp prints some load notes whatever `verbose` says)."""

    def __enter__(self):
        import os
        import sys

        sys.stderr.flush()
        self._saved = os.dup(2)
        self._null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(self._null, 2)
        return self

    def __exit__(self, *exc):
        import os

        os.dup2(self._saved, 2)
        os.close(self._saved)
        os.close(self._null)
