"""fastco as the ``greenlet`` module.

The public face of the greenlet package, served by fastco: loaded under the
name ``greenlet`` when FASTCO_AS_GREENLET=1 or after
``fastco.install_as_greenlet()`` (see _fastco_as_greenlet), so that code
written for greenlet runs on fastco's switch.  ``greenlet.greenlet`` is
``fastco.greenlet``: the two names give the same objects.

``_C_API`` is greenlet's C API, the capsule that compiled consumers (gevent's
Cython modules) read with ``PyCapsule_Import("greenlet._C_API")``; see
csrc/pyglue/capi.c.
"""

from __future__ import annotations

from ._greenlet import (
    _C_API,
    GREENLET_USE_CONTEXT_VARS,
    GREENLET_USE_GC,
    GREENLET_USE_TRACING,
    GreenletExit,
    error,
    getcurrent,
    gettrace,
    greenlet,
    settrace,
)

#: The greenlet release whose API (and test suite) this module mirrors.
__version__ = "3.5.6"

#: Marks this module as fastco's (see fastco.install_as_greenlet).
__fastco__ = True

__all__ = [
    "_C_API",
    "GREENLET_USE_CONTEXT_VARS",
    "GREENLET_USE_GC",
    "GREENLET_USE_TRACING",
    "GreenletExit",
    "__version__",
    "error",
    "getcurrent",
    "gettrace",
    "greenlet",
    "settrace",
]
