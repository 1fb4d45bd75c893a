"""The one way this tool runs AWS calls side by side.

``ThreadPoolExecutor`` used as a context manager waits, on the way out, for every task it was given, queued ones
included; when Ctrl-C or a failure ends the block that is the opposite of what the user asked for, a wait of as
long as every remaining call takes. ``worker_pool`` waits only when the block ended normally; otherwise it drops
what has not started and lets the exception go at once. Calls already in flight are left to their read timeout
(``session.READ_TIMEOUT``) in their threads, and an interrupted command ends without waiting for them
(``loginwatch_org.entry``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class _ContextPool(ThreadPoolExecutor):
    """Runs each task in a copy of its submitter's context (``contextvars``), as asyncio does for its tasks, so
    what the caller set there (a simulated clock's time, for one) follows the work onto the worker thread."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        context = contextvars.copy_context()
        run: Callable[..., T] = context.run
        future: Future[T] = super().submit(run, fn, *args, **kwargs)
        return future


@contextmanager
def worker_pool(max_workers: int) -> Iterator[ThreadPoolExecutor]:
    pool: ThreadPoolExecutor = _ContextPool(max_workers=max_workers)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
