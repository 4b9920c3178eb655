"""Fixtures for the benchmark suite: the implementations compared.

Each benchmark takes an `impl` fixture naming what it runs on: "greenlet"
or "gevent" (the peers) and "fastco-asm" / "fastco-ucontext" (fastco with
each backend).  Peers that are not installed are skipped.
"""

from __future__ import annotations

import gc
import types
from pathlib import Path

import pytest

import fastco
import fastco.hub
from bench._build_loadgen import build_loadgen

FASTCO_IMPLS = [f"fastco-{b}" for b in fastco.available_backends()]


def use_fastco_backend(name: str) -> types.ModuleType:
    """Switch fastco to the backend named in `name` ("fastco-asm", ...).

    A context is resumed only by the backend that made it, so the thread's
    hub (a suspended greenlet) and the coroutines of earlier benchmarks go
    first; the next get_hub() makes a new hub on the chosen backend."""
    backend = name.split("-", 1)[1]
    if fastco.backend() != backend:
        hub = fastco.hub.current_hub()
        if hub is not None:
            hub.destroy()
        gc.collect()
        fastco.set_backend(backend)
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


@pytest.fixture(scope="session")
def loadgen() -> Path:
    """The load generator (bench/loadgen.c), compiled once, warnings as errors."""
    return build_loadgen()
