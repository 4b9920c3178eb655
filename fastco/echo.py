"""The ``fastco echo`` command: a TCP echo server on fastco's StreamServer.

    fastco echo [--host 127.0.0.1] [--port 7788] [--workers N] [--backlog N]
                [--max-conns N] [--idle-timeout S] [--grace S]
                [--backend asm|ucontext] [--stats-interval S] [-v]

Each connection runs :func:`echo`, the handler a user would write: read what
arrives, write it all back, until the client closes its side (a half-close:
everything received was echoed, then the server closes).  It prints
``listening on HOST:PORT`` once it accepts.  SIGINT or SIGTERM: it stops
accepting, gives the open connections ``--grace`` seconds to end (a second
signal ends them at once), prints a summary (connections served, bytes
echoed, errors) and exits 0.

``--workers N`` pre-forks N processes that each listen on the port with
``SO_REUSEPORT`` (the kernel spreads connections over them); the parent
supervises them: a worker that dies is reported and restarted, and at the
end the parent prints the summary of all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket as _stdsocket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import fastco
from fastco import socket as cosocket
from fastco.server import StreamServer

__all__ = ["echo", "main"]

#: The most a connection reads at once: the bound on what the server holds
#: per connection (a client that sends but never reads blocks its handler in
#: sendall with at most this much in hand).
BUFSIZE = 65536
DEFAULT_PORT = 7788
DEFAULT_GRACE = 5.0


def echo(sock: cosocket.socket, address: Any) -> None:
    """Echo what ``sock`` receives until the client closes its side.

    The handler a user would write.  ``sendall`` writes everything (partial
    sends continue) and blocks, in this task only, while the client does not
    read: the server then holds at most one buffer for this connection.
    (The bytes are counted by the hub: ``Hub.bytes_sent``.)
    """
    while data := sock.recv(BUFSIZE):
        sock.sendall(data)


# ---------------------------------------------------------------------------
# The command line


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, not {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {text}")
    return value


def build_parser(prog: str = "fastco echo") -> argparse.ArgumentParser:
    """The ``fastco echo`` argument parser."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="A TCP echo server: every byte a client sends comes back to it.",
        epilog="SIGINT/SIGTERM: stop accepting, give open connections --grace seconds, "
               "print a summary, exit 0 (a second signal closes them at once).")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; '' or 0.0.0.0: all)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT}; 0: any free port, printed)")
    p.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="processes sharing the port with SO_REUSEPORT, supervised "
                        "(default 1: no fork)")
    p.add_argument("--backlog", type=_positive_int, default=1024, metavar="N",
                   help="listen queue length (default 1024, capped by net.core.somaxconn)")
    p.add_argument("--max-conns", type=_positive_int, default=None, metavar="N",
                   help="most connections open at once (per worker); beyond it, stop "
                        "accepting until one closes (default: no limit)")
    p.add_argument("--idle-timeout", type=_seconds, default=0.0, metavar="S",
                   help="close a connection whose recv, or sendall of what it read, waits "
                        "longer than S seconds: a silent client, or one that stopped "
                        "reading (default 0: never)")
    p.add_argument("--grace", type=_seconds, default=DEFAULT_GRACE, metavar="S",
                   help=f"at SIGINT/SIGTERM, how long open connections may go on "
                        f"(default {DEFAULT_GRACE:g})")
    p.add_argument("--backend", choices=fastco.available_backends(), default=None,
                   help=f"context-switch backend (default {fastco.backend()})")
    p.add_argument("--stats-interval", type=_seconds, default=0.0, metavar="S",
                   help="print counters every S seconds (default 0: only at the end)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print each connection's end, and more")
    return p


