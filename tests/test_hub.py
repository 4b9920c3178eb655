"""The hub: ready queue, timers, fd waits, errors, one hub per thread."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

import fastco
from conftest import POLLERS, run_python
from fastco import getcurrent, greenlet
from fastco import hub as hubmod
from fastco._threadpool import run_in_thread
from fastco.hub import ConcurrentUseError, LoopExit

pytestmark = pytest.mark.usefixtures("hub")


def test_sleep0_runs_ready_greenlets_in_fifo_order(hub) -> None:
    out = []

    def f(name):
        for i in range(3):
            out.append((name, i))
            fastco.sleep(0)

    for name in "abc":
        hub.schedule(greenlet(f, parent=hub), name)
    fastco.sleep(0)
    while len(out) < 9:
        fastco.sleep(0)
    assert out == [(n, i) for i in range(3) for n in "abc"]


def test_sleep_waits_and_timers_fire_in_deadline_order() -> None:
    out = []
    for delay in (0.03, 0.01, 0.02):
        fastco.spawn(lambda d=delay: (fastco.sleep(d), out.append(d)))
    start = time.monotonic()
    fastco.sleep(0.05)
    assert time.monotonic() - start >= 0.05
    assert out == [0.01, 0.02, 0.03]


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (float("nan"), ValueError),
                                      ("1", TypeError), (None, TypeError)])
def test_sleep_bad_durations(bad, exc) -> None:
    with pytest.raises(exc):
        fastco.sleep(bad)


def test_blocking_in_the_hub_is_an_error(hub, capsys) -> None:
    hub.run_callback(fastco.sleep, 0)
    fastco.sleep(0)
    err = capsys.readouterr().err
    assert "RuntimeError" in err and "cannot sleep in the hub" in err


def test_waiting_for_nothing_raises_loop_exit_in_main() -> None:
    with pytest.raises(LoopExit):
        fastco.Event().wait()
    # The hub survives it.
    fastco.sleep(0)
    assert fastco.spawn(lambda: 5).get() == 5


def test_run_callback_runs_in_the_hub_in_order(hub) -> None:
    seen = []
    hub.run_callback(lambda: seen.append(getcurrent() is hub))
    hub.run_callback(seen.append, 2)
    fastco.sleep(0)
    assert seen == [True, 2]


def test_cancelled_timers_do_not_fire_or_pile_up(hub) -> None:
    fired = []
    entries = [hub.call_later(10, fired.append, i) for i in range(2000)]
    for e in entries:
        hub.cancel_timer(e)
    assert hub._core.ntimers == 0  # cancelled timers leave the heap at once
    hub.call_later(0.001, fired.append, "x")
    fastco.sleep(0.01)
    assert fired == ["x"]


def test_wait_read_and_wait_write_on_a_pipe(pipe) -> None:
    r, w = pipe
    got = []

    def reader():
        fastco.wait_read(r, timeout=5)
        got.append(os.read(r, 10))

    t = fastco.spawn(reader)
    fastco.sleep(0.01)
    assert not got
    fastco.wait_write(w, timeout=5)
    os.write(w, b"hi")
    t.join(5)
    assert got == [b"hi"]


def test_wait_read_times_out(pipe) -> None:
    r, w = pipe
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        fastco.wait_read(r, timeout=0.02)
    assert time.monotonic() - start >= 0.02


def test_bad_fds_give_clear_errors(any_hub) -> None:
    with pytest.raises(ValueError):
        fastco.wait_read(-1, timeout=1)
    with pytest.raises(TypeError):
        fastco.wait_read("3", timeout=1)
    with pytest.raises(ValueError):
        fastco.wait_read(0, timeout=-1)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        fastco.wait_read(r, timeout=1)
    assert info.value.errno == errno.EBADF


def test_two_readers_on_one_fd_is_an_error(any_hub, pipe) -> None:
    r, w = pipe
    first = fastco.spawn(fastco.wait_read, r, 5)
    fastco.sleep(0)
    with pytest.raises(ConcurrentUseError):
        fastco.wait_read(r, timeout=1)
    os.write(w, b"x")
    first.join(5)
    assert first.successful()


def test_close_fd_wakes_its_waiter_with_ebadf(any_hub, pipe) -> None:
    r, w = pipe
    t = fastco.spawn(fastco.wait_read, r, 5)
    fastco.sleep(0)
    any_hub.close_fd(r)
    t.join(5)
    assert isinstance(t.exception, OSError) and t.exception.errno == errno.EBADF


def test_keyboard_interrupt_in_a_task_reaches_main() -> None:
    def boom():
        raise KeyboardInterrupt

    fastco.spawn(boom)
    with pytest.raises(KeyboardInterrupt):
        fastco.sleep(0.05)


def test_each_thread_has_its_own_hub(hub) -> None:
    result = {}

    def thread_main():
        h = fastco.get_hub()
        tasks = [fastco.spawn(fastco.sleep, 0.01) for _ in range(3)]
        fastco.joinall(tasks, timeout=5)
        result["hub"] = h
        result["ok"] = all(t.successful() for t in tasks)

    th = threading.Thread(target=thread_main)
    th.start()
    th.join(10)
    assert result["ok"] and result["hub"] is not hub
    assert fastco.get_hub() is hub


def test_run_in_thread_keeps_the_loop_running(any_hub) -> None:
    ticks = []

    def ticker():
        while True:
            ticks.append(1)
            fastco.sleep(0.005)

    t = fastco.spawn(ticker)
    assert run_in_thread(lambda: (time.sleep(0.1), 42)[1]) == 42
    t.kill()
    assert len(ticks) >= 2  # the loop went on while the thread worked
    with pytest.raises(ZeroDivisionError):
        run_in_thread(lambda: 1 / 0)


def test_destroyed_hub_is_replaced(hub) -> None:
    fastco.sleep(0)
    hub.destroy()
    new = fastco.get_hub()
    assert new is not hub
    assert fastco.spawn(lambda: 1).get() == 1
    new.destroy()


def test_poller_choice() -> None:
    for name in POLLERS:
        assert hubmod.Hub(name).poller == name
    with pytest.raises(ValueError):
        hubmod.Hub("kqueue-on-linux")
    proc = run_python(code="import fastco; print(fastco.get_hub().poller)",
                      env={"FASTCO_POLLER": "select"}, timeout=60)
    assert proc.stdout.strip() == "select", proc.stderr


def test_a_greenlet_that_fails_under_the_hub_does_not_stop_it(hub, capsys) -> None:
    def bad(_value):
        raise ValueError("boom")

    hub.schedule(greenlet(bad, parent=hub), None)
    fastco.sleep(0.001)
    assert fastco.spawn(lambda: 7).get() == 7
    assert "ValueError: boom" in capsys.readouterr().err


def test_hub_works_in_a_forked_child() -> None:
    # The child must not share the parent's epoll instance: both wait at once.
    proc = run_python(code="""
import os
import fastco
from fastco import socket

a, b = socket.socketpair()
t = fastco.spawn(b.recv, 10)
fastco.sleep(0)
a.sendall(b"x")
assert t.get() == b"x"          # b's fd is registered in the parent's epoll
pid = os.fork()
if pid == 0:
    c, d = socket.socketpair()
    waiting = [fastco.spawn(d.recv, 10), fastco.spawn(b.recv, 10)]
    fastco.sleep(0.05)
    c.sendall(b"child")
    ok = waiting[0].get(timeout=5) == b"child"
    waiting[1].kill()
    os._exit(0 if ok else 1)
e, f = socket.socketpair()
mine = fastco.spawn(f.recv, 10)
fastco.sleep(0.1)
e.sendall(b"parent")
assert mine.get(timeout=5) == b"parent"
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
""", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "child 0"
