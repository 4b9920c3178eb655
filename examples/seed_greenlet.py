"""The seed tutorial's greenlet ping-pong, running on fastco.

The only change to the seed's program is the import (``from fastco import
greenlet`` instead of ``from greenlet import greenlet``), plus a bound on the
rounds so that it ends: ``python examples/seed_greenlet.py [rounds] [delay]``
(defaults: 3 rounds, 0.5 s, as in the seed).
"""

import sys
import time

from fastco import greenlet

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
DELAY = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5


def test1():
    for _ in range(ROUNDS):
        print('----A----')
        gr2.switch()  # 切换到gre2
        time.sleep(DELAY)


def test2():
    for _ in range(ROUNDS):
        print('----B----')
        gr1.switch()
        time.sleep(DELAY)


gr1 = greenlet(test1)
gr2 = greenlet(test2)
gr1.switch()  # 切换线程,执行gr1
