"""Shared pieces of the differential tests (greenlet versus fastco).

A test runs the same code twice, once with each implementation's names
(`Impl`), and compares the traces.  Traces hold only comparable data: plain
values, greenlets as the names the test gave them, exceptions as their type
name and, when the args are data rather than a library's message, their args.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A debug build of CPython (python3.14d, ...): it asserts on its invariants,
# and greenlet, the reference, trips some of those assertions (it calls run()
# with a non-tuple as the args of an unstarted parent that a GreenletExit
# starts): there, the tests run fastco alone where greenlet would abort.
DEBUG_BUILD = hasattr(sys, "gettotalrefcount")

# greenlet 3.5.2+ on CPython 3.15 traverses the frames of suspended greenlets
# and collects one caught in a reference cycle, without running its finally
# blocks; fastco keeps it alive, as both do on 3.10-3.14.
REFERENCE_COLLECTS_SUSPENDED = sys.version_info >= (3, 15)

# The attribute in which a test stores the name it gives a greenlet.
NAME_ATTR = "_difftest_name"

# Exceptions whose args are messages worded by the implementation: only their
# type is compared (fastco words some as greenlet does, not all: e.g. its
# TypeError for settrace(5), which greenlet accepts).
MESSAGE_TYPES = (TypeError, ValueError, AttributeError, RuntimeError)


@dataclass(frozen=True)
class Impl:
    """The greenlet API of one implementation."""

    label: str
    greenlet: type
    getcurrent: Callable[[], Any]
    GreenletExit: type
    error: type
    settrace: Callable[[Any], Any]
    gettrace: Callable[[], Any]


def load_impls() -> list[Impl]:
    """greenlet (the reference) then fastco.  Import greenlet only after
    pytest.importorskip("greenlet") in the test module."""
    import greenlet

    import fastco

    return [
        Impl("greenlet", greenlet.greenlet, greenlet.getcurrent, greenlet.GreenletExit,
             greenlet.error, greenlet.settrace, greenlet.gettrace),
        Impl("fastco", fastco.greenlet, fastco.getcurrent, fastco.GreenletExit,
             fastco.error, fastco.settrace, fastco.gettrace),
    ]


def set_name(g: Any, name: str) -> Any:
    """Give greenlet `g` the name that traces show for it; returns `g`."""
    setattr(g, NAME_ATTR, name)
    return g


def name_of(impl: Impl, g: Any) -> str | None:
    """The name of greenlet `g` in traces (None for None)."""
    if g is None:
        return None
    return getattr(g, NAME_ATTR, "<unnamed>")


def describe(impl: Impl, x: Any) -> Any:
    """`x` as comparable data: no ids, no addresses, no implementation types."""
    if isinstance(x, impl.greenlet):
        return ("greenlet", name_of(impl, x))
    if isinstance(x, BaseException):
        return describe_exc(impl, x)
    if isinstance(x, type) and issubclass(x, BaseException):
        return ("exc-class", x.__name__)
    if isinstance(x, tuple):
        return tuple(describe(impl, i) for i in x)
    if isinstance(x, list):
        return [describe(impl, i) for i in x]
    if isinstance(x, dict):
        # Items in order: kwargs keep the caller's order in both.
        return ("dict", tuple((k, describe(impl, v)) for k, v in x.items()))
    if x is None or isinstance(x, (bool, int, float, str, bytes)):
        return x
    return ("object", type(x).__name__)


# The GreenletExit that greenlet throws into a greenlet that lost its last
# reference carries this message; fastco's carries none.
KILL_MESSAGE = "Killing the greenlet because all references have vanished."


def describe_exc(impl: Impl, exc: BaseException) -> tuple:
    """An exception as ("exc", type name[, args])."""
    name = type(exc).__name__
    if isinstance(exc, impl.error) or isinstance(exc, MESSAGE_TYPES):
        return ("exc", name)
    args = exc.args
    if isinstance(exc, impl.GreenletExit) and args == (KILL_MESSAGE,):
        args = ()
    return ("exc", name, describe(impl, args))


def settle() -> None:
    """Collect garbage so that one run does not leak into the next."""
    for _ in range(2):
        gc.collect()
