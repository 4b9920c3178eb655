"""Synchronisation between tasks of one thread: Event, AsyncResult, Queue,
Lock, Semaphore, BoundedSemaphore, and a Pool that limits concurrent tasks.

Waiters are served first come, first served, and what is given to a waiter
(a queue item, a lock) is handed over directly: it cannot be taken by a
newcomer before the waiter runs.  If the waiter is killed (or its Timeout
fires) before it runs, the hand-over is undone (``Hub.wait``'s ``on_drop``).

These objects are for the tasks of one thread (one hub), like gevent's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from queue import Empty, Full
from time import monotonic
from types import TracebackType
from typing import Any

from fastco._greenlet import GreenletExit, getcurrent, greenlet
from fastco.hub import TIMEOUT, _check_timeout, get_hub
from fastco.task import Task, joinall, killall
from fastco.timeout import Timeout

__all__ = [
    "AsyncResult",
    "BoundedSemaphore",
    "Empty",
    "Event",
    "Full",
    "Lock",
    "Pool",
    "Queue",
    "Semaphore",
]


def _remove(waiters: deque[Any], item: Any) -> None:
    try:
        waiters.remove(item)
    except ValueError:
        pass


def _wait_queued(waiters: deque[Any], entry: Any, timeout: float | None,
                 on_drop: Any = None) -> Any:
    """Queue ``entry`` (the current greenlet, or a record naming it) in
    ``waiters`` and suspend until a wake-up: its value, or TIMEOUT.  The
    entry leaves the queue if the wait ends otherwise than by a wake-up (a
    timeout, or an exception thrown in); ``on_drop`` is the hub's hand-back
    for a wake-up that came too late (see Hub.wait)."""
    cur = getcurrent()
    waiters.append(entry)
    try:
        value = get_hub().wait(cur, timeout, on_drop)
    except BaseException:
        _remove(waiters, entry)
        raise
    if value is TIMEOUT:
        _remove(waiters, entry)
    return value


class Event:
    """A flag that tasks can wait for: ``set()``, ``clear()``, ``is_set()``, ``wait()``."""

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: deque[greenlet] = deque()

    def is_set(self) -> bool:
        """True once set (and until cleared)."""
        return self._flag

    isSet = is_set  # noqa: N815 - threading's old name
    ready = is_set

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._flag = True
        waiters = self._waiters
        if waiters:
            hub = get_hub()
            while waiters:
                hub.schedule(waiters.popleft(), True)

    def clear(self) -> None:
        """Reset the flag; later waiters block again."""
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or ``timeout`` seconds passed; returns the flag."""
        if self._flag:
            return True
        _check_timeout(timeout)
        if _wait_queued(self._waiters, getcurrent(), timeout) is TIMEOUT:
            return self._flag
        return True

    def __repr__(self) -> str:
        return f"<Event at {id(self):#x} {'set' if self._flag else 'unset'} " \
               f"waiters={len(self._waiters)}>"


class AsyncResult:
    """A value (or exception) delivered once, that tasks can wait for.

    ``set(value)``, ``set_exception(exc)``, ``get(block, timeout)`` (raises
    the exception, or ``Timeout``), ``wait(timeout)``, ``ready()``,
    ``successful()``, ``value``, ``exception``.  It can be given to
    ``Task.rawlink``: the task's outcome becomes its outcome.
    """

    __slots__ = ("_event", "value", "_exc")

    def __init__(self) -> None:
        self._event = Event()
        self.value: Any = None
        self._exc: BaseException | None = None

    @property
    def exception(self) -> BaseException | None:
        """The exception set, or None."""
        return self._exc

    def ready(self) -> bool:
        """True once a value or an exception was set."""
        return self._event._flag

    def successful(self) -> bool:
        """True once a value (not an exception) was set."""
        return self._event._flag and self._exc is None

    def set(self, value: Any = None) -> None:
        """Deliver ``value`` and wake the waiters."""
        self.value = value
        self._exc = None
        self._event.set()

    def set_exception(self, exc: BaseException) -> None:
        """Deliver an exception: ``get()`` raises it."""
        if isinstance(exc, type):
            exc = exc()
        self._exc = exc
        self._event.set()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """The value (or raise the exception); if not ready: wait up to
        ``timeout`` seconds with ``block``, then raise ``Timeout``."""
        if not self._event._flag:
            if not block or not self._event.wait(timeout):
                raise Timeout(timeout if block else 0)
        if self._exc is not None:
            raise self._exc
        return self.value

    def get_nowait(self) -> Any:
        """get(block=False)."""
        return self.get(block=False)

    def wait(self, timeout: float | None = None) -> Any:
        """Wait up to ``timeout`` seconds; returns the value (None if not
        ready); never raises the exception."""
        self._event.wait(timeout)
        return self.value

    def __call__(self, source: Task) -> None:
        # As a link: the task's outcome becomes this result.
        if source.successful():
            self.set(source.value)
        else:
            self.set_exception(source.exception)  # type: ignore[arg-type]


