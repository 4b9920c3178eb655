"""Debuggers, profilers and coverage see code that runs in coroutines."""

from __future__ import annotations

import json
import sys

import pytest

import fastco
from conftest import run_python
from fastco import getcurrent, greenlet


def body_in_coroutine(x):
    y = x + 1
    getcurrent().parent.switch(y)
    return y * 2


def test_sys_settrace_sees_lines_in_coroutines() -> None:
    lines = []

    def tracer(frame, event, arg):
        if frame.f_code is body_in_coroutine.__code__ and event == "line":
            lines.append(frame.f_lineno - body_in_coroutine.__code__.co_firstlineno)
        return tracer

    sys.settrace(tracer)
    try:
        g = greenlet(body_in_coroutine)
        assert g.switch(1) == 2
        assert g.switch() == 4
    finally:
        sys.settrace(None)
    assert lines == [1, 2, 3]


def test_settrace_set_inside_a_coroutine_reaches_the_others() -> None:
    calls = []

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "marker":
            calls.append(event)
        return None

    def marker():
        pass

    def setter():
        sys.settrace(tracer)
        getcurrent().parent.switch()
        marker()
        sys.settrace(None)

    g = greenlet(setter)
    g.switch()
    try:
        marker()                   # in main, after the switch back
    finally:
        g.switch()
        sys.settrace(None)
    assert calls == ["call", "call"]


def test_sys_setprofile_sees_calls_in_coroutines() -> None:
    events = []

    def profiler(frame, event, arg):
        if frame.f_code is body_in_coroutine.__code__:
            events.append(event)

    sys.setprofile(profiler)
    try:
        g = greenlet(body_in_coroutine)
        g.switch(1)
        g.switch()
    finally:
        sys.setprofile(None)
    # called, left (switch away), resumed, returned
    assert events[0] == "call" and events[-1] == "return"


def test_fastco_settrace_per_thread() -> None:
    import threading

    seen = []
    fastco.settrace(lambda event, args: seen.append(event))
    try:
        t = threading.Thread(target=lambda: greenlet(lambda: None).switch())
        t.start()
        t.join()
        assert seen == []                 # the other thread has no trace function
        greenlet(lambda: None).switch()
        assert seen == ["switch", "switch"]
    finally:
        fastco.settrace(None)


COVERED = r'''
from fastco import greenlet, getcurrent

def only_in_coroutine(n):
    total = 0
    for i in range(n):
        total += i
        getcurrent().parent.switch(total)
    return total

def never_called():
    return "not covered"

g = greenlet(only_in_coroutine)
value = g.switch(3)
while not g.dead:
    value = g.switch()
'''


def test_coverage_measures_code_run_in_coroutines(tmp_path) -> None:
    pytest.importorskip("coverage")
    script = tmp_path / "covered.py"
    script.write_text(COVERED)
    out = tmp_path / "cov.json"
    proc = run_python("-m", "coverage", "run", "--data-file", str(tmp_path / ".cov"),
                      str(script))
    assert proc.returncode == 0, proc.stderr
    proc = run_python("-m", "coverage", "json", "--data-file", str(tmp_path / ".cov"),
                      "-o", str(out), "--include", str(script))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    (fdata,) = data["files"].values()
    executed = set(fdata["executed_lines"])
    missing = set(fdata["missing_lines"])
    lines = COVERED.splitlines()
    body = {i + 1 for i, text in enumerate(lines)
            if text.strip().startswith(("total", "for i", "getcurrent().parent", "return total"))}
    assert body <= executed, (body, executed)
    assert any("not covered" in lines[i - 1] for i in missing)
