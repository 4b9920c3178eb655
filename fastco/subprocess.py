"""Cooperative child processes: a drop-in for the stdlib ``subprocess`` module.

``fastco.subprocess.Popen`` is the stdlib's Popen (a subclass) whose waits
suspend only the calling task:

- ``wait`` (and so ``run``, ``call``, ``check_call``, ``check_output``, the
  context manager's exit) waits for the child's pidfd in the hub (Linux 5.3+;
  elsewhere it polls with a growing sleep, see fastco.os), with the usual
  ``timeout`` and ``TimeoutExpired``;
- the pipes (``stdin``, ``stdout``, ``stderr``) are non-blocking underneath:
  their reads and writes wait in the hub, in binary and text mode alike;
- ``communicate`` moves data on all pipes at once through the hub, with the
  stdlib's timeout semantics (after ``TimeoutExpired``, calling it again
  returns everything).

Starting a child (fork/exec) takes the time it takes: about a millisecond,
during which the thread does not switch.  The other names of the stdlib
module are re-exported unchanged.
"""

from __future__ import annotations

import errno as _errno
import io as _io
import os as _os
import subprocess as _std
from subprocess import PIPE, STDOUT, CalledProcessError, CompletedProcess, TimeoutExpired
from time import monotonic as _monotonic
from types import ModuleType as _ModuleType
from typing import Any

from fastco import os as _coos
from fastco.hub import current_hub as _current_hub
from fastco.hub import get_hub as _get_hub
from fastco.hub import sleep as _sleep
from fastco.hub import wait_read as _wait_read
from fastco.hub import wait_write as _wait_write
from fastco.sync import Event as _Event

# The stdlib module's public names (not the modules it imported), then ours on top.
__all__ = [name for name in dir(_std)
           if not name.startswith("_") and not isinstance(getattr(_std, name), _ModuleType)]
globals().update({name: getattr(_std, name) for name in __all__})

_CHUNK = 32768


def _remaining(endtime: float | None) -> float | None:
    """Seconds left until ``endtime`` (a ``time.monotonic()`` deadline, as
    the stdlib's ``_communicate`` gets it), or None for no deadline.  Ours:
    3.15 removed ``Popen._remaining_time`` (a module function took its place)."""
    return None if endtime is None else endtime - _monotonic()


class _PipeIO(_io.RawIOBase):
    """One end of a pipe to a child, made non-blocking: reads and writes
    that would block wait in the hub.  It owns the stdlib's FileIO (which
    answers None where it would block) and closes it; closing it wakes a
    task waiting on it with ``OSError(EBADF)``."""

    def __init__(self, file: _io.FileIO) -> None:
        super().__init__()
        self._file = file
        self._waiters = 0
        self._idle: _Event | None = None
        _os.set_blocking(file.fileno(), False)

    def readable(self) -> bool:
        return self._file.readable()

    def writable(self) -> bool:
        return self._file.writable()

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def name(self) -> Any:
        return self._file.name

    @property
    def mode(self) -> str:
        return self._file.mode

    def _wait(self, wait: Any) -> None:
        self._waiters += 1
        try:
            wait(self._file.fileno())
        finally:
            self._waiters -= 1
            if self._waiters == 0 and self._idle is not None:
                self._idle.set()

    def readinto(self, buffer: Any) -> int:
        while True:
            n = self._file.readinto(buffer)
            if n is not None:
                return n
            self._wait(_wait_read)

    def write(self, data: Any) -> int:
        # All of it, as a write to a blocking pipe (the stdlib's unbuffered
        # stdin) does: callers do not look at the count.
        with memoryview(data) as view, view.cast("B") as rest:
            done = 0
            while True:
                n = self._file.write(rest[done:])
                if n is None:
                    self._wait(_wait_write)
                    continue
                done += n
                if done >= len(rest):
                    return done

    def close(self) -> None:
        if not self.closed:
            if not self._file.closed:
                hub = _current_hub()
                if hub is not None:
                    hub.close_fd(self._file.fileno())   # wakes its waiters with EBADF
            self._file.close()
        super().close()

    def close_under(self) -> None:
        """Close, from another task than the one waiting in a read or write
        of the buffered stream above (which holds that stream's lock), and
        wait until that task has left it."""
        if self._waiters:
            self._idle = _Event()
            self.close()
            self._idle.wait()
            self._idle = None


# io's buffered streams hold a lock while they read or write: another task
# closing one while a task is suspended in it would fail as a reentrant call.
# These close the pipe end first (waking that task with EBADF) and wait for
# it to leave; the stream, whose raw end is then closed, closes at once.

class _BufferedReader(_io.BufferedReader):
    """io.BufferedReader whose close() wakes a task suspended in its read."""

    def close(self) -> None:
        self.raw.close_under()
        super().close()


