"""Real programs under fastco.monkey.patch_all(): requests and urllib3 over
HTTPS, redis-py against redis-server, pg8000 against PostgreSQL.

Each test runs its program in a fresh interpreter (patching is process-wide)
against servers started by the fixtures (tests/realservers.py) or by the
program itself, on loopback.  Overlap is shown by construction, never by a
clock: each server or query waits until all clients arrived, so clients that
did not run at once would time out instead of finishing.
"""

from __future__ import annotations

import textwrap

from conftest import run_python


def _run(code: str, **env: object) -> str:
    proc = run_python(code=textwrap.dedent(code), timeout=90,
                      env={k: str(v) for k, v in env.items()})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def test_requests_and_urllib3_over_https_50_at_once(tls_certs) -> None:
    # The TLS server (a fastco task, with the certificate the test made)
    # holds every request until all 50 of a round arrived.
    out = _run("""
        from fastco import monkey
        monkey.patch_all()

        import os, ssl
        import requests, urllib3
        import fastco
        from fastco import socket

        N = 50
        CA, CERT = os.environ["CA"], os.environ["CERT"]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(CERT)
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        state = {"arrived": 0, "all_in": fastco.Event()}

        def handle(conn):
            with ctx.wrap_socket(conn, server_side=True) as s, s.makefile("rb") as f:
                while True:
                    request = f.readline()
                    if not request:
                        return
                    while f.readline() not in (b"\\r\\n", b""):
                        pass
                    state["arrived"] += 1
                    if state["arrived"] == N:
                        state["all_in"].set()
                    ok = state["all_in"].wait(20)      # hold it until all N are in
                    body = b"you asked for " + request.split()[1]
                    status = b"200 OK" if ok else b"503 Not all arrived"
                    s.sendall(b"HTTP/1.1 %s\\r\\nContent-Length: %d\\r\\n\\r\\n%s"
                              % (status, len(body), body))

        def serve():
            while True:
                conn, _ = listener.accept()
                fastco.spawn(handle, conn)

        fastco.spawn(serve)

        def with_requests(i):
            r = requests.get(f"https://localhost:{port}/req{i}", verify=CA, timeout=30)
            return r.status_code, r.text

        pool = urllib3.PoolManager(ca_certs=CA, maxsize=N)

        def with_urllib3(i):
            r = pool.request("GET", f"https://127.0.0.1:{port}/u3/{i}", timeout=30)
            return r.status, r.data.decode()

        for name, fetch in (("req", with_requests), ("u3/", with_urllib3)):
            state["arrived"], state["all_in"] = 0, fastco.Event()
            tasks = [fastco.spawn(fetch, i) for i in range(N)]
            fastco.joinall(tasks, timeout=60, raise_error=True)
            got = [t.value for t in tasks]
            assert got == [(200, f"you asked for /{name}{i}") for i in range(N)], got[:3]
            assert state["arrived"] == N
        # keep-alive: the pool reuses its connections for a second round
        state["arrived"], state["all_in"] = 0, fastco.Event()
        tasks = [fastco.spawn(with_urllib3, i) for i in range(N)]
        fastco.joinall(tasks, timeout=60, raise_error=True)
        assert all(t.value[0] == 200 for t in tasks)
        print("OK")
    """, CA=tls_certs.ca, CERT=tls_certs.server)
    assert out.strip() == "OK"


