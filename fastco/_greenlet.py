"""The greenlet-compatible API, loaded from the native part of fastco._core.

fastco._core is a cffi extension; its switch path is a native CPython type
(csrc/pyglue/), which this module registers and imports as fastco._native.
"""

from __future__ import annotations

from fastco._core import ffi, lib


def _install_native() -> None:
    """Register fastco._native (built into fastco._core) in sys.modules."""
    errbuf = ffi.new("char[]", 512)
    if lib.fastco_py_install(errbuf, len(errbuf)) != 0:
        raise ImportError("fastco: cannot initialise the native module: "
                          + ffi.string(errbuf).decode("utf-8", "replace"))


_install_native()

from fastco._native import (  # noqa: E402
    GreenletExit,
    error,
    getcurrent,
    gettrace,
    greenlet,
    set_default_stack_size,
    settrace,
)

__all__ = ["GreenletExit", "error", "getcurrent", "gettrace", "greenlet",
           "install_as_greenlet", "set_default_stack_size", "settrace"]


def install_as_greenlet() -> None:
    """Make ``import greenlet`` give fastco's greenlet module, in this process.

    For libraries built on greenlet (SQLAlchemy's asyncio layer, greenback,
    gevent in pure-Python mode).  Call it before anything imports greenlet:
    RuntimeError if the real greenlet was imported already.  Child processes
    are not affected; the environment variable FASTCO_AS_GREENLET=1 switches
    it on for a whole program, children included.
    """
    import _fastco_as_greenlet

    _fastco_as_greenlet.install()
