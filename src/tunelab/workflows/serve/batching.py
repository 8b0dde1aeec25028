"""The micro-batcher: requests that arrive within a few milliseconds go through the model together.

Written by hand: no maintained library batches requests for a transformers/PEFT model in
process (vLLM, TGI and LoRAX are servers of their own; ``transformers serve``'s continuous
batching has no PEFT adapters). It is small on purpose. One worker thread runs every batch (the
model gets all cores, and torch is not re-entered from two threads); the event loop only
validates, queues and streams. A batch is the oldest waiting job plus every job with the same
``key`` (same model group and adapter lane, same sampling settings) that is waiting, up to the
row limit of its kind. It waits for company while requests keep arriving, each within
``wait_ms`` of the one before, while requests are still being read and validated, and for a
tenth of the last batch's duration after it (its clients may send their next requests), at
most ten times ``wait_ms`` in all. A generation batch runs until
every row is done, and each row stops on its own (its ``max_tokens``, a stop string, its end of
sequence, or its client going away): see ``inference.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tunelab.workflows.serve.targets import GENERATION, Member


@dataclass
class Limits:
    """The batch and request limits (``tunelab serve`` flags)."""

    max_batch_size: int = 16  # generation rows in one batch
    max_classify_batch: int = 64  # classification inputs in one forward pass
    wait_ms: float = 10.0  # a batch waits while requests arrive within this of each other
    max_pending: int = 256  # requests queued or running at once; more get a 429
    max_tokens: int = 1024  # the most tokens one request may ask to generate
    max_inputs: int = 256  # the most inputs one /v1/classify request may hold

    def rows(self, kind: str) -> int:
        return self.max_batch_size if kind == GENERATION else self.max_classify_batch


class Busy(Exception):
    """Too many requests in flight."""


class Arrival:
    """A model request between its first byte and its job's submission: a batch being formed
    waits for these (up to its limit), so that requests sent together run together."""

    def __init__(self, batcher: Batcher):
        self.batcher, self.open = batcher, True

    def depart(self) -> None:
        with self.batcher._cv:
            if self.open:
                self.open = False
                self.batcher._arriving -= 1
                self.batcher._cv.notify_all()


#: the arrival of the request being handled (set by the HTTP guard, ended by ``submit``)
ARRIVAL: contextvars.ContextVar[Arrival | None] = contextvars.ContextVar("arrival", default=None)


@dataclass
class Job:
    """One request (or one prompt of a multi-prompt completion) on its way through a batch."""

    member: Member
    key: tuple
    loop: asyncio.AbstractEventLoop
    size: int = 1  # model rows: classification inputs; 1 for a generation
    prompt_ids: list[int] = field(default_factory=list)
    max_tokens: int = 16
    stops: list[str] = field(default_factory=list)
    sampling: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    features: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False  # set by the event loop when the client went away
    finished: bool = False
    created: float = field(default_factory=time.monotonic)
    events: asyncio.Queue = field(default_factory=asyncio.Queue)

    def emit(self, kind: str, value: Any = None) -> None:
        """Hand an event to the request's coroutine (called from the worker thread)."""
        if kind in ("done", "error"):
            self.finished = True
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))


class Batcher:
    """Queue jobs, form batches, run them on one worker thread."""

    def __init__(self, limits: Limits, runners: dict[str, Any], on_batch=None):
        self.limits, self.runners, self.on_batch = limits, runners, on_batch
        self._cv = threading.Condition()
        self._pending: deque[Job] = deque()
        self._running: list[Job] = []
        self._stopping = False
        self._last_end = 0.0  # when the last batch finished (time.monotonic)
        self._last_took = 0.0  # and how long it ran
        self._arriving = 0  # requests received but not yet submitted (see Arrival)
        self._thread: threading.Thread | None = None

    # -- the event loop's side -----------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="tunelab-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the worker."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def arrival(self) -> Arrival:
        with self._cv:
            self._arriving += 1
        return Arrival(self)

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._stopping:
                raise Busy("the server is shutting down")
            if self.in_flight() >= self.limits.max_pending:
                raise Busy(f"{self.limits.max_pending} requests are in flight; retry later")
            self._pending.append(job)
            self._cv.notify_all()
        arrival = ARRIVAL.get()
        if arrival is not None:
            arrival.depart()

    def cancel(self, job: Job) -> None:
        with self._cv:
            job.cancelled = True
            self._cv.notify_all()

    def in_flight(self) -> int:
        """Jobs queued or running whose client still waits."""
        with self._cv:
            jobs = [*self._pending, *self._running]
        return sum(1 for j in jobs if not j.cancelled and not j.finished)

    def queued(self) -> int:
        with self._cv:
            return sum(1 for j in self._pending if not j.cancelled)

    # -- the worker's side ----------------------------------------------------------------
    def _deadline(self, first: Job, mates: list[Job]) -> float:
        """When the batch of ``first`` starts, full or not (see the module docstring).

        Requests that queued during the last batch thereby join the ones its clients send
        next, instead of two half batches alternating for good."""
        gap = self.limits.wait_ms / 1000
        start = max(first.created, self._last_end)
        last = max(self._last_end, *(j.created for j in mates))
        quiet = start + 10 * gap if self._arriving else last + gap
        held = self._last_end + min(10 * gap, self._last_took / 10)
        return min(max(quiet, held), start + 10 * gap)

    def _next_batch(self) -> list[Job] | None:
        with self._cv:
            while True:
                self._pending = deque(j for j in self._pending if not j.cancelled)
                if self._pending:
                    first = self._pending[0]
                    limit = self.limits.rows(first.member.kind)
                    while not self._stopping and not first.cancelled:
                        mates = [j for j in self._pending if j.key == first.key]
                        left = self._deadline(first, mates) - time.monotonic()
                        if sum(j.size for j in mates) >= limit or left <= 0:
                            break
                        self._cv.wait(left)
                    batch, rows, rest = [], 0, deque()
                    for j in self._pending:
                        fits = not batch or rows + j.size <= limit
                        if j.key == first.key and not j.cancelled and fits:
                            batch.append(j)
                            rows += j.size
                        else:
                            rest.append(j)
                    self._pending, self._running = rest, batch
                    if batch:
                        return batch
                    continue
                if self._stopping:
                    return None
                self._cv.wait()

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            kind, began = batch[0].member.kind, time.monotonic()
            try:
                if self.on_batch is not None:
                    self.on_batch(kind, sum(j.size for j in batch))
                self.runners[kind](batch)
            except Exception as e:  # a fault in the model: these requests fail, serving goes on
                for j in batch:
                    if not j.finished:
                        j.emit("error", e)
            finally:
                with self._cv:
                    self._running = []
                    self._last_end = time.monotonic()
                    self._last_took = self._last_end - began
