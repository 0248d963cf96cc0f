"""Group commit for charging writes: many stations' messages, one database transaction, then the answers.

OCPP transaction messages are answered only after they are stored. One commit per message would cap a
central system at a few hundred calls/s on SQLite; here every message waiting when the previous commit
ended goes into the next one. An outage is retried until the message's deadline (the station retries after
that, and every write is idempotent); a data error is isolated by re-running the batch one write at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smartev.db.base import Base
from smartev.errors import Unavailable, Unstorable

logger = logging.getLogger(__name__)
T = TypeVar("T")
Write = Callable[[AsyncConnection], Awaitable[Any]]
# Many items of one kind written together: (connection, items) -> one result per item, in order.
Bulk = Callable[[AsyncConnection, list[Any]], Awaitable[list[Any]]]


@dataclass
class _Pending:
    write: Write | None
    deadline: float
    bulk: Bulk | None = None
    item: Any = None
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def _is_outage(exc: BaseException) -> bool:
    """True unless the database refused the data itself: anything else (a refused or dropped connection,
    a timeout, a server restarting) is retried, because a stored-once guarantee must outlive outages."""
    return not isinstance(exc, IntegrityError | DataError | ProgrammingError)


class GroupCommit:
    """Runs writes in shared transactions; `store` returns once the write's transaction committed."""

    def __init__(self, engine: AsyncEngine, retry_s: float, max_batch: int = 500) -> None:
        self._engine = engine
        self._retry_s = retry_s
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.failing_since: float | None = None
        self.commits = 0
        self.writes = 0
        self.running = False  # True while run() is writing
        self._batch: list[_Pending] = []

    async def store(self, write: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `write` in the next commit; Unavailable if the database stays down past the retry window."""
        loop = asyncio.get_running_loop()
        pending = _Pending(write, loop.time() + self._retry_s)
        self._queue.put_nowait(pending)
        result: T = await pending.future
        return result

    async def store_item(self, bulk: Bulk, item: Any) -> Any:
        """Like `store`, for the frequent kind of write: the commit hands every waiting item of one `bulk`
        to it at once, so a batch of meter readings costs a few statements, not a few per reading."""
        loop = asyncio.get_running_loop()
        pending = _Pending(None, loop.time() + self._retry_s, bulk, item)
        self._queue.put_nowait(pending)
        return await pending.future

    async def run(self) -> None:
        """The writer loop (one per process)."""
        self.running = True
        try:
            await self._run()
        finally:
            self.running = False
            # Nothing commits what is still here: its callers get Unavailable instead of waiting forever.
            waiting = [*self._batch]
            while not self._queue.empty():
                waiting.append(self._queue.get_nowait())
            for p in waiting:
                if not p.future.done():
                    p.future.set_exception(Unavailable("the central system is stopping"))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.1
        while True:
            self._batch = batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            while batch:
                try:
                    results = await self._commit(batch)
                except Exception as exc:
                    if not _is_outage(exc):
                        await self._one_by_one(batch)
                        batch = []
                        break
                    if self.failing_since is None:
                        self.failing_since = loop.time()
                        logger.error(
                            "charging writes fail, the database is unreachable: %s", type(exc).__name__
                        )
                    now = loop.time()
                    expired = [p for p in batch if p.deadline <= now]
                    for p in expired:
                        if not p.future.done():
                            p.future.set_exception(Unavailable("the database is unavailable"))
                    batch = [p for p in batch if p.deadline > now and not p.future.cancelled()]
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                if self.failing_since is not None:
                    logger.warning("charging writes reach the database again")
                    self.failing_since = None
                backoff = 0.1
                for p, r in zip(batch, results, strict=True):
                    if not p.future.done():
                        p.future.set_result(r)
                batch = []

    async def _commit(self, batch: Sequence[_Pending]) -> list[Any]:
        results: list[Any] = [None] * len(batch)
        groups: dict[Bulk, list[int]] = {}
        async with self._engine.begin() as conn:
            for i, p in enumerate(batch):
                if p.write is not None:
                    results[i] = await p.write(conn)
                else:
                    assert p.bulk is not None
                    groups.setdefault(p.bulk, []).append(i)
            # A station has one call in flight at a time, so no item here depends on a write above.
            for bulk, indexes in groups.items():
                out = await bulk(conn, [batch[i].item for i in indexes])
                for i, r in zip(indexes, out, strict=True):
                    results[i] = r
        self.commits += 1
        self.writes += len(batch)
        return results

    async def _one_by_one(self, batch: Sequence[_Pending]) -> None:
        for p in batch:
            try:
                (result,) = await self._commit([p])
            except Exception as exc:
                if p.future.done():
                    continue
                if _is_outage(exc):
                    p.future.set_exception(Unavailable("the database is unavailable"))
                else:
                    logger.warning("the database refused a charging write: %s", exc)
                    p.future.set_exception(Unstorable(str(exc).splitlines()[0][:300]))
                continue
            if not p.future.done():
                p.future.set_result(result)


def _insert(conn: AsyncConnection) -> Any:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise RuntimeError(f"unsupported database {dialect}")  # pragma: no cover - only these two


async def insert_ignoring_duplicates(
    conn: AsyncConnection, table: Table | type[Base], rows: list[dict[str, Any]]
) -> None:
    """INSERT rows, skipping those whose primary key is stored already (replays)."""
    if not rows:
        return
    # The rows go as parameters (executemany), not inlined with .values(rows): an ON CONFLICT statement
    # with inline rows has no cache key, so SQLAlchemy compiled it again for every meter reading.
    await conn.execute(_insert(conn)(table).on_conflict_do_nothing(), rows)


async def upsert(
    conn: AsyncConnection, table: Table | type[Base], rows: list[dict[str, Any]], key: tuple[str, ...]
) -> None:
    """INSERT rows, or UPDATE the other columns where the key is stored already."""
    if not rows:
        return
    stmt = _insert(conn)(table)
    others = {c: stmt.excluded[c] for c in rows[0] if c not in key}
    await conn.execute(stmt.on_conflict_do_update(index_elements=list(key), set_=others), rows)
