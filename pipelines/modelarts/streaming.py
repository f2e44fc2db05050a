"""Run a function over items on a few threads and stream the outcomes back, in memory bounded.

Why not `executor.map`: it submits every item up front and keeps every result until
it is consumed, so a slow consumer (the warehouse writing a batch) would let results
pile up without limit. Here workers stop when `buffer` outcomes wait unconsumed, and
keep working while the consumer is busy with earlier ones, so fetching and landing overlap.

The workers are daemon threads, joined for at most `STOP_WAIT` seconds when the
stream is closed: a consumer that fails (the disk is full) must see its error at
once, not after every request in flight ends, and a worker stuck in a request
must never keep the interpreter from exiting.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
import time
from dataclasses import dataclass
from typing import Any

_DONE = object()
STOP_WAIT = 2.0  # seconds a closed stream waits for its workers' current calls


@dataclass
class Outcome:
    item: Any
    value: Any = None
    error: Exception | None = None


def bounded_map(fn: Callable[[Any], Any], items: Iterable, *, workers: int, buffer: int,
                name: str = "fetch") -> Iterator[Outcome]:
    """Outcomes of fn(item) in completion order; an exception is returned, not raised.

    Closing the iterator early (break, an exception in the consumer) stops the workers
    after their current call and waits for them, at most STOP_WAIT seconds.
    """
    workers = max(1, workers)
    pending = iter(items)
    pending_lock = threading.Lock()
    results: queue.Queue = queue.Queue(maxsize=max(1, buffer))
    stop = threading.Event()

    def next_item():
        with pending_lock:
            return next(pending, _DONE)

    def put(outcome) -> None:
        while not stop.is_set():
            try:
                results.put(outcome, timeout=0.1)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            while not stop.is_set():
                item = next_item()
                if item is _DONE:
                    break
                try:
                    outcome = Outcome(item, fn(item))
                except Exception as exc:  # handed to the consumer, who decides
                    outcome = Outcome(item, error=exc)
                put(outcome)
        finally:
            put(_DONE)

    threads = [threading.Thread(target=work, name=f"{name}-{n}", daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    finished = 0
    try:
        while finished < workers:
            outcome = results.get()
            if outcome is _DONE:
                finished += 1
            else:
                yield outcome
    finally:
        stop.set()
        give_up = time.monotonic() + STOP_WAIT
        for thread in threads:
            thread.join(max(0.0, give_up - time.monotonic()))
