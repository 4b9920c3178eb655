"""Tasks: greenlets run by the hub, with a result (gevent's Greenlet, for fastco).

``spawn(fn, *args, **kwargs)`` makes a ``Task`` and schedules its start;
``joinall``/``killall`` act on several.  A task's parent is the hub, so when
it finishes control goes back to the loop.  An exception that escapes a task
is recorded (``exception``, ``get()`` re-raises it) and reported once, with its
traceback, by the hub; the loop and the other tasks go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastco._greenlet import GreenletExit, getcurrent, greenlet
from fastco.hub import SYSTEM_ERRORS, TIMEOUT, Hub, _check_timeout, get_hub
from fastco.timeout import Timeout

__all__ = ["Task", "joinall", "killall", "spawn", "spawn_later"]

# States of a task (Task._state)
_NEW, _SCHEDULED, _STARTED, _DONE, _CANCELLED = 0, 1, 2, 3, 4


_greenlet_dead = greenlet.dead.__get__


def _kill_in_hub(task: Task, exc: Any) -> None:
    # A hub callback: throw into the task (wherever it waits) unless it ended.
    if not task.dead:
        task.throw(exc)


def _start_delayed(task: Task) -> None:
    # The timer of start_later: start it, unless it was killed meanwhile.
    if task._state == _SCHEDULED:
        task._hub.schedule(task, None)


class Task(greenlet):
    """A greenlet run by the hub, with a result: ``Task(run, *args, **kwargs)``.

    ``start()`` schedules it (``spawn`` does both).  Then ``join``, ``get``,
    ``kill``, ``ready()``, ``successful()``, ``value``, ``exception``,
    ``dead``, ``link(callback)``.  A subclass may override ``_run`` instead of
    passing ``run``.
    """

    __slots__ = ("args", "kwargs", "value", "_exc", "_links", "_state", "_fn", "_hub", "_info")

    def __init__(self, run: Callable[..., Any] | None = None, *args: Any, **kwargs: Any) -> None:
        hub = get_hub()
        greenlet.__init__(self, None, hub)
        self._hub = hub
        self._fn = run
        self.args = args
        self.kwargs = kwargs
        #: The return value of the function, once it returned (or the
        #: GreenletExit instance that killed the task).
        self.value: Any = None
        self._exc: BaseException | None = None
        # Joiners (greenlets: scheduled) and rawlinks (callables: called).
        self._links: list[Any] = []
        self._state = _NEW
        self._info: str | None = None  # repr's "fn(args)", made on first use

    # -- state ---------------------------------------------------------

    @property
    def dead(self) -> bool:  # type: ignore[override]
        """True once it finished, or was killed before it started."""
        return self._state >= _DONE or _greenlet_dead(self)

    @property
    def started(self) -> bool:
        """True once it began to run (or was killed before it could)."""
        return self._state >= _STARTED

    def ready(self) -> bool:
        """True once the task finished (its result is known)."""
        return self._state >= _DONE

    def successful(self) -> bool:
        """True if it finished without an exception (a kill counts as success)."""
        return self.ready() and self._exc is None

    @property
    def exception(self) -> BaseException | None:
        """The exception that ended the task, or None."""
        return self._exc

    @property
    def exc_info(self) -> tuple[Any, Any, Any]:
        """(type, value, traceback) of the exception that ended it, or (None,)*3."""
        e = self._exc
        return (None, None, None) if e is None else (type(e), e, e.__traceback__)

    def __bool__(self) -> bool:
        return _SCHEDULED <= self._state <= _STARTED

    def __repr__(self) -> str:
        info = self._info
        if info is None:
            fn = self._fn if self._fn is not None else getattr(self, "_run", None)
            if self._state >= _DONE:
                info = "finished"
            else:
                name = getattr(fn, "__name__", None) or repr(fn)
                parts = [repr(a) for a in (self.args or ())]
                parts += [f"{k}={v!r}" for k, v in (self.kwargs or {}).items()]
                info = self._info = f"{name}({', '.join(parts)})"
        return f"<{type(self).__name__} at {id(self):#x}: {info}>"

    # -- running -------------------------------------------------------

    def start(self) -> None:
        """Schedule the task to start at the hub's next turn (once)."""
        if self._state == _NEW:
            self._state = _SCHEDULED
            self._hub.schedule(self, None)

    def start_later(self, seconds: float) -> None:
        """Schedule the task to start in ``seconds``."""
        _check_timeout(seconds)
        if self._state == _NEW:
            self._state = _SCHEDULED
            self._hub.call_later(seconds, _start_delayed, self)

    def run(self, _value: Any = None) -> None:
        """The greenlet's body: call the function, record the outcome, notify."""
        self._state = _STARTED
        fn = self._fn if self._fn is not None else self._run
        try:
            self.value = fn(*self.args, **self.kwargs)
        except GreenletExit as exc:
            self.value = exc
        except BaseException as exc:  # noqa: BLE001 - recorded, reported, not raised
            self._exc = exc
            self._hub.handle_error(self, exc)
        self.args = self.kwargs = ()  # drop references as soon as possible
        self._fn = None
        self._state = _DONE
        if self._links:
            self._notify()

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        """What the task runs when no ``run`` was given: override it in a subclass."""
        raise NotImplementedError("Task(run) was given no callable and _run is not overridden")

    def _notify(self) -> None:
        links, self._links = self._links, []
        hub = self._hub
        for link in links:
            if isinstance(link, greenlet):
                hub.schedule(link, None)
            else:
                try:
                    link(self)
                except SYSTEM_ERRORS:
                    raise
                except BaseException as exc:  # noqa: BLE001
                    hub.handle_error(link, exc)

    # -- links ---------------------------------------------------------

    def rawlink(self, callback: Callable[[Task], Any]) -> None:
        """Call ``callback(task)`` when it finishes, right there (it must not block)."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        if self.ready():
            self._hub.run_callback(callback, self)
        else:
            self._links.append(callback)

    def link(self, callback: Callable[[Task], Any]) -> None:
        """Call ``callback(task)`` in a new task when this one finishes."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        self.rawlink(_SpawnedLink(callback))

    def link_value(self, callback: Callable[[Task], Any]) -> None:
        """Like link, only if the task succeeds."""
        self.link(_Filtered(callback, True))

    def link_exception(self, callback: Callable[[Task], Any]) -> None:
        """Like link, only if the task fails."""
        self.link(_Filtered(callback, False))

    def unlink(self, callback: Callable[[Task], Any]) -> None:
        """Remove a callback given to link or rawlink."""
        for i, link in enumerate(self._links):
            if link == callback:
                del self._links[i]
                return

    # -- waiting -------------------------------------------------------

    def join(self, timeout: float | None = None) -> None:
        """Wait until the task finished, or ``timeout`` seconds passed."""
        if self.ready():
            return
        _check_timeout(timeout)
        hub = self._hub
        cur = getcurrent()
        if cur is self:
            raise RuntimeError("a task cannot join itself")
        self._links.append(cur)
        try:
            value = hub.wait(cur, timeout)
        except BaseException:
            self._unlink_greenlet(cur)
            raise
        if value is TIMEOUT:
            self._unlink_greenlet(cur)

    def _unlink_greenlet(self, g: greenlet) -> None:
        links = self._links
        for i, link in enumerate(links):
            if link is g:
                del links[i]
                return

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """The task's return value; re-raises its exception.  If it did not
        finish: with ``block``, wait up to ``timeout`` seconds, then raise
        ``Timeout``; without, raise ``Timeout`` at once."""
        if not self.ready():
            if not block:
                raise Timeout(0)
            self.join(timeout)
            if not self.ready():
                raise Timeout(timeout)
        if self._exc is not None:
            raise self._exc
        return self.value

    def throw(self, *args: Any) -> Any:
        """greenlet.throw, with a task killed before it started marked as such."""
        if self._state < _STARTED:
            self._cancel_start(args)
            return None
        return greenlet.throw(self, *args)

    def _cancel_start(self, args: tuple[Any, ...]) -> None:
        if self._state == _SCHEDULED:
            self._hub.unschedule(self)
        self._state = _CANCELLED
        exc = args[0] if args else GreenletExit
        if isinstance(exc, type):
            exc = exc()
        self.args = self.kwargs = ()
        self._fn = None
        if isinstance(exc, GreenletExit):
            self.value = exc
        else:
            self._exc = exc
        if self._links:
            self._notify()

    def kill(self, exception: Any = GreenletExit, block: bool = True,
             timeout: float | None = None) -> None:
        """Raise ``exception`` in the task (wherever it waits); with ``block``,
        wait up to ``timeout`` seconds for it to finish.  A task that has not
        started never runs.  Killing a finished task does nothing."""
        if getcurrent() is self:
            raise exception
        self._kill_nowait(exception)
        if block:
            self.join(timeout)

    def _kill_nowait(self, exception: Any) -> None:
        """Cancel the task if it has not started, else have the hub raise
        ``exception`` in it; nothing if it finished."""
        if self.ready():
            return
        if self._state < _STARTED:
            self._cancel_start((exception,))
        else:
            self._hub.run_callback(_kill_in_hub, self, exception)


