"""Running a function over a list in worker threads, results in the list's order, a bounded number of items ahead
of the caller: decoding for ``sdd score`` and ``sdd robustness``, and preloading a training set."""

from __future__ import annotations

import collections
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


def in_order_ahead(
    fn: Callable[[_T], _R], items: Iterable[_T], workers: int, *, thread_name: str
) -> Generator[tuple[_T, _R], None, None]:
    """``(item, fn(item))`` in the order of ``items``, ``fn`` running in ``workers`` threads a bounded number of
    items (2 per worker, at least 2) ahead of the caller; ``workers <= 0``: in the caller's thread.

    Stopped early (Ctrl-C, an error, the caller's ``close()``), the calls not yet started are dropped, not run
    first; the ones already running end in their threads. The caller should ``close()`` the iterator in its
    ``finally``: a generator left to the garbage collector (an exception's traceback holds it) is closed only when
    the traceback is freed, at exit, after every queued call has run.
    """
    if workers <= 0:
        for item in items:
            yield item, fn(item)
        return
    ahead = max(2, 2 * workers)  # bounded look-ahead keeps memory flat on long lists
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name)
    finished = False
    try:
        pending: collections.deque[tuple[_T, Future]] = collections.deque()
        it = iter(items)
        for item in it:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= ahead:
                break
        while pending:
            item, fut = pending.popleft()
            for nxt in it:  # at most one more
                pending.append((nxt, pool.submit(fn, nxt)))
                break
            yield item, fut.result()
        finished = True
    finally:
        # stopped early: the calls not yet started are dropped, not run first (up to 2 per worker); the ones
        # already running end in their threads (their results are not used)
        pool.shutdown(wait=finished, cancel_futures=not finished)
