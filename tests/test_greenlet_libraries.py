"""Libraries built on greenlet, run unmodified on fastco.

Each program runs in a child process with FASTCO_AS_GREENLET=1, so that
``import greenlet`` inside the library gives fastco's module, as it would
for a user who switches it on; each checks that the greenlets it saw are
fastco's.  The libraries come with the test extras (pyproject.toml).
"""

from __future__ import annotations

import pytest

from conftest import run_python

ON = {"FASTCO_AS_GREENLET": "1"}


def run_on_fastco(code: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """Run `code` with fastco as greenlet; its stdout lines."""
    proc = run_python(*args, code=code, env=dict(ON, **(env or {})), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


SQLALCHEMY = r"""
import asyncio, collections, contextvars, sys
import greenlet, fastco
from sqlalchemy import Integer, String, event, func, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

assert greenlet.greenlet is fastco.greenlet
request = contextvars.ContextVar("request")
hooks = []                       # (request seen by the sync hook, greenlet type)

class Base(DeclarativeBase):
    pass

class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    # Filled in by an ORM hook (synchronous, in a greenlet) from the context.
    request: Mapped[int] = mapped_column(Integer, nullable=True)

@event.listens_for(Order, "before_insert")
def stamp(mapper, connection, target):
    target.request = request.get()

async def one(engine, sessions, i):
    request.set(i)
    async with sessions() as session, session.begin():
        session.add(Order(id=i, name=f"order {i}"))
    async with engine.connect() as conn:
        assert (await conn.execute(text("select :x"), {"x": i})).scalar() == i
        row = (await conn.execute(select(Order.name, Order.request).where(Order.id == i))).one()
        assert tuple(row) == (f"order {i}", i), row
        try:
            await conn.execute(text("select * from no_such_table"))
        except Exception as exc:                 # raised into this coroutine
            assert "no_such_table" in str(exc), exc
        else:
            raise AssertionError("no error")
    assert request.get() == i
    return i

async def main(path, n):
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", pool_size=20, max_overflow=0)

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def hook(conn, cursor, statement, params, context, executemany):
        current = greenlet.getcurrent()
        # SQLAlchemy's own greenlet (a subclass), not the main one.
        hooks.append((request.get(None),
                      isinstance(current, fastco.greenlet) and current.parent is not None))

    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    done = await asyncio.gather(*(one(engine, sessions, i) for i in range(n)))
    assert done == list(range(n))
    async with sessions() as session:
        print("rows", (await session.execute(select(func.count(Order.id)))).scalar_one())
    await engine.dispose()

n = int(sys.argv[2])
asyncio.run(main(sys.argv[1], n))
per_request = collections.Counter(r for r, _ in hooks if r is not None)
# Each request's statements ran in hooks that saw that request's context.
print("hooks saw each request", sorted(per_request) == list(range(n)),
      sorted(set(per_request.values())))
print("hooks ran in fastco greenlets", all(spawned for _, spawned in hooks))
"""


def test_sqlalchemy_asyncio_many_connections(tmp_path) -> None:
    pytest.importorskip("sqlalchemy.ext.asyncio")
    pytest.importorskip("aiosqlite")
    n = 60
    lines = run_on_fastco(SQLALCHEMY, str(tmp_path / "db.sqlite"), str(n))
    assert lines == [f"rows {n}", "hooks saw each request True [4]",
                     "hooks ran in fastco greenlets True"]


GREENBACK = r"""
import asyncio, contextvars
import greenback, greenlet, fastco

assert greenlet.greenlet is fastco.greenlet
var = contextvars.ContextVar("var")

async def read_var():
    await asyncio.sleep(0)
    return var.get()

def deep_sync(i):
    # Plain synchronous code that awaits, in the task's context.
    greenback.await_(asyncio.sleep(0.001 * (i % 3)))
    assert isinstance(greenlet.getcurrent(), fastco.greenlet)
    return greenback.await_(read_var())

def sync_part(i):
    var.set(i)
    seen_async = deep_sync(i)
    return seen_async, var.get()

async def task(i):
    await greenback.ensure_portal()
    return sync_part(i)

async def main():
    results = await asyncio.gather(*(task(i) for i in range(30)))
    print(all(r == (i, i) for i, r in enumerate(results)), results[:2])

asyncio.run(main())
"""


def test_greenback_awaits_from_sync_code_keeping_contextvars() -> None:
    pytest.importorskip("greenback")
    assert run_on_fastco(GREENBACK) == ["True [(0, 0), (1, 1)]"]


GEVENT = r"""
import greenlet, fastco
import gevent
from gevent import socket
from gevent.event import Event
from gevent.server import StreamServer
import gevent._hub_primitives

assert greenlet.greenlet is fastco.greenlet
assert gevent._hub_primitives.__file__.endswith(".py")       # PURE_PYTHON
assert isinstance(gevent.get_hub(), fastco.greenlet)

order = []
def worker(i):
    gevent.sleep(0.01 * (3 - i))
    order.append(i)
    return i * i
jobs = [gevent.spawn(worker, i) for i in range(3)]
gevent.joinall(jobs, timeout=10)
print("joinall", [j.value for j in jobs], order, isinstance(jobs[0], fastco.greenlet))

event = Event()
waiter = gevent.spawn(lambda: event.wait(5) and "woken")
gevent.sleep(0)
event.set()
print("event", waiter.get(timeout=5))

with gevent.Timeout(0.05, False):
    gevent.sleep(5)
print("timeout ok")

def echo(sock, address):
    while True:
        data = sock.recv(1024)
        if not data:
            break
        sock.sendall(data)

server = StreamServer(("127.0.0.1", 0), echo)
server.start()
def client(i):
    with socket.create_connection(server.address, timeout=5) as c:
        c.sendall(b"hello %d" % i)
        return c.recv(100)
clients = [gevent.spawn(client, i) for i in range(20)]
gevent.joinall(clients, timeout=10)
print("echo", all(c.value == b"hello %d" % i for i, c in enumerate(clients)))
server.stop()
"""


def test_gevent_pure_python_runs_on_fastco() -> None:
    pytest.importorskip("gevent")
    lines = run_on_fastco(GEVENT, env={"PURE_PYTHON": "1"})
    assert lines == ["joinall [0, 1, 4] [2, 1, 0] True", "event woken", "timeout ok",
                     "echo True"]