class _BufferedWriter(_io.BufferedWriter):
    """io.BufferedWriter whose close() wakes a task suspended in its write."""

    def close(self) -> None:
        self.raw.close_under()
        super().close()


class _TextIOWrapper(_io.TextIOWrapper):
    """io.TextIOWrapper whose close() wakes a task suspended in its read or
    write (instead of first flushing through the buffered stream's lock)."""

    def close(self) -> None:
        getattr(self.buffer, "raw", self.buffer).close_under()
        super().close()


def _cooperative(stream: Any, bufsize: int) -> Any:
    """The same stream (binary or text, buffered or not, as Popen made it)
    over a cooperative pipe end."""
    text = stream if isinstance(stream, _io.TextIOWrapper) else None
    binary = text.detach() if text is not None else stream
    if isinstance(binary, _io.FileIO):          # bufsize=0: unbuffered
        raw: Any = _PipeIO(binary)
        new: Any = raw
    else:
        raw = _PipeIO(binary.detach())
        size = bufsize if bufsize > 1 else _io.DEFAULT_BUFFER_SIZE
        cls = _BufferedWriter if raw.writable() else _BufferedReader
        new = cls(raw, size)
    if text is not None:
        new = _TextIOWrapper(new, encoding=text.encoding, errors=text.errors,
                                line_buffering=text.line_buffering,
                                write_through=text.write_through)
    return new


