"""Ordered parallel map with bounded look-ahead, for decoding while the model runs.

Pillow and hashlib release the GIL while they decode and hash, and so does torch while it
computes, so threads overlap decoding of the next batch with inference on this one.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None,
                lookahead: int = 64) -> Iterator[tuple[T, R | None, BaseException | None]]:
    """Yield ``(item, result, error)`` in input order; ``fn`` runs in ``workers`` threads.

    At most ``lookahead`` items are in flight, so memory stays bounded on huge folders.
    An exception from ``fn`` is yielded, not raised, so one bad file never stops the rest.
    Closing the generator early cancels the pending work.
    """
    workers = workers or default_workers()
    pending: deque[tuple[T, Future]] = deque()
    source = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lookalike-decode") as pool:
        try:
            for item in source:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= lookahead:
                    yield _collect(*pending.popleft())
            while pending:
                yield _collect(*pending.popleft())
        finally:
            for _, future in pending:
                future.cancel()


def _collect(item, future: Future):
    try:
        return item, future.result(), None
    except Exception as exc:  # handed to the caller, which records it per file
        return item, None, exc
