"""What the in-process backends share: one worker thread per model, and a bridge from it to asyncio.

A local model object (llama.cpp context, torch module) is not re-entrant and a 2-core CPU gains nothing from
running two generations at once, so each model owns a single worker thread: calls queue in FIFO order and run
off the event loop. Streamed pieces cross to the loop through `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable

_END = object()


class Cancelled(Exception):
    """Raised inside the worker when the consumer went away (client disconnect, deadline)."""


class WorkerBridge:
    """Runs `produce(emit, cancelled)` on the model's thread and yields what it emits, in order."""

    def __init__(self, name: str):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gemfuse-{name}")

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


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error