class _SpawnedLink:
    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[Task], Any]) -> None:
        self.callback = callback

    def __call__(self, task: Task) -> None:
        spawn(self.callback, task)

    def __eq__(self, other: object) -> bool:
        return self.callback == other or (isinstance(other, _SpawnedLink)
                                          and other.callback == self.callback)

    def __hash__(self) -> int:
        return hash(self.callback)


class _Filtered:
    __slots__ = ("callback", "success")

    def __init__(self, callback: Callable[[Task], Any], success: bool) -> None:
        self.callback = callback
        self.success = success

    def __call__(self, task: Task) -> None:
        if task.successful() == self.success:
            self.callback(task)

    def __eq__(self, other: object) -> bool:
        return self.callback == other or (isinstance(other, _Filtered)
                                          and other.callback == self.callback)

    def __hash__(self) -> int:
        return hash(self.callback)


def spawn(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Task:
    """Start ``fn(*args, **kwargs)`` in a new task; returns the Task."""
    task = Task(fn, *args, **kwargs)
    task.start()
    return task


def spawn_later(seconds: float, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Task:
    """Like spawn, the task starting in ``seconds``."""
    task = Task(fn, *args, **kwargs)
    task.start_later(seconds)
    return task


class _CountDown:
    """A rawlink that resumes a waiter when ``count`` tasks finished (or one failed)."""

    __slots__ = ("hub", "waiter", "count", "raise_error", "fired")

    def __init__(self, hub: Hub, waiter: greenlet, count: int, raise_error: bool) -> None:
        self.hub = hub
        self.waiter = waiter
        self.count = count
        self.raise_error = raise_error
        self.fired = False

    def __call__(self, task: Task) -> None:
        self.count -= 1
        if not self.fired and (self.count <= 0 or
                               (self.raise_error and task._exc is not None)):
            self.fired = True
            self.hub.schedule(self.waiter, task)


def joinall(tasks: Iterable[Task], timeout: float | None = None,
            raise_error: bool = False, count: int | None = None) -> list[Task]:
    """Wait until all ``tasks`` finished (or ``count`` of them, or ``timeout``
    seconds passed); returns those that finished.  With ``raise_error``, the
    first exception of a task is raised as soon as it is known."""
    _check_timeout(timeout)
    tasks = list(tasks)
    waiting = [t for t in tasks if not t.ready()]
    if raise_error:
        _raise_first_error(tasks)
    need = len(waiting) if count is None else count - (len(tasks) - len(waiting))
    if need > 0 and waiting:
        hub = get_hub()
        cur = getcurrent()
        down = _CountDown(hub, cur, need, raise_error)
        for t in waiting:
            t._links.append(down)
        try:
            hub.wait(cur, timeout)
        finally:
            for t in waiting:
                if not t.ready():
                    t.unlink(down)
        if raise_error:
            _raise_first_error(tasks)
    return [t for t in tasks if t.ready()]


def _raise_first_error(tasks: list[Task]) -> None:
    """Raise the exception of the first of ``tasks`` that finished with one."""
    for t in tasks:
        if t.ready() and t._exc is not None:
            raise t._exc


def killall(tasks: Iterable[Task], exception: Any = GreenletExit, block: bool = True,
            timeout: float | None = None) -> None:
    """Kill all ``tasks`` (see Task.kill); with ``block``, wait up to
    ``timeout`` seconds for them to finish."""
    tasks = list(tasks)
    for t in tasks:
        t._kill_nowait(exception)
    if block:
        joinall(tasks, timeout)

