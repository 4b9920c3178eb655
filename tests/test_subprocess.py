"""fastco.subprocess and fastco.os: child processes whose waits suspend only one task."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import types

import pytest

import fastco
import fastco.os as coos
import fastco.subprocess as cosp
from conftest import assert_cycles_leave_nothing, run_python

pytestmark = pytest.mark.usefixtures("hub")

PY = sys.executable


def ticker(ticks: list) -> fastco.Task:
    """A task that counts while it gets to run: proof that the loop went on."""
    def run() -> None:
        while True:
            ticks.append(1)
            fastco.sleep(0.005)
    return fastco.spawn(run)


def test_run_in_ten_tasks_overlaps(tmp_path) -> None:
    # Each child registers, then waits until all ten did: if the runs did
    # not overlap, the first would wait forever (until its timeout).
    script = textwrap.dedent(f"""
        import os, sys, time
        open(os.path.join({str(tmp_path)!r}, sys.argv[1]), "w").close()
        deadline = time.monotonic() + 15
        while len(os.listdir({str(tmp_path)!r})) < 10:
            if time.monotonic() > deadline:
                sys.exit("not all ten started")
            time.sleep(0.005)
        print("child", sys.argv[1], "saw all ten")
    """)

    def one(i: int) -> str:
        done = cosp.run([PY, "-c", script, str(i)], capture_output=True, text=True,
                        timeout=20, check=True)
        return done.stdout

    tasks = [fastco.spawn(one, i) for i in range(10)]
    fastco.joinall(tasks, timeout=30, raise_error=True)
    assert [t.value for t in tasks] == [f"child {i} saw all ten\n" for i in range(10)]


def test_wait_suspends_only_the_task() -> None:
    ticks: list = []
    t = ticker(ticks)
    p = cosp.Popen([PY, "-c", "import time; time.sleep(0.3)"])
    assert p.wait() == 0
    assert len(ticks) >= 10
    assert p.wait() == 0 and p.poll() == 0          # reaped once, remembered
    t.kill()


def test_wait_timeout() -> None:
    p = cosp.Popen(["sleep", "10"])
    with pytest.raises(subprocess.TimeoutExpired) as info:
        p.wait(timeout=0.1)
    assert info.value.timeout == 0.1
    p.kill()
    assert p.wait(timeout=5) == -9


def test_communicate_moves_all_pipes_at_once() -> None:
    # The child echoes 4 MiB of stdin to stdout while writing to stderr:
    # with one pipe served at a time both sides would block on full pipes.
    code = ("import sys\n"
            "data = sys.stdin.buffer.read()\n"
            "sys.stderr.buffer.write(b'e' * 300000)\n"
            "sys.stdout.buffer.write(data[::-1])\n")
    data = os.urandom(4 * 1024 * 1024)
    p = cosp.Popen([PY, "-c", code], stdin=cosp.PIPE, stdout=cosp.PIPE, stderr=cosp.PIPE)
    out, err = p.communicate(data, timeout=20)
    assert out == data[::-1] and err == b"e" * 300000 and p.returncode == 0


def test_communicate_timeout_keeps_the_output_for_the_next_call() -> None:
    p = cosp.Popen(["sh", "-c", "echo first; sleep 0.4; echo second; echo oops >&2"],
                   stdout=cosp.PIPE, stderr=cosp.PIPE)
    with pytest.raises(subprocess.TimeoutExpired) as info:
        p.communicate(timeout=0.2)
    assert info.value.output == b"first\n"
    with pytest.raises(ValueError, match="Cannot send input"):
        p.communicate(b"more input")
    assert p.communicate(timeout=5) == (b"first\nsecond\n", b"oops\n")
    assert p.returncode == 0


def test_communicate_after_a_timeout_sends_the_rest_of_the_input() -> None:
    code = ("import sys, time\n"
            "time.sleep(0.3)\n"
            "sys.stdout.buffer.write(sys.stdin.buffer.read()[::-1])\n")
    data = os.urandom(1 << 20)                       # more than a pipe holds
    p = cosp.Popen([PY, "-c", code], stdin=cosp.PIPE, stdout=cosp.PIPE)
    with pytest.raises(subprocess.TimeoutExpired):
        p.communicate(data, timeout=0.1)
    out, err = p.communicate(timeout=20)
    assert out == data[::-1] and err is None and p.returncode == 0


def test_communicate_as_the_stdlib_does_from_3_14_on() -> None:
    # What 3.14 changed in the stdlib's communicate, fastco does on every version:
    # input of wider items is sent whole (its offset counts bytes),
    import array
    data = memoryview(array.array("i", range(100000)))          # 400 kB, more than a pipe holds
    p = cosp.Popen(["cat"], stdin=cosp.PIPE, stdout=cosp.PIPE)
    out, _ = p.communicate(data, timeout=20)
    assert out == data.tobytes()
    # stdin the caller closed is no error,
    p = cosp.Popen(["cat"], stdin=cosp.PIPE, stdout=cosp.PIPE)
    p.stdin.write(b"abc")
    p.stdin.close()
    assert p.communicate(timeout=20) == (b"abc", None)
    # and a timeout that ends in the wait for the child (its pipes closed
    # already) is reported as the caller's timeout, not what was left of it.
    p = cosp.Popen(["sh", "-c", "exec >&- 2>&-; sleep 10"], stdout=cosp.PIPE, stderr=cosp.PIPE)
    with pytest.raises(subprocess.TimeoutExpired) as info:
        p.communicate(timeout=0.3)
    assert info.value.timeout == 0.3
    p.kill()
    p.wait(timeout=5)


def test_text_mode_pipes_and_line_by_line() -> None:
    p = cosp.Popen(["cat"], stdin=cosp.PIPE, stdout=cosp.PIPE, text=True, bufsize=1)
    replies = []
    for i in range(50):
        p.stdin.write(f"line {i}\n")                 # line buffered: sent at the newline
        replies.append(p.stdout.readline())
    p.stdin.close()
    assert p.stdout.read() == ""
    assert replies == [f"line {i}\n" for i in range(50)]
    assert p.wait() == 0
    p.stdout.close()
    done = cosp.run(["sh", "-c", "printf 'a\\r\\nb\\n'; echo é >&2"], capture_output=True,
                    encoding="utf-8")
    assert done.stdout == "a\nb\n" and done.stderr == "é\n"


def test_unbuffered_pipes() -> None:
    with cosp.Popen(["cat"], stdin=cosp.PIPE, stdout=cosp.PIPE, bufsize=0) as p:
        assert p.stdin.write(b"raw") == 3
        assert p.stdout.read(3) == b"raw"
        p.stdin.close()
        assert p.stdout.read() == b""


def test_an_unbuffered_write_sends_all_of_it_as_the_stdlib_does() -> None:
    # The stdlib's unbuffered stdin is a blocking pipe: write() returns once
    # every byte is in; programs do not check its count.  Ours waits in the
    # hub for the child to read, and then returns the whole length too.
    data = os.urandom(1 << 20)                       # more than a pipe holds
    with cosp.Popen([PY, "-c", "import sys; print(len(sys.stdin.buffer.read()))"],
                    stdin=cosp.PIPE, stdout=cosp.PIPE, bufsize=0) as p:
        written = p.stdin.write(data)
        assert written == len(data)
        written = p.stdin.write(memoryview(data).cast("I")[:3])
        assert written == 12                         # bytes, not items
        p.stdin.close()
        assert p.stdout.read() == b"%d\n" % (len(data) + 12)


def test_reading_a_pipe_suspends_only_the_task() -> None:
    ticks: list = []
    t = ticker(ticks)
    with cosp.Popen(["sh", "-c", "sleep 0.3; echo late"], stdout=cosp.PIPE) as p:
        assert p.stdout.read() == b"late\n"
    assert len(ticks) >= 10
    t.kill()


def test_closing_a_pipe_wakes_its_reader_or_writer_with_an_error() -> None:
    with cosp.Popen(["sleep", "10"], stdout=cosp.PIPE) as p:
        reader = fastco.spawn(p.stdout.read, 10)
        fastco.sleep(0.02)
        assert not reader.ready()
        p.stdout.close()
        reader.join(timeout=5)
        assert isinstance(reader.exception, OSError)
        assert reader.exception.errno == errno.EBADF
        p.kill()
    with cosp.Popen(["sleep", "10"], stdin=cosp.PIPE, text=True) as p:
        big = "x" * (1 << 20)                         # more than a pipe holds
        writer = fastco.spawn(lambda: p.stdin.write(big))
        fastco.sleep(0.02)
        assert not writer.ready()
        p.stdin.close()
        writer.join(timeout=5)
        assert isinstance(writer.exception, OSError)
        assert writer.exception.errno == errno.EBADF
        p.kill()


def test_module_functions() -> None:
    assert cosp.check_output(["echo", "hi"]) == b"hi\n"
    assert cosp.check_output("echo $((6 * 7))", shell=True, text=True) == "42\n"
    assert cosp.check_output(["cat"], input=b"fed") == b"fed"
    assert cosp.check_output(["cat"], input=None, text=True) == ""
    assert cosp.call(["sh", "-c", "exit 3"]) == 3
    assert cosp.check_call(["true"]) == 0
    with pytest.raises(subprocess.CalledProcessError) as info:
        cosp.check_call(["sh", "-c", "exit 4"])
    assert info.value.returncode == 4
    with pytest.raises(subprocess.CalledProcessError) as info:
        cosp.run(["sh", "-c", "echo out; exit 5"], capture_output=True, check=True)
    assert (info.value.returncode, info.value.output) == (5, b"out\n")
    assert cosp.getstatusoutput("echo a; echo b >&2; exit 3") == (3, "a\nb")
    assert cosp.getoutput("echo x") == "x"
    with pytest.raises(subprocess.TimeoutExpired):
        cosp.run(["sleep", "10"], timeout=0.1)
    with pytest.raises(subprocess.TimeoutExpired):
        cosp.call(["sleep", "10"], timeout=0.1)
    with pytest.raises(ValueError, match="stdin and input"):
        cosp.run(["cat"], input=b"x", stdin=cosp.PIPE)
    with pytest.raises(ValueError, match="capture_output"):
        cosp.run(["true"], capture_output=True, stdout=cosp.PIPE)
    with pytest.raises(ValueError, match="stdout argument not allowed"):
        cosp.check_output(["true"], stdout=cosp.PIPE)
    with pytest.raises(ValueError, match="check argument not allowed"):
        cosp.check_output(["true"], check=False)
    with pytest.raises(FileNotFoundError):
        cosp.run(["/nonexistent/program"])


def test_module_mirrors_the_stdlib() -> None:
    public = [n for n in dir(subprocess) if not n.startswith("_")
              and not isinstance(getattr(subprocess, n), types.ModuleType)]
    assert not [n for n in public if not hasattr(cosp, n)]
    assert cosp.CalledProcessError is subprocess.CalledProcessError
    assert issubclass(cosp.Popen, subprocess.Popen)
    assert not [n for n in os.__all__ if not hasattr(coos, n)]
    assert coos.getpid is os.getpid


def test_os_waitpid_on_a_pidfd_and_by_polling() -> None:
    ticks: list = []
    t = ticker(ticks)
    # posix_spawn rather than fork: this process may have threads by now.
    pids = [os.posix_spawnp("sh", ["sh", "-c", f"sleep 0.2; exit {status}"], os.environ)
            for status in (3, 4)]
    assert coos.waitpid(pids[0], os.WNOHANG) == (0, 0)   # WNOHANG: the stdlib's, at once
    pid, sts = coos.waitpid(pids[0], 0)             # one child: its pidfd
    assert (pid, os.waitstatus_to_exitcode(sts)) == (pids[0], 3)
    pid, sts = coos.waitpid(pids[1], os.WUNTRACED)  # stops reported too: polling
    assert (pid, os.waitstatus_to_exitcode(sts)) == (pids[1], 4)
    assert len(ticks) >= 10
    with pytest.raises(ChildProcessError):
        coos.waitpid(pids[1], 0)                    # already reaped
    with pytest.raises(ChildProcessError):
        coos.waitpid(os.getppid(), 0)               # not a child of ours
    t.kill()


def test_no_fd_left_after_many_children() -> None:
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    cosp.run(["true"], capture_output=True)
    before = fds()
    for i in range(60):
        assert cosp.run(["echo", str(i)], capture_output=True, input=b"").stdout == b"%d\n" % i
        with cosp.Popen(["cat"], stdin=cosp.PIPE, stdout=cosp.PIPE) as p:
            p.stdin.write(b"x")
    assert fds() == before


def test_wait_polls_where_there_is_no_pidfd(monkeypatch) -> None:
    monkeypatch.setattr(coos, "_pidfd_works", False)
    ticks: list = []
    t = ticker(ticks)
    assert cosp.run(["sh", "-c", "sleep 0.2; exit 6"]).returncode == 6
    assert len(ticks) >= 10
    p = cosp.Popen(["sleep", "10"])
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0.1)
    p.kill()
    assert p.wait(timeout=5) == -9
    t.kill()


def test_children_in_a_loop_leave_memory_and_fds_flat() -> None:
    assert_cycles_leave_nothing("""
        import fastco
        from fastco import subprocess

        def cycle(i):
            assert subprocess.run(["cat"], input=b"x%d" % i, capture_output=True).stdout \
                == b"x%d" % i
            with subprocess.Popen(["sleep", "5"], stdout=subprocess.PIPE, text=True) as p:
                def read():
                    try:
                        p.stdout.read()
                    except OSError as exc:       # EBADF: closed under it
                        return exc.errno
                reader = fastco.spawn(read)
                fastco.sleep(0)
                p.stdout.close()
                assert reader.get() == 9
                p.kill()
    """, warm=30, rounds=300)


def _run(code: str) -> str:
    proc = run_python(code=textwrap.dedent(code), timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_patch_all_makes_stdlib_subprocess_and_waitpid_cooperative(tmp_path) -> None:
    out = _run(f"""
        from fastco import monkey
        monkey.patch_all()
        monkey.patch_all()                      # twice: harmless
        import os, subprocess, sys
        import fastco, fastco.subprocess
        assert subprocess.Popen is fastco.subprocess.Popen
        assert monkey.get_original("subprocess", "Popen").__module__ == "subprocess"
        d = {str(tmp_path)!r}
        script = ("import os, sys, time\\n"
                  "open(os.path.join(%r, sys.argv[1]), 'w').close()\\n"
                  "while len(os.listdir(%r)) < 10: time.sleep(0.005)\\n" % (d, d))
        tasks = [fastco.spawn(subprocess.run, [sys.executable, "-c", script, str(i)],
                              check=True, timeout=20) for i in range(10)]
        fastco.joinall(tasks, timeout=30, raise_error=True)
        assert subprocess.check_output(["echo", "x"]) == b"x\\n"
        pid = os.fork()
        if pid == 0:
            os._exit(9)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 9
        pid = os.fork()
        if pid == 0:
            import time
            time.sleep(0.1)
            os._exit(8)
        ticks = []
        def tick():
            while True:
                ticks.append(1)
                fastco.sleep(0.005)
        fastco.spawn(tick)
        assert os.wait() == (pid, 8 << 8)       # any child: polls, the ticker runs meanwhile
        assert len(ticks) >= 5, ticks
        print("OK")
    """)
    assert out.strip() == "OK"
