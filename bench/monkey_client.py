"""The client of bench/test_bench_monkey.py: plain stdlib threading code,
run under fastco.monkey or gevent.monkey (the library named first).

    python bench/monkey_client.py fastco|gevent ROUNDTRIPS

Patches everything first thing, then, for each line read on stdin, runs
ROUNDTRIPS round trips of a ping-pong between the main thread and a
``threading.Thread`` through two ``queue.Queue``s, and answers "done CPU",
CPU being the seconds of CPU time the process spent on them.
Same code for both libraries; only the patching line differs.
"""

import sys

if sys.argv[1] == "gevent":
    from gevent import monkey
else:
    from fastco import monkey
monkey.patch_all()

import queue  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402


def pingpong(n: int) -> None:
    """n round trips: the main thread puts in one queue, a thread answers in another."""
    q1: queue.Queue[int] = queue.Queue()
    q2: queue.Queue[int] = queue.Queue()

    def partner() -> None:
        for _ in range(n):
            q2.put(q1.get())

    t = threading.Thread(target=partner)
    t.start()
    for i in range(n):
        q1.put(i)
        q2.get()
    t.join()


def main() -> None:
    n = int(sys.argv[2])
    for _ in sys.stdin:
        cpu = time.process_time()
        pingpong(n)
        sys.stdout.write(f"done {time.process_time() - cpu:.6f}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
