"""Timeout: raise an exception in a greenlet after some seconds, wherever it waits.

``Timeout`` derives from BaseException (as gevent's does) so that a generic
``except Exception`` in the code it interrupts does not swallow it.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from fastco._greenlet import getcurrent, greenlet
from fastco.hub import _check_timeout, get_hub

__all__ = ["Timeout", "with_timeout"]


class Timeout(BaseException):
    """``Timeout(seconds, exception=None)``: after ``seconds``, raise in the
    greenlet that started it ``exception`` (an exception class or instance),
    or the Timeout itself when ``exception`` is None.

    As a context manager it starts on entry and is cancelled on exit; with
    ``exception=False`` the block is left silently when it fires.  As an
    object: ``start()``, ``cancel()``, ``pending``, ``Timeout.start_new()``.
    ``seconds=None`` never fires.
    """

    def __init__(self, seconds: float | None = None,
                 exception: type[BaseException] | BaseException | bool | None = None) -> None:
        super().__init__(seconds)
        _check_timeout(seconds)
        self.seconds = seconds
        self.exception = exception
        self._timer: Any = None  # the hub's timer (HubTimer) while started
        self._greenlet: greenlet | None = None

    @classmethod
    def start_new(cls, seconds: float | None = None,
                  exception: type[BaseException] | BaseException | bool | None = None,
                  ) -> Timeout:
        """Make a Timeout and start it (a Timeout given as seconds is started as is)."""
        if isinstance(seconds, Timeout):
            if not seconds.pending:
                seconds.start()
            return seconds
        timeout = cls(seconds, exception)
        timeout.start()
        return timeout

    @property
    def pending(self) -> bool:
        """True while started and neither fired nor cancelled."""
        return self._timer is not None and self._timer.pending

    def start(self) -> None:
        """Start counting, for the current greenlet."""
        if self.pending:
            raise RuntimeError("this Timeout is already started")
        if self.seconds is None:
            return
        hub = get_hub()
        cur = self._greenlet = getcurrent()
        if cur is hub:
            raise RuntimeError("a Timeout cannot be started in the hub")
        self._timer = hub.call_later(self.seconds, self._fire)

    def cancel(self) -> None:
        """Stop it; no effect if it fired or was never started."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    close = cancel

    def _fire(self, _arg: object) -> None:
        # Runs in the hub: throw into the greenlet, wherever it waits.
        g = self._greenlet
        self._greenlet = None
        if g is None or g.dead:
            return
        exc = self.exception
        if exc is None or exc is False or exc is True:
            g.throw(self)
        else:
            g.throw(exc)

    def __enter__(self) -> Timeout:
        if not self.pending:
            self.start()
        return self

    def __exit__(self, typ: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> bool:
        self.cancel()
        return value is self and self.exception is False

    def __str__(self) -> str:
        if self.seconds is None:
            return ""
        suffix = "" if self.seconds == 1 else "s"
        if self.exception is None or self.exception is False or self.exception is True:
            return f"{self.seconds} second{suffix}"
        return f"{self.seconds} second{suffix}: {self.exception}"

    def __repr__(self) -> str:
        state = " pending" if self.pending else ""
        exc = "" if self.exception is None else f" exception={self.exception!r}"
        return f"<{type(self).__name__} at {id(self):#x} seconds={self.seconds}{exc}{state}>"

    def __bool__(self) -> bool:  # a Timeout is an object first, an exception second
        return True


def with_timeout(seconds: float | None, fn: Any, *args: Any,
                 timeout_value: Any = Timeout, **kwargs: Any) -> Any:
    """Call ``fn(*args, **kwargs)`` with a Timeout; on expiry return
    ``timeout_value`` if given, else raise the Timeout."""
    with Timeout(seconds) as t:
        try:
            return fn(*args, **kwargs)
        except Timeout as exc:
            if exc is t and timeout_value is not Timeout:
                return timeout_value
            raise
