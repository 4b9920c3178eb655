"""Timeout: fires wherever the greenlet waits, cancels cleanly."""

from __future__ import annotations

import time

import pytest

import fastco
from fastco import Timeout, with_timeout

pytestmark = pytest.mark.usefixtures("hub")


def test_fires_in_a_sleep_and_raises_itself() -> None:
    start = time.monotonic()
    with pytest.raises(Timeout) as info, Timeout(0.02) as t:
        fastco.sleep(5)
    assert info.value is t
    assert 0.02 <= time.monotonic() - start < 2
    assert not t.pending


def test_exception_false_leaves_the_block_silently() -> None:
    reached = []
    with Timeout(0.01, False):
        fastco.sleep(5)
        reached.append(1)
    assert reached == []


@pytest.mark.parametrize("exc", [ValueError, ValueError("custom")])
def test_custom_exception(exc) -> None:
    with pytest.raises(ValueError), Timeout(0.01, exc):
        fastco.sleep(5)


def test_cancelled_or_finished_block_does_not_fire_later() -> None:
    with Timeout(0.02) as t:
        fastco.sleep(0)
    assert not t.pending
    fastco.sleep(0.05)  # would be interrupted if the timer were left behind
    t2 = Timeout.start_new(0.01)
    assert t2.pending
    t2.cancel()
    fastco.sleep(0.03)


def test_none_never_fires_and_negative_is_rejected() -> None:
    with Timeout(None) as t:
        fastco.sleep(0.01)
    assert not t.pending
    with pytest.raises(ValueError):
        Timeout(-1)


def test_nested_inner_fires_outer_does_not() -> None:
    with Timeout(1) as outer:
        with pytest.raises(Timeout) as info, Timeout(0.01):
            fastco.sleep(5)
        assert info.value is not outer
        assert outer.pending
    assert not outer.pending


def test_interrupts_waits_on_primitives_and_leaves_them_consistent() -> None:
    ev = fastco.Event()
    q = fastco.Queue()
    with pytest.raises(Timeout), Timeout(0.01):
        ev.wait()
    with pytest.raises(Timeout), Timeout(0.01):
        q.get()
    assert not ev._waiters and not q._getters
    q.put(1)
    assert q.get() == 1


def test_in_a_task_and_with_timeout() -> None:
    def slow():
        with Timeout(0.01):
            fastco.sleep(5)

    t = fastco.spawn(slow)
    t.join(2)
    assert isinstance(t.exception, Timeout)
    assert with_timeout(0.01, fastco.sleep, 5, timeout_value="late") == "late"
    assert with_timeout(1, lambda: "quick") == "quick"
    with pytest.raises(Timeout):
        with_timeout(0.01, fastco.sleep, 5)


def test_start_twice_is_an_error() -> None:
    t = Timeout(1)
    t.start()
    with pytest.raises(RuntimeError):
        t.start()
    t.cancel()