class Totals:
    """What a run served: the server's counters and the bytes echoed."""

    FIELDS = ("accepted", "closed", "active", "bytes", "disconnects", "timeouts",
              "errors", "killed", "accept_errors", "accept_backoffs")

    def __init__(self, **values: int) -> None:
        self.values = {f: int(values.get(f, 0)) for f in self.FIELDS}

    @classmethod
    def of(cls, server: StreamServer, echoed: int) -> Totals:
        """The totals of one server that echoed ``echoed`` bytes."""
        return cls(**server.stats.as_dict(), bytes=echoed)

    def __add__(self, other: Totals) -> Totals:
        return Totals(**{f: self.values[f] + other.values[f] for f in self.FIELDS})

    def line(self) -> str:
        """The summary, as printed at the end."""
        v = self.values
        return (f"{v['accepted']} connections served, {_size(v['bytes'])} echoed, "
                f"{v['errors']} errors ({v['disconnects']} client resets/broken pipes, "
                f"{v['timeouts']} idle timeouts, {v['killed']} closed at shutdown, "
                f"{v['accept_errors']} accept errors)")


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n:,} bytes ({n / scale:.1f} {unit})"
    return f"{n:,} bytes"


def _say(out: TextIO, text: str) -> None:
    try:
        out.write(text + "\n")
        out.flush()
    except (OSError, ValueError):
        pass  # stdout closed: nothing to tell


