"""Fixtures for the benchmark suite: the implementations compared.

Each benchmark takes an `impl` fixture naming what it runs on: "greenlet"
or "gevent" (the peers) and "fastco-asm" / "fastco-ucontext" (fastco with
each backend).  Peers that are not installed are skipped.
"""

from __future__ import annotations

import gc
import types

import pytest

import fastco

FASTCO_IMPLS = [f"fastco-{b}" for b in fastco.available_backends()]


def use_fastco_backend(name: str) -> types.ModuleType:
    """Switch fastco to the backend named in `name` ("fastco-asm", ...)."""
    gc.collect()                         # finish off coroutines of earlier benchmarks
    fastco.set_backend(name.split("-", 1)[1])
    return fastco


def greenlet_impl(name: str) -> types.SimpleNamespace:
    """The greenlet API of `name`: greenlet, getcurrent, GreenletExit."""
    if name == "greenlet":
        mod = pytest.importorskip("greenlet")
        return types.SimpleNamespace(name=name, greenlet=mod.greenlet,
                                     getcurrent=mod.getcurrent, GreenletExit=mod.GreenletExit)
    mod = use_fastco_backend(name)
    return types.SimpleNamespace(name=name, greenlet=mod.greenlet,
                                 getcurrent=mod.getcurrent, GreenletExit=mod.GreenletExit)


@pytest.fixture(params=["greenlet", *FASTCO_IMPLS])
def glet(request) -> types.SimpleNamespace:
    """A greenlet API: the greenlet package, or fastco with one backend."""
    return greenlet_impl(request.param)
