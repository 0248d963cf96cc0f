"""The agent's spool: every telemetry message is on disk before it is sent, and leaves only on the platform's ack.

One SQLite file per car. Bounded by size and by the age of its oldest sample: beyond either bound the oldest
messages go first, and what went is counted (messages, samples, signals) so that a loss is never silent. The
same file remembers the commands the car has answered, so a replayed command id is never executed twice, even
across restarts.

Sequence numbers never go back: the next seq is kept in the file, and on opening it is raised to at least the
wall clock in epoch milliseconds, so a file restored from an old backup or rolled back by a power cut cannot
reuse a seq the platform has already stored (a car sends far fewer than 1,000 messages a second).

The class is synchronous and not thread-safe; the agent calls it from one worker thread (`AsyncSpool`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

from smartev.clock import Clock, SystemClock

T = TypeVar("T")

Synchronous = Literal["full", "normal"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    first_ts_ms INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    signals INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dropped (seq INTEGER PRIMARY KEY, samples INTEGER NOT NULL, signals INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    status TEXT,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS results (
    id TEXT PRIMARY KEY,
    payload BLOB NOT NULL
);
"""

_COUNTERS = (
    "next_seq",
    "appended_messages",
    "appended_signals",
    "dropped_messages",
    "dropped_samples",
    "dropped_signals",
    "dropped_for_size",
    "dropped_for_age",
    "rejected_messages",
    "acked_messages",
    "dropped_then_acked_messages",
    "dropped_then_acked_signals",
)
_DROPPED_REMEMBERED = 10_000  # dropped seqs kept to recognise a late ack (the message had arrived after all)
_COMMANDS_KEPT_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """What the spool holds and what it lost."""

    depth: int  # messages waiting for their ack
    bytes: int
    oldest_ts_ms: int | None  # the oldest unsent sample's time
    appended_messages: int
    appended_signals: int
    acked_messages: int
    dropped_messages: int
    dropped_samples: int
    dropped_signals: int
    dropped_for_size: int  # messages
    dropped_for_age: int  # messages
    rejected_messages: int  # messages the platform said it can never store
    dropped_then_acked_messages: int  # dropped while in flight, then acknowledged: they arrived after all
    dropped_then_acked_signals: int


@dataclass(frozen=True, slots=True)
class Spooled:
    """A message in the spool."""

    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Dropped:
    """What one enforcement of the bounds dropped."""

    messages: int = 0
    samples: int = 0
    signals: int = 0