def _raise_fd_limit() -> None:
    # Many connections need many fds: take the soft limit up to the hard one.
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve(args: argparse.Namespace, *, reuse_port: bool = False, announce: bool = True,
          label: str = "", out: TextIO = sys.stdout,
          on_listening: Callable[[], None] | None = None,
          parent_fd: int | None = None) -> tuple[int, Totals]:
    """Run one echo server process until SIGINT/SIGTERM (or a fatal error);
    returns (exit status, totals).  ``on_listening()`` is called once it
    listens.  ``parent_fd``: the read end of a pipe nobody writes to; its EOF
    (the supervisor is gone) stops the server like SIGTERM."""
    hub = fastco.get_hub()
    sent0 = hub.bytes_sent   # what the handlers send back is what they echoed
    server = StreamServer(
        (args.host, args.port), echo,
        backlog=args.backlog, max_conns=args.max_conns,
        idle_timeout=args.idle_timeout or None, reuse_port=reuse_port)
    try:
        server.start()
    except OSError as exc:
        print(f"fastco echo: cannot listen on {_format_address(args.host, args.port)}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1, Totals.of(server, 0)
    host, port = server.address[:2]
    started = time.monotonic()
    # Signals are handled before anybody is told where we listen: a SIGTERM
    # right after the line must end in a summary, not in the default action.
    signals = _SignalTask(server, args.grace, out, label)
    if on_listening is not None:
        on_listening()
    if announce:
        _say(out, f"listening on {_format_address(host, port)}")
        if args.verbose:
            _say(out, f"fastco echo: pid {os.getpid()}, backend {fastco.backend()}, "
                      f"backlog {args.backlog}, max-conns {args.max_conns or 'none'}, "
                      f"idle-timeout {args.idle_timeout or 'none'}")
    orphan_watch = None
    if parent_fd is not None:
        orphan_watch = fastco.spawn(_watch_parent, parent_fd, signals)
    ticker = None
    if args.stats_interval:
        ticker = fastco.spawn(_print_stats, server, lambda: hub.bytes_sent - sent0,
                              args.stats_interval, out, label)
    try:
        server.serve_forever(stop_timeout=args.grace)
        status = 0
    except OSError as exc:
        print(f"fastco echo{label}: fatal: {exc}", file=sys.stderr)
        status = 1
    finally:
        signals.close()
        for task in (ticker, orphan_watch):
            if task is not None:
                task.kill()
    totals = Totals.of(server, hub.bytes_sent - sent0)
    if announce or args.verbose:
        _say(out, f"fastco echo{label}: stopped after {time.monotonic() - started:.1f} s: "
                  f"{totals.line()}")
    return status, totals


class _SignalTask:
    """SIGINT/SIGTERM, handled in a task: the first closes the server (its
    serve_forever then gives connections the grace period), the second ends
    the connections at once.

    The signals reach the hub through ``signal.set_wakeup_fd`` (the C-level
    handler writes the signal number to a socket the task reads), so a signal
    that arrives just before the hub blocks in epoll_wait still wakes it.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, server: StreamServer, grace: float, out: TextIO, label: str) -> None:
        self.server, self.grace, self.out, self.label = server, grace, out, label
        self.count = 0
        self.rsock, self.wsock = cosocket.socketpair()
        self.old_fd = signal.set_wakeup_fd(self.wsock.fileno(), warn_on_full_buffer=False)
        for signum in self.SIGNALS:
            signal.signal(signum, _ignore_signal)
        # A worker starts with them blocked (see Supervisor._fork): one that
        # came meanwhile is delivered now, to the handler.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self.SIGNALS)
        self.task = fastco.spawn(self._run)

    def _run(self) -> None:
        while data := self.rsock.recv(64):
            for signum in data:
                if signum in self.SIGNALS:
                    self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1:
            n = self.server.connections
            _say(self.out, f"fastco echo{self.label}: {name}: not accepting any more"
                 + (f"; waiting up to {self.grace:g} s for {n} open connection(s)"
                    if n else ""))
            self.server.close()
        else:
            _say(self.out, f"fastco echo{self.label}: {name} again: closing "
                           f"{self.server.connections} connection(s) now")
            self.server.kill_connections()

    def close(self) -> None:
        # The no-op handlers stay: a signal that comes late, while the summary
        # is printed, must not turn into a KeyboardInterrupt traceback.
        signal.set_wakeup_fd(self.old_fd)
        self.task.kill()
        self.rsock.close()
        self.wsock.close()


def _watch_parent(fd: int, signals: _SignalTask) -> None:
    """Wait for EOF on fd (the supervisor died, even by SIGKILL): stop as at SIGTERM."""
    while True:
        fastco.wait_read(fd)
        try:
            if os.read(fd, 1) == b"":
                break
        except BlockingIOError:
            continue
    _say(signals.out, f"fastco echo{signals.label}: the supervisor is gone: stopping")
    signals.server.close()


def _ignore_signal(signum: int, frame: Any) -> None:
    """The Python-level handler: nothing (the wakeup fd carries the signal)."""


def _print_stats(server: StreamServer, echoed: Callable[[], int], interval: float,
                 out: TextIO, label: str) -> None:
    last_bytes, last_t = 0, time.monotonic()
    while True:
        fastco.sleep(interval)
        now, total = time.monotonic(), echoed()
        rate = (total - last_bytes) / max(now - last_t, 1e-9) / 1e6
        last_bytes, last_t = total, now
        s = server.stats
        _say(out, f"stats{label}: {s.active} open, {s.accepted} accepted, "
                  f"{total:,} bytes echoed ({rate:.1f} MB/s), {s.errors} errors, "
                  f"{s.disconnects} resets, {s.timeouts} timeouts, "
                  f"{s.accept_errors} accept errors")


# ---------------------------------------------------------------------------
# Workers: pre-forked processes sharing the port, and their supervisor


class Supervisor:
    """Forks the workers, restarts those that die, stops them on a signal.

    The parent reserves the port with a bound (not listening) socket, so that
    ``--port 0`` means one port for all, and a restarted worker gets it back.
    It waits with ``sigtimedwait`` on SIGCHLD/SIGINT/SIGTERM (blocked), so no
    handler races with it.  Each worker writes its totals, as a JSON line, to
    a pipe the parent reads, for the final summary.
    """

    QUICK_DEATH = 1.0       # a worker that dies younger than this (seconds) may be crash-looping

    def __init__(self, args: argparse.Namespace, out: TextIO = sys.stdout) -> None:
        self.args, self.out = args, out
        self.workers: dict[int, tuple[int, float]] = {}   # pid -> (index, start time)
        self.pending: list[tuple[float, int]] = []        # (restart time, index)
        self.restarts = 0
        self.quick_deaths: dict[int, int] = {}           # index -> deaths in a row
        self.lost = 0                                    # workers that ended unreported
        self.totals = Totals()
        self.reported: set[int] = set()                  # pids whose counts arrived
        self.ready: set[int] = set()                     # indexes that listen
        self.buffer = b""
        self.stopping = False
        self.failed = False                              # a worker died before listening

    def run(self) -> int:
        """Reserve the port, fork the workers, supervise them until a signal
        (or a start-up failure); returns the exit status."""
        args = self.args
        family = _stdsocket.AF_INET6 if ":" in args.host else _stdsocket.AF_INET
        self.placeholder = _stdsocket.socket(family, _stdsocket.SOCK_STREAM)
        self.placeholder.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
        self.placeholder.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEPORT, 1)
        try:
            self.placeholder.bind((args.host, args.port))
        except OSError as exc:
            print(f"fastco echo: cannot listen on {_format_address(args.host, args.port)}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
            return 1
        args.port = self.placeholder.getsockname()[1]
        self.rpipe, self.wpipe = os.pipe()
        os.set_blocking(self.rpipe, False)
        # Only this process holds alive_w: the workers see EOF on alive_r
        # when it is gone, however it died.
        self.alive_r, self.alive_w = os.pipe()
        os.set_blocking(self.alive_r, False)
        mask = {signal.SIGCHLD, signal.SIGINT, signal.SIGTERM}
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, mask)
        try:
            return self._supervise(mask, old_mask)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            for fd in (self.rpipe, self.wpipe, self.alive_r, self.alive_w):
                os.close(fd)
            self.placeholder.close()

    def _supervise(self, mask: set[int], old_mask: Any) -> int:
        args = self.args
        for index in range(1, args.workers + 1):
            self._fork(index, old_mask)
        started = time.monotonic()
        kill_at = None
        announced = False
        while self.workers or (self.pending and not self.stopping):
            self._reap()
            self._read_reports()
            if not announced and (len(self.ready) >= args.workers
                                  or time.monotonic() - started > 10):
                # Every worker listens (or some never will: say where anyway).
                announced = True
                _say(self.out, f"listening on {_format_address(args.host, args.port)} "
                               f"({args.workers} workers, supervisor pid {os.getpid()})")
            now = time.monotonic()
            for when, index in list(self.pending):
                if when <= now and not self.stopping:
                    self.pending.remove((when, index))
                    self._fork(index, old_mask)
            if not self.workers and (self.stopping or not self.pending):
                break
            if kill_at is not None and now >= kill_at:
                for pid in self.workers:
                    _kill(pid, signal.SIGKILL)
                kill_at = now + 5.0
            wake = [kill_at] if kill_at is not None else []
            wake += [when for when, _ in self.pending]
            timeout = max(0.0, min(wake) - now) if wake else 1.0
            if not announced:
                timeout = min(timeout, 0.01)
            info = signal.sigtimedwait(mask, min(timeout, 1.0))
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            name = signal.Signals(info.si_signo).name
            if not self.stopping:
                self.stopping = True
                self.pending.clear()
                kill_at = time.monotonic() + args.grace + 5.0
                _say(self.out, f"fastco echo: {name}: stopping {len(self.workers)} worker(s)")
            else:
                _say(self.out, f"fastco echo: {name} again: closing connections now")
            for pid in self.workers:
                _kill(pid, signal.SIGTERM)
        self._read_reports()
        lost = (f", {self.lost} worker(s) ended without reporting their counts"
                if self.lost else "")
        _say(self.out, f"fastco echo: stopped after {time.monotonic() - started:.1f} s: "
                       f"{self.totals.line()}; {args.workers} workers, "
                       f"{self.restarts} restart(s){lost}")
        return 1 if self.failed else 0

    def _fork(self, index: int, old_mask: Any) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:   # the worker
            status = 1
            try:
                # SIGINT/SIGTERM stay blocked until serve() handles them: one
                # sent while the worker starts (a quick stop after a restart)
                # must end in its report, not in the default action.
                signal.pthread_sigmask(signal.SIG_SETMASK,
                                       set(old_mask) | set(_SignalTask.SIGNALS))
                os.close(self.rpipe)
                os.close(self.alive_w)
                self.placeholder.close()
                def ready() -> None:
                    os.write(self.wpipe, json.dumps({"ready": index}).encode() + b"\n")

                status, totals = serve(self.args, reuse_port=True, announce=False,
                                       label=f" [worker {index}]", out=self.out,
                                       on_listening=ready, parent_fd=self.alive_r)
                report = json.dumps({"pid": os.getpid(), **totals.values}) + "\n"
                os.write(self.wpipe, report.encode())
            except BaseException:  # noqa: BLE001 - a worker must never return to the parent
                import traceback
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(status)
        self.workers[pid] = (index, time.monotonic())
        if self.args.verbose:
            _say(self.out, f"fastco echo: worker {index} started (pid {pid})")

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            if pid not in self.workers:
                continue
            index, began = self.workers.pop(pid)
            self._read_reports()   # a worker writes its counts before it exits
            if pid in self.reported:
                self.reported.discard(pid)
            else:
                self.lost += 1
            code = os.waitstatus_to_exitcode(status)
            if self.stopping and code == 0:
                continue
            how = (f"was killed by {signal.Signals(-code).name}" if code < 0
                   else f"exited with status {code}")
            if self.stopping:
                _say(self.out, f"fastco echo: worker {index} (pid {pid}) {how}")
                continue
            if not self.ready:
                # No worker ever listened: something is wrong with the set-up,
                # not with one worker.  Give up rather than loop.
                print(f"fastco echo: worker {index} (pid {pid}) {how} before listening: "
                      f"stopping", file=sys.stderr)
                self.failed = True
                self.stopping = True
                self.pending.clear()
                for other in self.workers:
                    _kill(other, signal.SIGTERM)
                continue
            self.restarts += 1
            # A worker that keeps dying young is in a crash loop: restart it
            # at once the first time, then after 1, 2, 4... up to 30 s.
            if time.monotonic() - began < self.QUICK_DEATH:
                self.quick_deaths[index] = self.quick_deaths.get(index, 0) + 1
            else:
                self.quick_deaths[index] = 0
            k = self.quick_deaths[index]
            delay = 0.0 if k <= 1 else min(2.0 ** (k - 2), 30.0)
            _say(self.out, f"fastco echo: worker {index} (pid {pid}) {how}: restarting it"
                           + (f" in {delay:g} s" if delay else ""))
            self.pending.append((time.monotonic() + delay, index))

    def _read_reports(self) -> None:
        while True:
            try:
                chunk = os.read(self.rpipe, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            try:
                values = json.loads(line)
            except ValueError:
                continue
            if "ready" in values:
                self.ready.add(values["ready"])
                continue
            self.reported.add(values.pop("pid"))
            self.totals = self.totals + Totals(**values)


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def main(argv: Sequence[str] | None = None, prog: str = "fastco echo") -> int:
    """Run the ``fastco echo`` command; returns the exit status (2: bad usage)."""
    args = build_parser(prog).parse_args(argv)
    if args.backend is not None and args.backend != fastco.backend():
        try:
            fastco.set_backend(args.backend)
        except (ValueError, fastco.error) as exc:
            print(f"{prog}: --backend {args.backend}: {exc}", file=sys.stderr)
            return 2
    _raise_fd_limit()
    if args.workers > 1:
        return Supervisor(args).run()
    status, _ = serve(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
