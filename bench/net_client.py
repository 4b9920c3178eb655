"""The client side of the network benchmarks, one process per library.

    python -m bench.net_client fastco|gevent|plain [--backend asm|ucontext]

It monkey-patches the whole stdlib with the library named (fastco's or
gevent's ``patch_all``), then serves commands, one per line on stdin, with
the same client code for both libraries.  ``plain`` patches nothing: the
tasks run one after another on blocking sockets, so what a run costs is the
client libraries' own code (bench/net_floor.py measures it):

    redis PORT TASKS        connect TASKS tasks' worth of redis-py connections
    https PORT CA TASKS     one requests.Session and one urllib3
                            HTTPSConnectionPool (keep-alive) per task
    run KIND N              each task does N operations of KIND (redis,
                            requests, urllib3), all tasks at once; answers
                            "ok OPS CPU" once every result was checked, CPU
                            being the seconds of CPU time (user and system)
                            this process spent on them

A redis operation is one command (a SET, then a GET of what was set, by
redis-py's connection pool); a requests or urllib3 operation is one GET on
the task's keep-alive session or pool.  The process stays up between commands so that what is
timed (by bench/test_bench_net.py, around ``run``) is the requests, not the
interpreter's start or the connections' handshakes.
"""

from __future__ import annotations

import sys
import time


def _library(name: str, backend: str | None) -> tuple:
    """(spawn, joinall) of the library, after its patch_all."""
    if name == "plain":
        class Done:   # a "task" that ran to its end when spawned
            def __init__(self, fn, *args) -> None:
                self.value = fn(*args)

        return Done, lambda tasks, raise_error=False: None
    if name == "gevent":
        from gevent import monkey
        monkey.patch_all()
        import gevent
        return gevent.spawn, gevent.joinall
    import fastco
    if backend:
        fastco.set_backend(backend)
    from fastco import monkey as fmonkey
    fmonkey.patch_all()
    return fastco.spawn, fastco.joinall


def main(argv: list[str]) -> int:
    name = argv[0]
    backend = argv[argv.index("--backend") + 1] if "--backend" in argv else None
    spawn, joinall = _library(name, backend)

    import redis
    import requests
    import urllib3

    state: dict = {}

    def redis_worker(i: int, n: int) -> int:
        r = state["redis"]
        for j in range(n // 2):
            key = f"bench:{i}:{j % 8}"
            value = f"{i}-{j}"
            r.set(key, value)
            if r.get(key) != value.encode():
                raise AssertionError(f"redis returned something else for {key}")
        return n // 2 * 2

    def https_worker(i: int, n: int) -> int:
        session, url, ca = state["sessions"][i], state["url"], state["ca"]
        for j in range(n):
            # verify= on the call: a session's own is overridden by $REQUESTS_CA_BUNDLE
            resp = session.get(f"{url}/{i}/{j}", timeout=30, verify=ca)
            if resp.status_code != 200 or resp.text != f"hello /{i}/{j}":
                raise AssertionError(f"bad answer {resp.status_code} {resp.text[:50]!r}")
        return n

    def urllib3_worker(i: int, n: int) -> int:
        pool = state["pools"][i]
        for j in range(n):
            resp = pool.request("GET", f"/{i}/{j}", timeout=30)
            if resp.status != 200 or resp.data != f"hello /{i}/{j}".encode():
                raise AssertionError(f"bad answer {resp.status} {resp.data[:50]!r}")
        return n

    workers = {"redis": redis_worker, "requests": https_worker, "urllib3": urllib3_worker}

    def run(kind: str, n: int) -> int:
        worker = workers[kind]
        tasks = [spawn(worker, i, n) for i in range(state["tasks"])]
        joinall(tasks, raise_error=True)
        return sum(t.value for t in tasks)

    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "redis":
            state["tasks"] = int(words[2])
            state["redis"] = redis.Redis(host="127.0.0.1", port=int(words[1]),
                                         socket_timeout=30)
            run("redis", 2)            # make the pool's connections
        elif words[0] == "https":
            state["tasks"] = int(words[3])
            state["url"] = f"https://localhost:{words[1]}"
            state["ca"] = words[2]
            state["sessions"] = [requests.Session() for _ in range(state["tasks"])]
            state["pools"] = [urllib3.HTTPSConnectionPool("localhost", int(words[1]), maxsize=1,
                                                          ca_certs=words[2])
                              for _ in range(state["tasks"])]
            run("requests", 1)         # handshakes, once per session
            run("urllib3", 1)
        elif words[0] == "run":
            cpu = time.process_time()
            ops = run(words[1], int(words[2]))
            print("ok", ops, f"{time.process_time() - cpu:.6f}", flush=True)
            continue
        else:
            print("error unknown command", words[0], flush=True)
            continue
        print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