def test_redis_py_against_redis_server(redis_server) -> None:
    out = _run("""
        from fastco import monkey
        monkey.patch_all()

        import os
        import redis
        import fastco

        r = redis.Redis(host="127.0.0.1", port=int(os.environ["PORT"]), socket_timeout=20)
        r.flushall()

        # 100 tasks, each its own keys, all at once.
        def worker(i):
            for j in range(20):
                r.set(f"k:{i}:{j}", f"v{i}.{j}")
            return [r.get(f"k:{i}:{j}") for j in range(20)]

        tasks = [fastco.spawn(worker, i) for i in range(100)]
        fastco.joinall(tasks, timeout=60, raise_error=True)
        for i, t in enumerate(tasks):
            assert t.value == [f"v{i}.{j}".encode() for j in range(20)]
        assert r.dbsize() == 2000

        # BLPOP blocks one task (its own connection) while the others go on:
        # they do their work, then push what the blocked task waits for.
        events = []

        def blocked():
            item = r.blpop("jobs", timeout=20)
            events.append("popped")
            return item

        def others(i):
            for j in range(30):
                r.incr("counter")
            events.append("other done")

        waiter = fastco.spawn(blocked)
        fastco.sleep(0.05)
        busy = [fastco.spawn(others, i) for i in range(10)]
        fastco.joinall(busy, timeout=30, raise_error=True)
        assert not waiter.ready()
        r.rpush("jobs", "the job")
        assert waiter.get(timeout=20) == (b"jobs", b"the job")
        assert events == ["other done"] * 10 + ["popped"]
        assert int(r.get("counter")) == 300

        # A pipeline and pub/sub across tasks.
        with r.pipeline() as p:
            assert p.set("a", 1).incr("a").get("a").execute() == [True, 2, b"2"]
        ps = r.pubsub()
        ps.subscribe("news")
        assert ps.get_message(timeout=5)["type"] == "subscribe"
        listener = fastco.spawn(lambda: ps.get_message(timeout=10))
        fastco.sleep(0.02)
        r.publish("news", "hello")
        msg = listener.get(timeout=10)
        while msg is None:
            msg = ps.get_message(timeout=10)
        assert msg["data"] == b"hello", msg
        ps.close()
        print("OK")
    """, PORT=redis_server.port)
    assert out.strip() == "OK"


def test_pg8000_against_postgresql(postgres_server) -> None:
    out = _run("""
        from fastco import monkey
        monkey.patch_all()

        import os
        import pg8000.native
        import fastco

        def connect():
            return pg8000.native.Connection(os.environ["PGUSER"], host="127.0.0.1",
                                            port=int(os.environ["PORT"]),
                                            database=os.environ["PGDATABASE"], timeout=30)

        setup = connect()
        setup.run("DROP TABLE IF EXISTS arrivals")
        setup.run("CREATE TABLE arrivals (task int)")
        setup.run("DROP TABLE IF EXISTS items")
        setup.run("CREATE TABLE items (task int, n int, label text)")

        N = 20
        # Each task registers, then its query waits in the server until all
        # N registered (bounded): without overlap the first one would time out.
        def worker(i):
            c = connect()
            try:
                c.run("INSERT INTO arrivals VALUES (:i)", i=i)
                c.run('''
                    DO $$ BEGIN
                      FOR k IN 1..2000 LOOP
                        EXIT WHEN (SELECT count(*) FROM arrivals) >= %d;
                        PERFORM pg_sleep(0.01);
                      END LOOP;
                    END $$''' % N)
                total = c.run("SELECT count(*) FROM arrivals")[0][0]
                for n in range(10):
                    c.run("INSERT INTO items VALUES (:i, :n, :label)", i=i, n=n,
                          label=f"task {i} item {n}")
                rows = c.run("SELECT n, label FROM items WHERE task = :i ORDER BY n", i=i)
                return total, rows
            finally:
                c.close()

        tasks = [fastco.spawn(worker, i) for i in range(N)]
        fastco.joinall(tasks, timeout=60, raise_error=True)
        for i, t in enumerate(tasks):
            total, rows = t.value
            assert total == N
            assert rows == [[n, f"task {i} item {n}"] for n in range(10)]
        assert setup.run("SELECT count(*), sum(n) FROM items") == [[N * 10, N * 45]]
        # A server-side error arrives as an exception in its own task only.
        def bad():
            c = connect()
            try:
                c.run("SELECT * FROM no_such_table")
            except pg8000.native.DatabaseError as exc:
                return exc.args[0]["C"]
            finally:
                c.close()
        assert fastco.spawn(bad).get(timeout=10) == "42P01"   # undefined table
        assert setup.run("SELECT 1") == [[1]]
        setup.close()
        print("OK")
    """, PORT=postgres_server.port, PGUSER=postgres_server.user,
        PGDATABASE=postgres_server.database)
    assert out.strip() == "OK"
