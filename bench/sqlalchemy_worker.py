"""A process that runs SQLAlchemy asyncio workloads on request, on whichever
greenlet ``import greenlet`` gives it (fastco's when FASTCO_AS_GREENLET=1).

    python -m bench.sqlalchemy_worker WORKLOAD OPS

SQLAlchemy picks its greenlet once per process, so fastco and greenlet are
compared through two of these, driven by bench/test_bench_sqlalchemy.py: it
writes one line to stdin per round, the worker runs OPS operations of
WORKLOAD on an in-memory SQLite database (aiosqlite) and answers one line.
The pipe round trip costs the same for both, and little beside OPS queries.

Workloads: "core" (a Core select of one row by key), "orm" (an ORM select of
one object by key, the session emptied each round), "run-sync" (a sync
function run through AsyncConnection.run_sync, where SQLAlchemy's greenlet
machinery is most of the cost).
"""

from __future__ import annotations

import asyncio
import sys

import greenlet
from sqlalchemy import Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROWS = 100


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


async def serve(workload: str, ops: int) -> None:
    """Set the database up, then run a round per line read from stdin."""
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine) as session, session.begin():
        session.add_all(Item(id=i, name=f"item {i}") for i in range(ROWS))

    async with engine.connect() as conn, AsyncSession(engine) as session:
        async def core() -> None:
            for i in range(ops):
                key = i % ROWS
                name = (await conn.execute(select(Item.name).where(Item.id == key))).scalar()
                assert name == f"item {key}", name

        async def orm() -> None:
            for i in range(ops):
                key = i % ROWS
                item = (await session.execute(select(Item).where(Item.id == key))).scalar_one()
                assert item.id == key
            session.expunge_all()

        def nothing(sync_conn: object) -> int:
            return 1

        async def run_sync() -> None:
            for _ in range(ops):
                assert await conn.run_sync(nothing) == 1

        rounds = {"core": core, "orm": orm, "run-sync": run_sync}[workload]
        await rounds()                                  # warm up
        # fastco's module says so (its greenlet type is named greenlet.greenlet,
        # as gevent's compiled subclasses require).
        impl = "fastco" if getattr(greenlet, "__fastco__", False) else "greenlet"
        print(f"ready {impl}", flush=True)
        for _ in sys.stdin:
            await rounds()
            sys.stdout.write("done\n")
            sys.stdout.flush()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2])))