class Spool:
    """A bounded, durable FIFO of telemetry messages keyed by seq, plus the commands the car has answered."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        max_age_s: float = 7 * 24 * 3600,
        synchronous: Synchronous = "full",
        clock: Clock | None = None,
    ) -> None:
        """Open (or create) the spool file.

        Args:
            path: the SQLite file.
            max_bytes: payload bytes kept at most; the oldest messages are dropped beyond it.
            max_age_s: messages whose oldest sample is older than this are dropped.
            synchronous: `full` survives a power cut without losing acknowledged-to-source data; `normal` is
                faster and survives a crash of the agent but may lose the last messages on a power cut.
            clock: for ages and the seq floor.
        """
        if max_bytes <= 0 or max_age_s <= 0:
            raise ValueError("spool bounds must be positive")
        self.path = path
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._clock: Clock = clock or SystemClock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.executescript(_SCHEMA)
        with self._txn():
            for name in _COUNTERS:
                self._db.execute("INSERT OR IGNORE INTO counters VALUES (?, 0)", (name,))
            floor = self._clock.now_ms()
            self._db.execute("UPDATE counters SET value = max(value, ?) WHERE name = 'next_seq'", (floor,))
        self._counters: dict[str, int] = {}
        self._depth = self._bytes = 0
        self._reload()

    # -- telemetry ------------------------------------------------------------------------------------------

    def append(self, samples: list[dict[str, Any]], first_ts_ms: int) -> Spooled:
        """Store a new message made of `samples` under the next seq; returns it. Enforces the size bound."""
        signals = sum(len(sample["signals"]) for sample in samples)
        with self._txn():
            seq = self._counters["next_seq"]
            payload = orjson.dumps({"seq": seq, "samples": samples})
            self._db.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                (seq, first_ts_ms, len(samples), signals, payload),
            )
            self._bump({"next_seq": 1, "appended_messages": 1, "appended_signals": signals})
            self._depth += 1
            self._bytes += len(payload)
            if self._bytes > self.max_bytes:
                self._drop_oldest_until_fits()
        return Spooled(seq, payload)

    @property
    def next_seq(self) -> int:
        """The seq the next message will get: everything below it was made earlier (a backlog after a restart)."""
        return self._counters["next_seq"]

    def ack(self, seqs: Iterable[int]) -> int:
        """Delete acknowledged messages; returns how many were still in the spool."""
        return self._delete(seqs, "acked_messages")

    def reject(self, seqs: Iterable[int]) -> int:
        """Delete messages the platform will never store (it could not read them), counting them."""
        return self._delete(seqs, "rejected_messages")

    def pending(self, after_seq: int = -1, limit: int = 100) -> list[Spooled]:
        """Messages waiting for their ack with seq > `after_seq`, oldest first."""
        rows = self._db.execute(
            "SELECT seq, payload FROM messages WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        ).fetchall()
        return [Spooled(int(seq), bytes(payload)) for seq, payload in rows]

    def get(self, seqs: Iterable[int]) -> list[Spooled]:
        """The messages with these seqs that are still in the spool, oldest first."""
        found = []
        for seq in sorted(set(seqs)):
            row = self._db.execute("SELECT payload FROM messages WHERE seq = ?", (seq,)).fetchone()
            if row is not None:
                found.append(Spooled(seq, bytes(row[0])))
        return found

    def enforce_age(self) -> Dropped:
        """Drop messages whose oldest sample is older than `max_age_s`; returns what went."""
        cutoff = self._clock.now_ms() - int(self.max_age_s * 1000)
        with self._txn():
            row = self._db.execute(
                "SELECT count(*), coalesce(sum(samples), 0), coalesce(sum(signals), 0),"
                " coalesce(sum(length(payload)), 0) FROM messages WHERE first_ts_ms < ?",
                (cutoff,),
            ).fetchone()
            if not row[0]:
                return Dropped()
            self._db.execute(
                "INSERT OR IGNORE INTO dropped SELECT seq, samples, signals FROM messages WHERE first_ts_ms < ?",
                (cutoff,),
            )
            self._db.execute("DELETE FROM messages WHERE first_ts_ms < ?", (cutoff,))
            dropped = Dropped(int(row[0]), int(row[1]), int(row[2]))
            self._count_drop(dropped, "dropped_for_age")
            self._depth -= dropped.messages
            self._bytes -= int(row[3])
        return dropped

    def stats(self) -> SpoolStats:
        """Depth, size, the oldest sample waiting and the counters."""
        oldest = self._db.execute("SELECT min(first_ts_ms) FROM messages").fetchone()[0]
        c = self._counters
        return SpoolStats(
            depth=self._depth,
            bytes=self._bytes,
            oldest_ts_ms=None if oldest is None else int(oldest),
            appended_messages=c["appended_messages"],
            appended_signals=c["appended_signals"],
            acked_messages=c["acked_messages"],
            dropped_messages=c["dropped_messages"],
            dropped_samples=c["dropped_samples"],
            dropped_signals=c["dropped_signals"],
            dropped_for_size=c["dropped_for_size"],
            dropped_for_age=c["dropped_for_age"],
            rejected_messages=c["rejected_messages"],
            dropped_then_acked_messages=c["dropped_then_acked_messages"],
            dropped_then_acked_signals=c["dropped_then_acked_signals"],
        )

    # -- commands -------------------------------------------------------------------------------------------

    def command_seen(self, command_id: str) -> tuple[str | None, str | None] | None:
        """(status, detail) of a command answered before (status None: interrupted mid-way), or None if new."""
        row = self._db.execute("SELECT status, detail FROM commands WHERE id = ?", (command_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def command_started(self, command_id: str) -> None:
        """Remember the id before the command acts, so that a crash mid-way cannot lead to a second execution."""
        with self._txn():
            self._db.execute(
                "INSERT OR IGNORE INTO commands (id, received_ms) VALUES (?, ?)",
                (command_id, self._clock.now_ms()),
            )
            self._db.execute(
                "DELETE FROM commands WHERE received_ms < ?", (self._clock.now_ms() - _COMMANDS_KEPT_MS,)
            )

    def command_answered(self, command_id: str, status: str, detail: str, payload: bytes) -> None:
        """Record a command's answer, and keep the answer to send until the broker has it."""
        with self._txn():
            self._db.execute(
                "INSERT INTO commands (id, received_ms, status, detail) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET status = excluded.status, detail = excluded.detail",
                (command_id, self._clock.now_ms(), status, detail),
            )
            self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (command_id, payload))

    def unsent_results(self) -> list[tuple[str, bytes]]:
        """Command answers the broker has not confirmed yet."""
        return [(str(i), bytes(p)) for i, p in self._db.execute("SELECT id, payload FROM results").fetchall()]

    def result_sent(self, command_id: str) -> None:
        """The broker has the answer."""
        with self._txn():
            self._db.execute("DELETE FROM results WHERE id = ?", (command_id,))

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    # -- internals ------------------------------------------------------------------------------------------

    def _txn(self) -> _Transaction:
        return _Transaction(self._db, self._reload)

    def _reload(self) -> None:
        """Read the counters, depth and size from the file (at open, and after a rolled-back transaction)."""
        self._counters = {str(k): int(v) for k, v in self._db.execute("SELECT name, value FROM counters")}
        row = self._db.execute("SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages").fetchone()
        self._depth, self._bytes = int(row[0]), int(row[1])

    def _bump(self, deltas: dict[str, int]) -> None:
        for name, delta in deltas.items():
            if delta:
                self._db.execute("UPDATE counters SET value = value + ? WHERE name = ?", (delta, name))
                self._counters[name] += delta

    def _delete(self, seqs: Iterable[int], counter: str) -> int:
        wanted = sorted(set(seqs))
        if not wanted:
            return 0
        deleted = freed = 0
        late_messages = late_signals = 0
        with self._txn():
            for seq in wanted:
                row = self._db.execute(
                    "DELETE FROM messages WHERE seq = ? RETURNING length(payload)", (seq,)
                ).fetchone()
                if row is not None:
                    deleted += 1
                    freed += int(row[0])
                elif counter == "acked_messages":
                    # Dropped while in flight, and acknowledged after all: it had arrived.
                    late = self._db.execute(
                        "DELETE FROM dropped WHERE seq = ? RETURNING signals", (seq,)
                    ).fetchone()
                    if late is not None:
                        late_messages += 1
                        late_signals += int(late[0])
            self._bump(
                {
                    counter: deleted,
                    "dropped_then_acked_messages": late_messages,
                    "dropped_then_acked_signals": late_signals,
                }
            )
            self._depth -= deleted
            self._bytes -= freed
        return deleted

    def _drop_oldest_until_fits(self) -> None:
        excess = self._bytes - self.max_bytes
        rows = self._db.execute(
            "SELECT seq, samples, signals, length(payload) FROM messages ORDER BY seq LIMIT ?",
            (max(self._depth, 1),),
        )
        freed = 0
        last_seq = None
        messages = samples = signals = 0
        for seq, n_samples, n_signals, size in rows:
            if freed >= excess:
                break
            freed += int(size)
            last_seq = int(seq)
            messages += 1
            samples += int(n_samples)
            signals += int(n_signals)
        if last_seq is None:
            return
        self._db.execute(
            "INSERT OR IGNORE INTO dropped SELECT seq, samples, signals FROM messages WHERE seq <= ?",
            (last_seq,),
        )
        self._db.execute("DELETE FROM messages WHERE seq <= ?", (last_seq,))
        self._count_drop(Dropped(messages, samples, signals), "dropped_for_size")
        self._depth -= messages
        self._bytes -= freed

    def _count_drop(self, dropped: Dropped, reason: str) -> None:
        self._db.execute(
            "DELETE FROM dropped WHERE seq < (SELECT seq FROM dropped ORDER BY seq DESC LIMIT 1 OFFSET ?)",
            (_DROPPED_REMEMBERED,),
        )
        self._bump(
            {
                "dropped_messages": dropped.messages,
                "dropped_samples": dropped.samples,
                "dropped_signals": dropped.signals,
                reason: dropped.messages,
            }
        )


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on error (and the in-memory counters reloaded)."""

    def __init__(self, db: sqlite3.Connection, on_rollback: Callable[[], None]) -> None:
        self._db = db
        self._on_rollback = on_rollback

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
            self._on_rollback()


class AsyncSpool:
    """The spool driven from asyncio: every call runs on one worker thread, in order, off the event loop."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` on the spool's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def close(self) -> None:
        """Finish pending calls and close the file."""
        self._thread.shutdown(wait=True)
        self.spool.close()
