"""Calls to one in-process model gathered into batches, on the threads that make them (no scheduler thread).

Each call joins the pending list and waits; whichever waiting thread finds the model idle takes every pending
call that can share a batch with the oldest (same batch key, up to `slots`) and runs them as one batch while
the others wait; when it is done the next idle round takes whatever arrived meanwhile. A call whose consumer
left before its batch began is dropped from it. A call with no key (a seed, media) runs alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any


@dataclass(eq=False)
class Call:
    payload: Any
    key: Hashable | None  # calls with equal keys may share a batch; None: alone
    cancelled: threading.Event
    done: bool = False
    error: BaseException | None = None


class Batcher:
    def __init__(self, slots: int, run: Callable[[list[Call]], None]):
        self.slots = slots
        self.run_batch = run  # runs the calls; sets nothing itself: the batcher marks them done
        self.pending: list[Call] = []
        self.busy = False
        self.cond = threading.Condition()

    def submit(self, call: Call) -> None:
        """Run `call` (in a batch); returns when it is done, raising its error."""
        with self.cond:
            self.pending.append(call)
        while True:
            with self.cond:
                while self.busy and not call.done:
                    self.cond.wait()
                if call.done:
                    break
                self.busy = True
                batch = self._take()
            try:
                if batch:
                    self.run_batch(batch)
            except BaseException as exc:  # noqa: BLE001 - every call of the batch hears of it
                for member in batch:
                    member.error = member.error or exc
            finally:
                with self.cond:
                    for member in batch:
                        member.done = True
                    self.busy = False
                    self.cond.notify_all()
        if call.error is not None:
            raise call.error

    def _take(self) -> list[Call]:
        """The oldest live pending call and those that can share its batch (under the lock)."""
        for gone in [c for c in self.pending if c.cancelled.is_set()]:
            self.pending.remove(gone)
            gone.done = True
        if not self.pending:
            return []
        first = self.pending[0]
        if first.key is None:
            batch = [first]
        else:
            batch = [c for c in self.pending if c.key == first.key][: self.slots]
        for member in batch:
            self.pending.remove(member)
        return batch
