"""Type hints for fastco._native, the native part of fastco._core.

Only the greenlet API is spelled out; the hub's native core (HubCore,
HubTimer, sock_install, sleep, hub_setup) is internal, used by fastco.hub and
fastco.socket.
"""

from collections.abc import Callable
from contextvars import Context
from types import FrameType, TracebackType
from typing import Any

_TraceFunction = Callable[[str, tuple["greenlet", "greenlet"]], object]

class GreenletExit(BaseException):
    """Thrown into a greenlet to kill it; its parent receives it as a value."""

class error(Exception):
    """A switch that cannot happen (another thread's greenlet, ...)."""

class greenlet:
    """A coroutine on its own C stack, with greenlet's interface."""

    GreenletExit: type[GreenletExit]
    error: type[error]
    run: Callable[..., Any]
    parent: greenlet | None
    gr_context: Context | None

    def __init__(self, run: Callable[..., Any] | None = ..., parent: greenlet | None = ...,
                 *, stack_size: int = ...) -> None: ...
    def switch(self, *args: Any, **kwargs: Any) -> Any: ...
    def throw(self, typ: type[BaseException] | BaseException = ..., val: object = ...,
              tb: TracebackType | None = ...) -> Any: ...
    def __bool__(self) -> bool: ...
    @property
    def dead(self) -> bool: ...
    @property
    def gr_frame(self) -> FrameType | None: ...
    @property
    def stack_size(self) -> int | None: ...
    @property
    def _stack_saved(self) -> int: ...
    @staticmethod
    def getcurrent() -> greenlet: ...
    @staticmethod
    def settrace(callback: _TraceFunction | None) -> _TraceFunction | None: ...
    @staticmethod
    def gettrace() -> _TraceFunction | None: ...

def getcurrent() -> greenlet: ...
def settrace(callback: _TraceFunction | None) -> _TraceFunction | None: ...
def gettrace() -> _TraceFunction | None: ...
def set_default_stack_size(nbytes: int) -> int: ...
def __getattr__(name: str) -> Any: ...
