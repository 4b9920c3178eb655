"""A small pool of OS threads for calls that have no non-blocking form (DNS).

``run_in_thread(fn, *args)`` suspends only the calling greenlet: a worker
thread calls ``fn``, then wakes the caller's hub (``run_callback_threadsafe``),
which resumes the caller with the result.  Workers are made on demand, up to
``MAX_WORKERS``, and live as daemon threads.

The workers are real OS threads even when fastco.monkey patched ``_thread``,
``threading`` and ``queue``: this module binds the stdlib's originals when it
is imported (before any patching).
"""

from __future__ import annotations

import os
from _queue import SimpleQueue
from _thread import allocate_lock, get_ident, start_new_thread
from collections.abc import Callable
from typing import Any

from fastco._greenlet import getcurrent
from fastco.hub import Hub, get_hub

__all__ = ["MAX_WORKERS", "run_in_thread", "worker_count"]

MAX_WORKERS = 8


class _Job:
    __slots__ = ("fn", "args", "hub", "waiter", "ok", "result", "cancelled")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], hub: Hub,
                 waiter: Any) -> None:
        self.fn = fn
        self.args = args
        self.hub = hub
        self.waiter = waiter
        self.ok = False
        self.result: Any = None
        self.cancelled = False


class _Pool:
    def __init__(self) -> None:
        self.jobs: SimpleQueue[_Job] = SimpleQueue()
        self.workers = 0
        self.idle = 0
        self.lock = allocate_lock()
        self.idents: set[int] = set()

    def submit(self, job: _Job) -> None:
        with self.lock:
            if self.idle == 0 and self.workers < MAX_WORKERS:
                self.workers += 1
                start_new_thread(self._work, ())
        self.jobs.put(job)

    def _work(self) -> None:
        self.idents.add(get_ident())
        while True:
            with self.lock:
                self.idle += 1
            job = self.jobs.get()
            with self.lock:
                self.idle -= 1
            try:
                job.result = job.fn(*job.args)
                job.ok = True
            except BaseException as exc:  # noqa: BLE001 - handed to the waiter
                job.result = exc
            job.fn = job.args = None  # type: ignore[assignment]
            try:
                job.hub.run_callback_threadsafe(_deliver, job)
            except Exception:  # noqa: BLE001 - the hub went away: nobody to tell
                pass           # (the worker must survive for the next job)
            del job


def _deliver(job: _Job) -> None:
    # In the hub: the job is done; resume its waiter unless it gave up.
    job.hub.end_thread_job()
    if not job.cancelled:
        job.hub.schedule(job.waiter, job)


_pool = _Pool()


def _after_fork() -> None:
    global _pool
    _pool = _Pool()  # the workers did not survive the fork


os.register_at_fork(after_in_child=_after_fork)


def worker_count() -> int:
    """How many worker threads the pool started (they live until the process ends)."""
    return _pool.workers


def run_in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` in a worker thread, suspending only the current greenlet."""
    if get_ident() in _pool.idents:
        return fn(*args)  # already in a worker (a patched call inside a job)
    hub = get_hub()
    cur = getcurrent()
    if cur is hub:
        return fn(*args)  # the hub cannot wait: do it here
    job = _Job(fn, args, hub, cur)
    hub.start_thread_job()
    try:
        _pool.submit(job)
    except BaseException:
        hub.end_thread_job()
        raise
    try:
        hub.wait(cur)
    except BaseException:
        job.cancelled = True
        raise
    if job.ok:
        return job.result
    raise job.result
