"""The seed tutorial's gevent program, running on fastco.

Three tasks each print five lines; ``fastco.sleep`` (the seed's
``gevent.sleep(1)``, "a time-consuming operation: the hub notices and
switches") makes them take turns, as gevent does.  Without it, they run one
after another.

    python examples/seed_gevent.py [seconds | nosleep]

``seconds`` is the sleep (1, as in the seed, by default); ``nosleep`` runs
the seed's variant with the sleep commented out.
"""

import sys

import fastco

ARG = sys.argv[1] if len(sys.argv) > 1 else "1"
SLEEP = None if ARG == "nosleep" else float(ARG)


def f(n):
    for i in range(n):
        print(fastco.getcurrent(), i)
        if SLEEP is not None:
            fastco.sleep(SLEEP)  # 该语句是耗时操作,会检测到并且切换协程的执行


g1 = fastco.spawn(f, 5)
g2 = fastco.spawn(f, 5)
g3 = fastco.spawn(f, 5)
g1.join()
g2.join()
g3.join()