class Queue:
    """A FIFO queue between tasks: ``Queue(maxsize=None)`` (None or 0: unbounded).

    ``put(item, block=True, timeout=None)`` and ``get(block=True,
    timeout=None)`` raise ``queue.Full``/``queue.Empty`` (re-exported here)
    when they cannot proceed without blocking or time out.  Blocked getters
    and putters are served in arrival order.
    """

    __slots__ = ("maxsize", "_items", "_getters", "_putters", "__weakref__")

    def __init__(self, maxsize: int | None = None) -> None:
        if maxsize is not None and maxsize < 0:
            raise ValueError("maxsize must be None or >= 0")
        self.maxsize = maxsize or None
        self._items: deque[Any] = deque()
        self._getters: deque[greenlet] = deque()
        # [greenlet, item] of blocked putters
        self._putters: deque[list[Any]] = deque()

    def qsize(self) -> int:
        """Number of items in the queue."""
        return len(self._items)

    __len__ = qsize

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return self.maxsize is not None and len(self._items) >= self.maxsize

    def __bool__(self) -> bool:  # a queue object is true even when empty, like gevent's
        return True

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``; if the queue is full, wait for room (``queue.Full``
        without ``block``, or after ``timeout`` seconds)."""
        getters = self._getters
        if getters:
            # Somebody waits, so the queue is empty: hand the item over.
            get_hub().schedule(getters.popleft(), item)
            return
        if self.maxsize is None or len(self._items) < self.maxsize:
            self._items.append(item)
            return
        if not block:
            raise Full
        # If a getter takes the item and we are then killed, it is in the
        # queue already: it stays.
        if _wait_queued(self._putters, [getcurrent(), item], timeout) is TIMEOUT:
            raise Full

    def put_nowait(self, item: Any) -> None:
        """put(item, block=False)."""
        self.put(item, False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the first item; if empty, wait for one
        (``queue.Empty`` without ``block``, or after ``timeout`` seconds)."""
        if timeout is not None:
            _check_timeout(timeout)
        items = self._items
        if items:
            item = items.popleft()
            if self._putters:
                # Room was made: take the first blocked putter's item in.
                cur, putted = self._putters.popleft()
                items.append(putted)
                get_hub().schedule(cur, True)
            return item
        if not block:
            raise Empty
        value = _wait_queued(self._getters, getcurrent(), timeout, self._give_back)
        if value is TIMEOUT:
            raise Empty
        return value

    def get_nowait(self) -> Any:
        """get(block=False)."""
        return self.get(False)

    def _give_back(self, item: Any) -> None:
        # A getter was handed ``item`` but died before it ran: the item goes
        # to the next getter, or back to the front of the queue.
        if self._getters:
            get_hub().schedule(self._getters.popleft(), item)
        else:
            self._items.appendleft(item)

    def peek(self, block: bool = True, timeout: float | None = None) -> Any:
        """The first item, without removing it (waits like get)."""
        if not self._items:
            item = self.get(block, timeout)
            self._items.appendleft(item)
        return self._items[0]

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        """Blocking iteration; a ``StopIteration`` instance put in the queue ends it."""
        item = self.get()
        if item is StopIteration or isinstance(item, StopIteration):
            raise StopIteration
        return item

    def __repr__(self) -> str:
        return (f"<Queue at {id(self):#x} maxsize={self.maxsize} items={len(self._items)} "
                f"getters={len(self._getters)} putters={len(self._putters)}>")


class Semaphore:
    """A counter of permits: ``acquire()`` takes one (waiting if there is
    none), ``release()`` gives one back.  Also a context manager."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._value = value
        self._waiters: deque[greenlet] = deque()

    @property
    def counter(self) -> int:
        """The permits available now."""
        return self._value

    def locked(self) -> bool:
        """True if an acquire would block."""
        return self._value <= 0

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a permit; returns False if ``blocking`` is false and there is
        none, or if ``timeout`` seconds passed first."""
        if self._value > 0:
            self._value -= 1
            return True
        if not blocking:
            return False
        _check_timeout(timeout)
        return _wait_queued(self._waiters, getcurrent(), timeout, self._regive) is not TIMEOUT

    def _regive(self, _value: object) -> None:
        # A waiter was handed a permit but was killed before it ran.
        self._release()

    def _release(self) -> None:
        if self._waiters:
            get_hub().schedule(self._waiters.popleft(), True)  # hand the permit over
        else:
            self._value += 1

    def release(self) -> None:
        """Give a permit back (to the first waiter, if any)."""
        self._release()

    def wait(self, timeout: float | None = None) -> int:
        """Wait until a permit is available, without taking it; returns the counter."""
        if self._value <= 0 and self.acquire(timeout=timeout):
            self.release()
        return self._value

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(self, typ: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} at {id(self):#x} counter={self._value} "
                f"waiters={len(self._waiters)}>")


