"""The stdlib ``queue`` module, cooperative: what fastco.monkey.patch_queue installs.

``Queue``, ``LifoQueue`` and ``PriorityQueue`` are the stdlib's classes (and
subclasses of them: ``isinstance`` checks, ``_put``/``_get`` overrides,
``mutex``, ``not_empty``, ``task_done``/``join``, 3.13's ``shutdown`` all
hold) over a cooperative lock and conditions (fastco.threading), with a
short path for the calls that need not wait.  ``SimpleQueue`` replaces the
stdlib's C one: ``put`` never blocks (it may be called from ``__del__`` or a
signal handler, as documented for the stdlib's), ``get`` suspends only the
calling task.  All of them work between OS threads too.
"""

from __future__ import annotations

import queue as _std
from collections import deque as _deque
from queue import *  # noqa: F403
from queue import Empty, Full
from types import GenericAlias as _GenericAlias
from typing import Any

from fastco._thread import _NOTHING, LockType, _enlist, _wait, _wait_until, _Waiter, _wake_first
from fastco.threading import Condition

__all__ = list(_std.__all__)

# The stdlib's classes, captured before any monkey patching.
_StdQueue = _std.Queue
_StdLifoQueue = _std.LifoQueue
_StdPriorityQueue = _std.PriorityQueue


class _NeverRaised(Exception):
    pass


ShutDown = getattr(_std, "ShutDown", _NeverRaised)   # 3.13+; is_shutdown stays False before


def _check_timeout(timeout: float) -> None:
    # The stdlib's check and message, NaN included: its timed loops stop on
    # "remaining <= 0", never true for NaN, and would spin without a switch.
    if not timeout >= 0:
        raise ValueError("'timeout' must be a non-negative number")


class Queue(_StdQueue):
    """queue.Queue whose blocking ``put``/``get``/``join`` suspend only the calling task."""

    is_shutdown = False   # an attribute of instances from 3.13 on

    def __init__(self, maxsize: int = 0) -> None:
        _StdQueue.__init__(self, maxsize)
        if type(self.mutex) is not LockType:
            self.mutex = LockType()
            self.not_empty = Condition(self.mutex)
            self.not_full = Condition(self.mutex)
            self.all_tasks_done = Condition(self.mutex)

    # put and get are the stdlib's algorithms with the layers of Condition
    # and lock calls folded in, and, for a queue whose storage hooks are the
    # stdlib Queue's (_init/_qsize/_put/_get: a deque), the hooks too.  The
    # mutex is never held across a wait: a waiter registers under it, then
    # releases it and sleeps, and a notify in between finds it registered.
    # Timed waits go to the stdlib's code.

    _plain = True   # the storage hooks are the stdlib Queue's (see __init_subclass__)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._plain = all(getattr(cls, hook) is getattr(_StdQueue, hook)
                         for hook in ("_init", "_qsize", "_put", "_get"))

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item`` in the queue, waiting for room if it is full (see queue.Queue.put)."""
        if block and timeout is not None and self.maxsize > 0:
            _check_timeout(timeout)
            return _StdQueue.put(self, item, block, timeout)
        mutex = self.mutex
        while True:
            if not mutex._try():
                mutex._acquire_slow(None)
            try:
                if self.is_shutdown:
                    raise ShutDown
                maxsize = self.maxsize
                if maxsize <= 0 or (len(self.queue) if self._plain else self._qsize()) < maxsize:
                    if self._plain:
                        self.queue.append(item)
                    else:
                        self._put(item)
                    self.unfinished_tasks += 1
                    if self.not_empty._waiters:
                        _wake_first(self.not_empty._waiters)
                    return None
                if not block:
                    raise Full
                rec = _enlist(self.not_full._waiters, self.not_full._pass_on)
            finally:
                mutex.release()
            _wait(rec, None)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return an item, waiting for one if empty (see queue.Queue.get)."""
        if block and timeout is not None:
            _check_timeout(timeout)
            return _StdQueue.get(self, block, timeout)
        mutex = self.mutex
        while True:
            if not mutex._try():
                mutex._acquire_slow(None)
            try:
                if self._plain:
                    if self.queue:
                        item = self.queue.popleft()
                    else:
                        item = _NOTHING
                elif self._qsize():
                    item = self._get()
                else:
                    item = _NOTHING
                if item is not _NOTHING:
                    if self.not_full._waiters:
                        _wake_first(self.not_full._waiters)
                    return item
                if self.is_shutdown:
                    raise ShutDown
                if not block:
                    raise Empty
                rec = _enlist(self.not_empty._waiters, self.not_empty._pass_on)
            finally:
                mutex.release()
            _wait(rec, None)


class LifoQueue(Queue, _StdLifoQueue):
    """queue.LifoQueue, cooperative (the last item put is the first got)."""


class PriorityQueue(Queue, _StdPriorityQueue):
    """queue.PriorityQueue, cooperative (the lowest item is got first)."""


class SimpleQueue:
    """queue.SimpleQueue: an unbounded FIFO queue whose ``get`` suspends only
    the calling task and whose ``put`` never blocks nor switches."""

    __slots__ = ("_items", "_waiters", "__weakref__")

    def __init__(self) -> None:
        self._items: _deque[Any] = _deque()
        self._waiters: _deque[_Waiter] = _deque()

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item`` in the queue (``block`` and ``timeout`` are ignored)."""
        self._items.append(item)
        if self._waiters:
            _wake_first(self._waiters)

    def put_nowait(self, item: Any) -> None:
        """put(item)."""
        self.put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the first item; if empty, wait for one
        (``queue.Empty`` without ``block``, or after ``timeout`` seconds)."""
        if self._items:
            try:
                return self._items.popleft()
            except IndexError:
                pass   # another OS thread took it
        if not block:
            raise Empty
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        item = _wait_until(self._take, self._waiters, self._lost, timeout)
        if item is _NOTHING:
            raise Empty
        return item

    def _take(self) -> Any:
        try:
            return self._items.popleft()
        except IndexError:
            return _NOTHING

    def _lost(self, _value: object) -> None:
        # A getter that was woken ended its wait otherwise: wake another.
        if self._items and self._waiters:
            _wake_first(self._waiters)

    def get_nowait(self) -> Any:
        """get(block=False)."""
        return self.get(False)

    def empty(self) -> bool:
        """True if the queue is empty (at this instant)."""
        return not self._items

    def qsize(self) -> int:
        """The number of items in the queue (at this instant)."""
        return len(self._items)

    __class_getitem__ = classmethod(_GenericAlias)   # SimpleQueue[int], as the stdlib's

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.SimpleQueue object at {id(self):#x} " \
               f"items={len(self._items)} getters={len(self._waiters)}>"


#: The names monkey.patch_queue replaces in the stdlib ``queue`` module.
PATCHED = ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue"]
