"""Cooperative select.select, select.poll and the selectors selector."""

from __future__ import annotations

import os
import selectors
import time

import pytest

import fastco
from fastco import select as coselect

pytestmark = pytest.mark.usefixtures("any_hub")


def test_select_waits_cooperatively(pipe) -> None:
    r, w = pipe
    ticks = []
    ticker = fastco.spawn(lambda: [ticks.append(fastco.sleep(0.002)) for _ in range(5)])
    fastco.spawn_later(0.03, os.write, w, b"x")
    rl, wl, xl = coselect.select([r], [], [], 5)
    assert rl == [r] and wl == [] and xl == []
    assert ticks  # the ticker ran while select waited
    ticker.join()


def test_select_immediate_timeout_and_errors(pipe) -> None:
    r, w = pipe
    assert coselect.select([r], [w], [], 0) == ([], [w], [])
    start = time.monotonic()
    assert coselect.select([r], [], [], 0.02) == ([], [], [])
    assert time.monotonic() - start >= 0.02
    with pytest.raises(ValueError):
        coselect.select([r], [], [], -1)
    with pytest.raises(TypeError):
        coselect.select(["x"], [], [], 0)
    r2, w2 = os.pipe()
    os.close(r2)
    os.close(w2)
    with pytest.raises(OSError):
        coselect.select([r2], [], [], 0)


def test_poll_object(pipe) -> None:
    r, w = pipe
    p = coselect.poll()
    p.register(r, coselect.POLLIN)
    assert p.poll(0) == []
    assert p.poll(20) == []
    fastco.spawn_later(0.01, os.write, w, b"x")
    assert p.poll() == [(r, coselect.POLLIN)]
    p.unregister(r)
    with pytest.raises(KeyError):
        p.unregister(r)


def test_selector(pipe) -> None:
    r, w = pipe
    with coselect.FastcoSelector() as sel:
        sel.register(r, selectors.EVENT_READ, "reader")
        assert sel.select(0) == []
        fastco.spawn_later(0.01, os.write, w, b"x")
        (key, events), = sel.select(5)
        assert key.data == "reader" and events == selectors.EVENT_READ
