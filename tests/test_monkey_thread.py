"""monkey.patch_thread / patch_queue: unmodified stdlib code with threads as tasks.

Each test runs a fresh interpreter that patches first thing.  Concurrency is
proven by structure, never by time: N threads that each wait until all N are
inside (a Barrier, a count under a Condition) can only finish if they really
interleave; and they all run in one OS thread (the original get_ident).
"""

from __future__ import annotations

import textwrap

from conftest import PROC_STATS, run_python

PRELUDE = """
from fastco import monkey
monkey.patch_all()
import threading, queue, time, _thread
import fastco
real_ident = monkey.get_original("_thread", "get_ident")
MAIN_OS_THREAD = real_ident()
"""


def _run(code: str, env: dict[str, str] | None = None) -> str:
    proc = run_python(code=PRELUDE + textwrap.dedent(code), timeout=90, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def test_queue_event_condition_between_thread_tasks() -> None:
    out = _run("""
        N = 20
        # queue.Queue: every thread registers, then blocks in get() until the
        # main thread, having seen all N arrive, feeds them.
        arrived, work, results = queue.Queue(), queue.Queue(), queue.Queue()
        os_threads = set()
        def worker(i):
            os_threads.add(real_ident())
            arrived.put(i)
            results.put((i, work.get() * 2, threading.get_ident()))
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
        for t in threads:
            t.start()
        assert sorted(arrived.get() for _ in range(N)) == list(range(N))
        for i in range(N):
            work.put(i)
        for t in threads:
            t.join()
        got = [results.get_nowait() for _ in range(N)]
        assert sorted(x for _, x, _ in got) == [2 * i for i in range(N)]
        assert len({ident for *_, ident in got}) == N          # get_ident per task
        assert os_threads == {MAIN_OS_THREAD}                   # all in one OS thread
        assert not any(t.is_alive() for t in threads)

        # threading.Event: N waiters, set once all N wait.
        ev, waiting = threading.Event(), []
        def ev_waiter():
            waiting.append(1)
            assert ev.wait()
        threads = [threading.Thread(target=ev_waiter) for _ in range(N)]
        for t in threads:
            t.start()
        while len(waiting) < N:
            time.sleep(0)
        ev.set()
        for t in threads:
            t.join()

        # threading.Condition: each waits until all N are inside the condition.
        cond, inside = threading.Condition(), [0]
        def cond_waiter():
            with cond:
                inside[0] += 1
                cond.notify_all()
                assert cond.wait_for(lambda: inside[0] == N, timeout=30)
        threads = [threading.Thread(target=cond_waiter) for _ in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert inside[0] == N
        print("OK")
    """)
    assert out.strip() == "OK"


def test_thread_api_as_tasks() -> None:
    out = _run("""
        main = threading.current_thread()
        assert main is threading.main_thread() and main.ident == MAIN_OS_THREAD
        assert threading.get_ident() == MAIN_OS_THREAD
        gate = threading.Event()
        info = {}
        def body():
            me = threading.current_thread()
            info["me"] = (me.name, me.ident, me.native_id, me.daemon, threading.get_ident())
            gate.wait()
        t = threading.Thread(target=body, name="worker", daemon=True)
        t.start()
        other_ran = []
        fastco.spawn(other_ran.append, 1)
        assert t.is_alive() and t.is_alive() and not other_ran   # asking never switches
        assert t in threading.enumerate()
        assert info["me"] == ("worker", t.ident, t.native_id, True, t.ident)
        assert t.ident != MAIN_OS_THREAD and threading.active_count() >= 2
        t.join(0.01)                       # times out: still alive
        assert t.is_alive()
        gate.set()
        t.join()
        assert not t.is_alive() and t not in threading.enumerate()
        errors = []
        def join_self():
            try:
                threading.current_thread().join()
            except RuntimeError as exc:
                errors.append(str(exc))
        for join in (threading.Thread(target=print).join,
                     lambda: (s := threading.Thread(target=join_self), s.start(), s.join())):
            try:
                join()
            except RuntimeError as exc:
                errors.append(str(exc))
        assert errors == ["cannot join thread before it is started",
                          "cannot join current thread"], errors

        # A task not started as a Thread gets a dummy, dropped when it ends
        # (while its Task object is kept, too).
        before = threading.active_count()
        dummies = [fastco.spawn(threading.current_thread) for _ in range(5)]
        fastco.joinall(dummies)
        assert all(d.get().name.startswith("Dummy-") for d in dummies)
        assert threading.active_count() == before
        from fastco.threading import _HANDLE      # 3.13+: the Thread's handle
        if _HANDLE is not None:
            assert all(getattr(d.get(), _HANDLE).is_done() for d in dummies)

        # _thread.start_new_thread, Timer, excepthook.
        seen = []
        ident = _thread.start_new_thread(lambda: seen.append(threading.get_ident()), ())
        time.sleep(0)
        assert seen == [ident]
        fired = threading.Event()
        threading.Timer(0.01, fired.set).start()
        assert fired.wait(10)
        hooked = []
        patched_hook = threading.excepthook
        threading.excepthook = lambda args: hooked.append(args.exc_type)
        bad = threading.Thread(target=lambda: 1 / 0)
        bad.start(); bad.join()
        assert hooked == [ZeroDivisionError]
        threading.excepthook = threading.__excepthook__
        quiet = threading.Thread(target=lambda: exit(3))
        quiet.start(); quiet.join()              # SystemExit ends a thread quietly
        raw = _thread.start_new_thread(exit, ())
        time.sleep(0)
        threading.excepthook = patched_hook

        # Thread.join from another task, of a thread that waits for a lock.
        lock = threading.Lock()
        lock.acquire()
        holder = threading.Thread(target=lambda: (lock.acquire(), lock.release()))
        holder.start()
        joiner = fastco.spawn(holder.join)
        fastco.sleep(0)
        assert not joiner.ready()
        lock.release()
        joiner.join(10)
        assert joiner.ready() and not holder.is_alive()

        # Ctrl-C while a thread task runs goes to the main thread.
        import signal
        def busy():
            signal.raise_signal(signal.SIGINT)   # its handler runs in this task
            time.sleep(10)
        try:
            interrupted = threading.Thread(target=busy, daemon=True)
            interrupted.start()
            interrupted.join()
            time.sleep(0.01)                     # (raised at the main's next wait)
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("the main thread got no KeyboardInterrupt")

        # A non-daemon thread still running at the end is waited for; one
        # that joins the main thread goes on once the main thread ended.
        late = threading.Thread(target=lambda: (time.sleep(0.02), print("late thread done")))
        late.start()
        watcher = threading.Thread(
            target=lambda: (threading.main_thread().join(), print("after main")))
        watcher.start()
        assert threading.main_thread().is_alive()
        print("main done")
    """)
    assert out.splitlines() == ["main done", "after main", "late thread done"]


def test_local_rlock_semaphore_barrier_across_thread_tasks() -> None:
    out = _run("""
        N = 10
        local = threading.local()
        local.name = "main"
        barrier = threading.Barrier(N)
        rlock = threading.RLock()
        sem = threading.BoundedSemaphore(3)
        inside, peak, seen = [], [0], []
        def worker(i):
            assert not hasattr(local, "name")
            local.name = i
            barrier.wait()                    # every thread set its own first
            with rlock:
                with rlock:                   # re-entrant, owned per task
                    seen.append(local.name)
            with sem:
                inside.append(i)
                peak[0] = max(peak[0], len(inside))
                time.sleep(0.001)
                inside.remove(i)
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(seen) == list(range(N)) and local.name == "main"
        assert peak[0] == 3
        print("OK")
    """)
    assert out.strip() == "OK"


def test_thread_pool_executor_runs_workers_concurrently() -> None:
    out = _run("""
        from concurrent.futures import ThreadPoolExecutor, as_completed, wait
        N = 8
        barrier = threading.Barrier(N)       # passes only with N workers inside at once
        def job(i):
            barrier.wait(timeout=30)
            return i * i, real_ident()
        with ThreadPoolExecutor(max_workers=N) as pool:
            futures = [pool.submit(job, i) for i in range(N)]
            done, _ = wait(futures, timeout=30)
            assert len(done) == N
            assert sorted(f.result()[0] for f in as_completed(futures)) == [i * i for i in range(N)]
            assert {f.result()[1] for f in futures} == {MAIN_OS_THREAD}
            assert list(pool.map(abs, [-1, -2, 3])) == [1, 2, 3]
        print("OK")
    """)
    assert out.strip() == "OK"


def test_process_pool_executor_and_multiprocessing_queue() -> None:
    out = _run("""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(2) as pool:          # its manager thread is a task
            assert list(pool.map(abs, [-1, -2, -3])) == [1, 2, 3]
        q = multiprocessing.Queue()                   # its feeder thread too
        p = multiprocessing.Process(target=q.put, args=(42,))
        p.start()
        assert q.get(timeout=30) == 42
        p.join()
        print("OK")
    """)
    assert out.strip() == "OK"


def test_threading_tcp_server_serves_many_clients_at_once() -> None:
    out = _run("""
        import socket, socketserver
        N = 30
        barrier = threading.Barrier(N)
        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                line = self.rfile.readline()
                barrier.wait(timeout=30)     # all N connections are being served at once
                self.wfile.write(line.upper())
        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            request_queue_size = N      # (the default 5 drops SYNs of a burst of N)
        server = Server(("127.0.0.1", 0), Handler)
        port = server.server_address[1]
        serving = threading.Thread(target=server.serve_forever, args=(0.05,))
        serving.start()
        def client(i):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(b"hello %d\\n" % i)
                return s.makefile("rb").readline()
        clients = [fastco.spawn(client, i) for i in range(N)]
        fastco.joinall(clients, timeout=60)
        assert [c.get() for c in clients] == [b"HELLO %d\\n" % i for i in range(N)]
        server.shutdown()
        server.server_close()
        serving.join()
        print("OK")
    """)
    assert out.strip() == "OK"


def test_concurrent_imports_in_tasks_see_a_whole_module(tmp_path) -> None:
    (tmp_path / "slowmod.py").write_text(textwrap.dedent("""
        import time
        FIRST = 1
        time.sleep(0.02)      # a switch in the middle of the import
        LAST = 2
    """))
    out = _run(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        def use():
            import slowmod
            return slowmod.FIRST + slowmod.LAST
        tasks = [fastco.spawn(use) for _ in range(5)]
        fastco.joinall(tasks, timeout=30)
        assert [t.get() for t in tasks] == [3] * 5, [t.exception for t in tasks]
        print("OK")
    """)
    assert out.strip() == "OK"


def test_logging_made_before_patching_is_made_cooperative() -> None:
    code = """
        import logging, io, time
        events = []
        class Slow(logging.Handler):
            def emit(self, record):
                events.append(("in", record.msg))
                time.sleep(0.001)          # a switch while the handler's lock is held
                events.append(("out", record.msg))
        log = logging.getLogger("t")
        log.addHandler(Slow())
        log.setLevel(logging.INFO)
        from fastco import monkey
        monkey.patch_all()
        import fastco, threading
        assert isinstance(logging._lock, threading.RLock)
        tasks = [fastco.spawn(log.info, i) for i in range(5)]
        fastco.joinall(tasks, timeout=30)
        for k in range(0, 10, 2):          # emits never interleave
            assert events[k][0] == "in" and events[k + 1] == ("out", events[k][1]), events
        print("OK")
    """
    proc = run_python(code=textwrap.dedent(code), timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "OK"


def test_fork_in_a_patched_program() -> None:
    out = _run("""
        import os
        from fastco.threading import RealThread
        gate = threading.Event()
        q = queue.Queue()
        stop = threading.Event()
        os_thread = RealThread(target=stop.wait, args=(30,), daemon=True)   # alive at fork...
        os_thread.start()
        while not stop._cond._waiters or stop._cond._lock.locked():
            time.sleep(0.001)                  # ...waiting, not holding a lock
        t = threading.Thread(target=lambda: q.put(gate.wait(30)), daemon=True)
        t.start()
        # A task holds an RLock across the fork, another waits for a Lock
        # the main task holds: both live on in the child, where the stdlib
        # (logging, threading) reinitialises such locks.
        rlock, lock, holding = threading.RLock(), threading.Lock(), threading.Event()
        def holder():
            with rlock:
                holding.set()
                gate.wait(30)
        h = threading.Thread(target=holder, daemon=True); h.start()
        holding.wait()
        lock.acquire()
        waiter = threading.Thread(target=lambda: (lock.acquire(), q.put("lock")), daemon=True)
        waiter.start()
        pid = os.fork()
        if pid == 0:
            try:
                rlock._at_fork_reinit()          # kept: its owner lives on
                lock._at_fork_reinit()           # free, and its waiter woken
                waiter.join(30)
                assert q.get_nowait() == "lock"
                assert rlock.locked() and not rlock._is_owned()
                assert threading.current_thread() is threading.main_thread()
                assert t.is_alive() and t in threading.enumerate()   # tasks go on in the child
                gate.set()
                t.join(30)
                h.join(30)                       # released its RLock without error
                assert not rlock.locked()
                assert q.get(timeout=30) is True and not t.is_alive()
                w = threading.Thread(target=q.put, args=("child",))
                w.start(); w.join()
                assert q.get_nowait() == "child"
                try:                   # the parent's OS threads are gone: deadlocks raise
                    q.get()
                except fastco.LoopExit:
                    pass
                else:
                    raise AssertionError("no LoopExit")
            except BaseException:
                import traceback; traceback.print_exc()
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0, status
        assert t.is_alive()
        gate.set()
        stop.set()
        lock.release()
        t.join(); h.join(); waiter.join(); os_thread.join()
        assert {q.get_nowait(), q.get_nowait()} == {"lock", True}
        print("OK")
    """)
    assert out.strip() == "OK"


def test_fork_in_a_task_keeps_the_threads_native_id() -> None:
    # The child's main thread is the forking OS thread; from 3.14 on the
    # stdlib gives it its new native id there (the kernel's, not a task's).
    out = _run("""
        import os, sys
        real_native = monkey.get_original("_thread", "get_native_id")
        parent_native = threading.main_thread().native_id
        def forker():
            pid = os.fork()
            if pid == 0:
                native = threading.main_thread().native_id
                expected = real_native() if sys.version_info >= (3, 14) else parent_native
                os._exit(0 if native == expected else 1)
            return os.waitpid(pid, 0)[1]
        assert fastco.spawn(forker).get(timeout=30) == 0
        assert threading.get_native_id() == real_native() == parent_native
        print("OK")
    """)
    assert out.strip() == "OK"


def test_real_threads_stay_real_and_talk_to_tasks() -> None:
    out = _run("""
        import socket
        from fastco.threading import RealThread
        _sleep = monkey.get_original("time", "sleep")
        assert monkey.get_original("threading", "Thread") is RealThread
        to_thread, to_task = queue.Queue(), queue.Queue()
        lock = threading.Lock()
        def body():
            to_task.put(real_ident())
            with lock:                       # held by the main task for now
                to_task.put(to_thread.get())
        lock.acquire()
        t = RealThread(target=body)
        t.start()
        assert to_task.get(timeout=30) != MAIN_OS_THREAD
        ticks = []
        def ticker():
            while True:
                ticks.append(1); time.sleep(0.001)
        tick = fastco.spawn(ticker)
        while len(ticks) < 3:                # the hub runs while the thread waits
            time.sleep(0.001)
        lock.release()
        to_thread.put("ping")
        assert to_task.get(timeout=30) == "ping"
        t.join(30)
        assert not t.is_alive()
        tick.kill()
        # The main thread waits first, then a task starts the OS thread that
        # ends the wait: no LoopExit meanwhile.
        late = queue.Queue()
        fastco.spawn(lambda: RealThread(target=lambda: (_sleep(0.02), late.put("late"))).start())
        assert late.get() == "late"
        # fastco's DNS workers are OS threads too.
        socket.getaddrinfo("localhost", 80)
        from fastco import _threadpool
        assert _threadpool.worker_count() >= 1
        assert MAIN_OS_THREAD not in _threadpool._pool.idents
        print("OK")
    """)
    assert out.strip() == "OK"


def test_thread_tasks_leave_the_os_thread_name_alone() -> None:
    # From 3.14 on a Thread names its OS thread as it starts and when
    # renamed: a task must not rename the OS thread it runs in (the main
    # thread's name is the process's), a RealThread names its own.
    out = _run("""
        import os
        from fastco.threading import RealThread
        def os_name(native_id):
            with open(f"/proc/self/task/{native_id}/comm") as f:
                return f.read().strip()
        main_native = threading.main_thread().native_id
        before = os_name(main_native)
        t = threading.Thread(target=lambda: None, name="task-thread")
        t.start(); t.join()
        def rename():
            threading.current_thread().name = "renamed-task"
        t = threading.Thread(target=rename); t.start(); t.join()
        assert os_name(main_native) == before, os_name(main_native)
        names = queue.Queue()
        real = RealThread(target=lambda: names.put(os_name(_thread.get_native_id())),
                          name="real-thread")
        real.start(); real.join(30)
        named = names.get(timeout=30)
        if getattr(threading, "_set_name", None) is not None:     # 3.14+
            assert named == "real-thread", named
        print("OK")
    """)
    assert out.strip() == "OK"


def test_thread_tasks_run_in_their_own_context() -> None:
    # Since 3.14 Thread.run runs inside the Thread's contextvars.Context (a
    # new empty one by default, the caller's copy with -X
    # thread_inherit_context, or the one given as context=): a thread task
    # switches away inside Context.run, and each sees its own values.
    out = _run("""
        import contextvars, inspect
        var = contextvars.ContextVar("var", default="unset")
        var.set("main")
        barrier = threading.Barrier(2)
        seen = []
        def body(name):
            seen.append((name, "start", var.get()))
            var.set(name)
            barrier.wait(timeout=30)            # both are inside their run now
            seen.append((name, "end", var.get()))
        threads = [threading.Thread(target=body, args=(n,)) for n in ("a", "b")]
        for t in threads: t.start()
        for t in threads: t.join(30)
        assert sorted(seen) == [("a", "end", "a"), ("a", "start", "unset"),
                                ("b", "end", "b"), ("b", "start", "unset")], seen
        assert var.get() == "main"
        if "context" in inspect.signature(threading.Thread).parameters:     # 3.14+
            seen.clear()
            t = threading.Thread(target=body, args=("c",), context=contextvars.copy_context())
            u = threading.Thread(target=body, args=("d",))
            t.start(); u.start(); t.join(30); u.join(30)
            assert sorted(seen) == [("c", "end", "c"), ("c", "start", "main"),
                                    ("d", "end", "d"), ("d", "start", "unset")], seen
            assert var.get() == "main"
        if hasattr(__import__("concurrent.futures").futures, "InterpreterPoolExecutor"):
            from concurrent.futures import InterpreterPoolExecutor     # 3.14+
            with InterpreterPoolExecutor(2) as pool:                  # workers are tasks
                assert list(pool.map(abs, [-1, -2, -3])) == [1, 2, 3]
        print("OK")
    """)
    assert out.strip() == "OK"


def test_deadlocks_and_blocking_in_the_hub_raise() -> None:
    out = _run("""
        lock = threading.Lock()
        lock.acquire()
        try:
            lock.acquire()                   # nothing could ever release it
        except fastco.LoopExit:
            print("LoopExit")
        q = queue.Queue()
        try:
            q.get()
        except fastco.LoopExit:
            print("LoopExit")
        hub = fastco.get_hub()
        failed = []
        def in_hub():
            try:
                lock.acquire()
            except RuntimeError as exc:
                failed.append(str(exc))
        hub.run_callback(in_hub)
        time.sleep(0)
        assert failed and "hub" in failed[0], failed
        print("OK")
    """)
    assert out.split() == ["LoopExit", "LoopExit", "OK"]


def test_patching_twice_and_after_threads_started() -> None:
    code = """
        import threading, queue, time
        # Before patching: an OS thread that runs on past the patch, and a
        # Thread made but not started yet.
        stop = threading.Event()
        early = threading.Thread(target=stop.wait)
        early.start()
        unstarted = threading.Thread(target=lambda: None)
        from fastco import monkey
        monkey.patch_all()
        lock_type = threading.Lock
        monkey.patch_all()                       # again: nothing changes
        assert threading.Lock is lock_type
        assert monkey.get_original("threading", "Lock") is not lock_type
        import fastco
        real_ident = monkey.get_original("_thread", "get_ident")
        # The early thread is still an OS thread; joining it does not stop the hub.
        ticks = []
        def ticker():
            while True:
                ticks.append(1); time.sleep(0.001)
        fastco.spawn(ticker)
        fastco.spawn(lambda: (time.sleep(0.01), stop.set()))
        early.join()
        assert not early.is_alive() and len(ticks) >= 2
        # The unstarted one runs as a task.
        where = []
        unstarted.run = lambda: where.append(real_ident())
        unstarted.start(); unstarted.join()
        assert where == [real_ident()]
        # Patching from another thread is refused clearly.
        from fastco.threading import RealThread
        errors = []
        def patch_again():
            try:
                import fastco.monkey as m
                m._saved.pop("_thread")
                m.patch_thread()
            except RuntimeError as exc:
                errors.append(str(exc))
        t = RealThread(target=patch_again); t.start(); t.join()
        assert errors and "main thread" in errors[0], errors
        print("OK")
    """
    proc = run_python(code=textwrap.dedent(code), timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "OK"


def test_many_threads_and_real_threads_leak_nothing() -> None:
    out = _run(PROC_STATS + textwrap.dedent("""
        import gc
        from fastco.threading import RealThread
        def round_():
            q = queue.Queue()
            ts = [threading.Thread(target=q.put, args=(i,)) for i in range(200)]
            for t in ts: t.start()
            for t in ts: t.join()
            lock = threading.Lock(); lock.acquire()
            rt = [RealThread(target=lambda: (lock.acquire(), lock.release())) for _ in range(4)]
            for t in rt: t.start()
            time.sleep(0.005)
            lock.release()
            for t in rt: t.join()
            return sum(q.get() for _ in range(200))
        for _ in range(5):
            round_()
        gc.collect()
        base_rss, base_fds, base_active = rss(), fds(), threading.active_count()
        for _ in range(30):
            assert round_() == sum(range(200))
        gc.collect()
        assert fds() == base_fds, (fds(), base_fds)
        assert threading.active_count() == base_active
        grown = rss() - base_rss
        assert grown < 4 * 2**20, grown
        print("OK")
    """))
    assert out.strip() == "OK"