class Popen(_std.Popen):
    """subprocess.Popen whose waits and pipes suspend only the calling task
    (same arguments, attributes and methods as the stdlib's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        bufsize = kwargs.get("bufsize", args[1] if len(args) > 1 else -1)
        bufsize = -1 if bufsize is None else bufsize
        for name in ("stdin", "stdout", "stderr"):
            stream = getattr(self, name)
            if stream is not None:
                setattr(self, name, _cooperative(stream, bufsize))

    def _wait(self, timeout: float | None) -> int | None:
        """Wait for the child to end (up to ``timeout`` seconds): on its
        pidfd in the hub, else polling with a growing sleep."""
        if self.returncode is not None:
            return self.returncode
        deadline = None if timeout is None else _monotonic() + timeout
        pidfd = _coos._open_pidfd(self.pid)
        delay = _coos._POLL_FIRST
        try:
            while True:
                # Non-blocking: another thread may hold the lock in a blocking
                # waitpid; then poll until it is done.
                if self._waitpid_lock.acquire(False):
                    try:
                        if self.returncode is not None:
                            break
                        pid, sts = self._try_wait(_os.WNOHANG)
                        if pid == self.pid:
                            self._handle_exitstatus(sts)
                            break
                    finally:
                        self._waitpid_lock.release()
                    locked = False
                else:
                    locked = True
                remaining = None if deadline is None else deadline - _monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutExpired(self.args, timeout)
                if pidfd >= 0 and not locked:
                    try:
                        _wait_read(pidfd, remaining)
                    except TimeoutError:
                        raise TimeoutExpired(self.args, timeout) from None
                else:
                    _sleep(delay if remaining is None else min(delay, remaining))
                    delay = min(delay * 2, _coos._POLL_MAX)
        finally:
            if pidfd >= 0:
                _coos._close_pidfd(pidfd)
        return self.returncode

    def _communicate(self, input: Any, endtime: float | None,
                     orig_timeout: float | None) -> tuple[Any, Any]:
        """Write ``input`` and read stdout/stderr until EOF, all at once, in
        the hub (the stdlib's bookkeeping, so that a call after
        TimeoutExpired goes on where this one stopped, input included)."""
        if self.stdin and not self._communication_started:
            try:
                self.stdin.flush()
            except BrokenPipeError:
                pass   # communicate() ignores a child that stopped reading
            except ValueError:
                # The caller closed stdin: nothing to flush (the stdlib's
                # communicate ignores it too from 3.14 on).
                if not self.stdin.closed:
                    raise
            if not input:
                try:
                    self.stdin.close()
                except BrokenPipeError:
                    pass
        if not self._communication_started:
            self._fileobj2output = {f: [] for f in (self.stdout, self.stderr) if f}
        stdout = self._fileobj2output[self.stdout] if self.stdout else None
        stderr = self._fileobj2output[self.stderr] if self.stderr else None
        self._save_input(input)
        # What is left of the input (after a TimeoutExpired too: the stdlib
        # would stop writing there, and the child wait for the rest).
        writing = bool(self.stdin and not self.stdin.closed and self._input
                       and len(self._input_left()))
        readers = [f for f in (self.stdout, self.stderr) if f and not f.closed]
        while writing or readers:
            moved = False
            if writing:
                moved, writing = self._feed_stdin()
            for f in list(readers):
                try:
                    data = _os.read(f.fileno(), _CHUNK)
                except BlockingIOError:
                    continue
                moved = True
                if data:
                    self._fileobj2output[f].append(data)
                else:
                    readers.remove(f)
                    f.close()
            self._check_timeout(endtime, orig_timeout, stdout, stderr)
            if moved or not (writing or readers):
                continue
            remaining = _remaining(endtime)
            if remaining is not None and remaining <= 0:
                self._check_timeout(endtime, orig_timeout, stdout, stderr,
                                    skip_check_and_raise=True)
            wfds = [self.stdin.fileno()] if writing else []
            _get_hub().wait_fds([f.fileno() for f in readers], wfds, remaining)
        try:
            self.wait(timeout=_remaining(endtime))
        except TimeoutExpired as exc:
            exc.timeout = orig_timeout   # the caller's timeout, as the stdlib's from 3.14 on
            raise
        out = b"".join(stdout) if stdout is not None else None
        err = b"".join(stderr) if stderr is not None else None
        if self.text_mode:
            if out is not None:
                out = self._translate_newlines(out, self.stdout.encoding, self.stdout.errors)
            if err is not None:
                err = self._translate_newlines(err, self.stderr.encoding, self.stderr.errors)
        return out, err

    def _input_left(self) -> memoryview:
        """The bytes of the input not written yet.  The offset counts bytes,
        for a memoryview of wider items too (as in the stdlib from 3.14 on;
        3.13's cut such input short)."""
        return memoryview(self._input).cast("B")[self._input_offset:]

    def _feed_stdin(self) -> tuple[bool, bool]:
        """Write what the pipe takes of the rest of the input; returns
        (whether anything moved, whether there is more to write)."""
        view = self._input_left()
        try:
            written = _os.write(self.stdin.fileno(), view)
        except BlockingIOError:
            return False, True
        except BrokenPipeError:
            self.stdin.close()
            return True, False
        except OSError as exc:   # the child closed its end oddly: as the stdlib, stop
            if exc.errno != _errno.EINVAL:
                raise
            self.stdin.close()
            return True, False
        self._input_offset += written
        if written >= len(view):
            self.stdin.close()
            return True, False
        return True, True


def call(*popenargs: Any, timeout: float | None = None, **kwargs: Any) -> int:
    """Run a command and return its exit status (cooperatively)."""
    with Popen(*popenargs, **kwargs) as p:
        try:
            return p.wait(timeout=timeout)
        except BaseException:
            p.kill()   # the context manager's exit waits for it
            raise


def check_call(*popenargs: Any, **kwargs: Any) -> int:
    """Run a command; CalledProcessError if its exit status is not 0."""
    retcode = call(*popenargs, **kwargs)
    if retcode:
        cmd = kwargs.get("args")
        raise CalledProcessError(retcode, popenargs[0] if cmd is None else cmd)
    return 0


def run(*popenargs: Any, input: Any = None, capture_output: bool = False,
        timeout: float | None = None, check: bool = False,
        **kwargs: Any) -> CompletedProcess[Any]:
    """Run a command, wait for it and return a CompletedProcess (as
    subprocess.run; only the calling task waits)."""
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        kwargs["stdin"] = PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        kwargs["stdout"] = kwargs["stderr"] = PIPE
    with Popen(*popenargs, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except TimeoutExpired:
            process.kill()
            process.wait()
            raise
        except BaseException:
            process.kill()
            raise
        retcode = process.poll()
        if check and retcode:
            raise CalledProcessError(retcode, process.args, output=stdout, stderr=stderr)
    return CompletedProcess(process.args, retcode, stdout, stderr)


def check_output(*popenargs: Any, timeout: float | None = None, **kwargs: Any) -> Any:
    """Run a command and return its output; CalledProcessError if it failed."""
    for kw in ("stdout", "check"):
        if kw in kwargs:
            raise ValueError(f"{kw} argument not allowed, it will be overridden.")
    if "input" in kwargs and kwargs["input"] is None:
        text = any(kwargs.get(k) for k in ("universal_newlines", "text", "encoding", "errors"))
        kwargs["input"] = "" if text else b""
    return run(*popenargs, stdout=PIPE, timeout=timeout, check=True, **kwargs).stdout


def getstatusoutput(cmd: Any, *, encoding: str | None = None,
                    errors: str | None = None) -> tuple[int, str]:
    """(exit status, output) of a shell command, stderr included, without
    the last newline."""
    try:
        data = check_output(cmd, shell=True, text=True, stderr=STDOUT,
                            encoding=encoding, errors=errors)
        exitcode = 0
    except CalledProcessError as exc:
        data = exc.output
        exitcode = exc.returncode
    if data[-1:] == "\n":
        data = data[:-1]
    return exitcode, data


def getoutput(cmd: Any, *, encoding: str | None = None, errors: str | None = None) -> str:
    """The output of a shell command, stderr included, without the last newline."""
    return getstatusoutput(cmd, encoding=encoding, errors=errors)[1]
