"""Run a coroutine to its end from synchronous code, including code that a running event loop called (a
Jupyter cell, where `asyncio.run` refuses): there it runs on a helper thread with a loop of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1, thread_name_prefix="gemfuse-sync") as pool:
        return pool.submit(asyncio.run, coroutine).result()