class BoundedSemaphore(Semaphore):
    """A Semaphore whose ``release()`` raises ValueError above the initial value."""

    __slots__ = ("_initial",)

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial = value

    def release(self) -> None:
        if self._value >= self._initial and not self._waiters:
            raise ValueError("semaphore released too many times")
        self._release()


class Lock(BoundedSemaphore):
    """A mutual exclusion lock between tasks (not re-entrant); releasing an
    unlocked lock raises RuntimeError, like threading.Lock."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(1)

    def release(self) -> None:
        if self._value >= 1:
            raise RuntimeError("release unlocked lock")
        self._release()


class Pool:
    """Runs tasks with at most ``size`` of them at once (None: no limit).

    ``spawn`` waits for a free slot.  Also ``apply``, ``map``,
    ``imap_unordered``, ``join``, ``kill``, ``free_count``, ``wait_available``,
    ``len()``, ``in``, iteration over the running tasks.
    """

    def __init__(self, size: int | None = None) -> None:
        if size is not None and size < 1:
            raise ValueError(f"pool size must be None or >= 1, not {size!r}")
        self.size = size
        self._sem = Semaphore(size) if size is not None else None
        self._tasks: dict[Task, None] = {}
        self._empty = Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task: object) -> bool:
        return task in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._tasks))

    def free_count(self) -> int:
        """How many more tasks could start now."""
        if self.size is None:
            return 1 << 30
        return max(0, self.size - len(self._tasks))

    def full(self) -> bool:
        return self.free_count() <= 0

    def wait_available(self, timeout: float | None = None) -> int:
        """Wait until a task can start without waiting; returns free_count()."""
        if self._sem is not None:
            self._sem.wait(timeout)
        return self.free_count()

    def spawn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Task:
        """Start ``fn(*args, **kwargs)`` in a new task once a slot is free."""
        if self._sem is not None:
            self._sem.acquire()
        try:
            task = Task(fn, *args, **kwargs)
            self._tasks[task] = None
            self._empty.clear()
            task.rawlink(self._discard)
        except BaseException:
            if self._sem is not None:
                self._sem.release()
            raise
        task.start()
        return task

    def _discard(self, task: Task) -> None:
        if self._tasks.pop(task, 0) is None:
            if self._sem is not None:
                self._sem.release()
            if not self._tasks:
                self._empty.set()

    def apply(self, fn: Callable[..., Any], args: Iterable[Any] = (),
              kwds: dict[str, Any] | None = None) -> Any:
        """Run ``fn(*args, **kwds)`` in the pool and return its result."""
        return self.spawn(fn, *args, **(kwds or {})).get()

    def map(self, fn: Callable[[Any], Any], iterable: Iterable[Any]) -> list[Any]:
        """[fn(x) for x in iterable], run concurrently in the pool, in order."""
        tasks = [self.spawn(fn, x) for x in iterable]
        return [t.get() for t in tasks]

    def imap_unordered(self, fn: Callable[[Any], Any], iterable: Iterable[Any]) -> Iterator[Any]:
        """fn(x) for x in iterable, results as they come."""
        results: Queue = Queue()
        count = 0
        for x in iterable:
            self.spawn(fn, x).rawlink(results.put)
            count += 1
        for _ in range(count):
            yield results.get().get()

    def join(self, timeout: float | None = None, raise_error: bool = False) -> bool:
        """Wait until no task runs (or ``timeout``); returns True if none does.
        With ``raise_error``, the first task error is raised; the timeout
        covers the whole call."""
        if raise_error:
            _check_timeout(timeout)
            deadline = None if timeout is None else monotonic() + timeout
            joinall(list(self._tasks), timeout, raise_error=True)
            if deadline is not None:
                timeout = max(0.0, deadline - monotonic())
        return self._empty.wait(timeout)

    def kill(self, exception: Any = GreenletExit, block: bool = True,
             timeout: float | None = None) -> None:
        """Kill every task of the pool."""
        killall(list(self._tasks), exception, block, timeout)

    def __repr__(self) -> str:
        return f"<Pool at {id(self):#x} size={self.size} running={len(self._tasks)}>"
