"""The telemetry pipeline: decode → validate → batch → one commit → ack → twin → SignalsChanged.

`submit` runs in the MQTT adapter's task and never blocks on the database: it validates and enqueues. One
writer task commits batches; a car is acknowledged only after its message is committed. When the queue is
full, telemetry is shed (not acknowledged, so the car keeps it and sends it again later).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from smartev.clock import Clock
from smartev.errors import Unavailable, Unstorable
from smartev.events import EventBus, SignalsChanged, VehicleConnectivityChanged
from smartev.settings import IngestSettings
from smartev.vehicles.history import HistoryWriter, PendingMessage, Row
from smartev.vehicles.ports import VehicleLink
from smartev.vehicles.service import Registry
from smartev.vehicles.signals import encode
from smartev.vehicles.telemetry import MessageRejected, decode
from smartev.vehicles.twin import Twin
from smartev.vss.catalog import Catalog, Signal

logger = logging.getLogger(__name__)
_NUMBER, _TEXT, _OTHER = 0, 1, 2  # how a validated value is stored (see `_storage_of`)


class Rate:
    """Events per second over a sliding window of whole seconds."""

    def __init__(self, window_s: int = 10) -> None:
        self._window = window_s
        self._buckets: deque[tuple[int, int]] = deque()

    def add(self, n: int, now_s: float) -> None:
        sec = int(now_s)
        if self._buckets and self._buckets[-1][0] == sec:
            self._buckets[-1] = (sec, self._buckets[-1][1] + n)
        else:
            self._buckets.append((sec, n))
        while self._buckets and self._buckets[0][0] <= sec - self._window:
            self._buckets.popleft()

    def per_s(self, now_s: float) -> float:
        sec = int(now_s)
        total = sum(n for s, n in self._buckets if sec - self._window < s < sec)
        return total / (self._window - 1)


@dataclass(frozen=True, slots=True)
class TelemetryError:
    """One refused signal (or a whole message: path "") of one car."""

    at_ms: int
    seq: int | None
    path: str
    reason: str


class ErrorLog:
    """The newest refusals per car, in memory, for the operator console (bounded in cars and per car)."""

    def __init__(self, per_car: int = 20, cars: int = 5_000) -> None:  # at most ~30 MB of reasons
        self._per_car = per_car
        self._cars = cars
        self._log: OrderedDict[str, deque[TelemetryError]] = OrderedDict()

    def add(self, vin: str, at_ms: int, seq: int | None, errors: Iterable[dict[str, str]]) -> None:
        """Remember these refusals; the car whose errors are oldest is forgotten first."""
        log = self._log.get(vin)
        if log is None:
            log = self._log[vin] = deque(maxlen=self._per_car)
            if len(self._log) > self._cars:
                self._log.popitem(last=False)
        else:
            self._log.move_to_end(vin)
        log.extend(TelemetryError(at_ms, seq, e.get("path", ""), e.get("reason", "")) for e in errors)

    def of(self, vin: str) -> list[TelemetryError]:
        """This car's remembered refusals, newest first."""
        return list(reversed(self._log.get(vin, ())))


class Ingest:
    """Receives telemetry from cars and commits it to history and the twin."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        registry: Registry,
        twin: Twin,
        writer: HistoryWriter,
        link: VehicleLink,
        bus: EventBus,
        settings: IngestSettings,
        clock: Clock,
    ) -> None:
        self._catalog = catalog
        self._registry = registry
        self._twin = twin
        self._writer = writer
        self._link = link
        self._bus = bus
        self._settings = settings
        self._clock = clock
        self._queue: asyncio.Queue[PendingMessage] = asyncio.Queue(settings.queue_messages)
        self._storage: dict[str, tuple[int, int, Signal]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.counters: Counter[str] = Counter()
        self.rejected_signals: Counter[str] = Counter()
        self.errors = ErrorLog()
        self.messages_rate = Rate()
        self.signals_rate = Rate()
        self.last_commit_ms: int | None = None
        self.failing_since_ms: int | None = None
        self.last_error: str | None = None
        self.started_ms = clock.now_ms()

    # -- the adapter's side ------------------------------------------------------------------------------

    async def submit(self, vin: str, payload: bytes) -> None:
        """Validate one message from `vehicles/{vin}/telemetry` and queue it for commit."""
        now_ms = self._clock.now_ms()
        record = self._registry.by_vin(vin) or await self._registry.lookup(vin)
        if record is None:
            self.counters["unknown_vehicle"] += 1
            return
        if self._twin.seen(record.id, now_ms):
            self._bus.publish(VehicleConnectivityChanged(vin, True, now_ms))
        s = self._settings
        try:
            msg = decode(
                payload,
                self._catalog,
                now_ms=now_ms,
                max_bytes=s.max_payload_bytes,
                max_samples=s.max_samples_per_message,
                max_signals=s.max_signals_per_sample,
                max_future_ms=int(s.max_future_skew_s * 1000),
            )
        except MessageRejected as exc:
            self.counters[f"rejected_{exc.kind}"] += 1
            refused = [{"path": "", "reason": exc.reason}]
            self.errors.add(vin, now_ms, exc.seq, refused)
            self._spawn(self._link.send_errors(vin, exc.seq, refused))
            return
        if msg.errors:
            self.errors.add(vin, now_ms, msg.seq, msg.errors)
            for err in msg.errors:
                self.rejected_signals[_reason_kind(err["reason"])] += 1
        vehicle_id = record.id
        storage = self._storage
        rows: list[Row] = []
        changes: dict[str, tuple[Any, int]] = {}
        for path, ts, value in msg.rows:
            how = storage.get(path) or self._storage_of(path)
            if how[1] == _NUMBER:
                rows.append((vehicle_id, how[0], ts, float(value), None))
            elif how[1] == _TEXT:
                rows.append((vehicle_id, how[0], ts, None, value))
            else:
                rows.append((vehicle_id, how[0], ts, *encode(how[2], value)))
            old = changes.get(path)
            if old is None or ts >= old[1]:
                changes[path] = (value, ts)
        pending = PendingMessage(
            vin=vin,
            vehicle_id=record.id,
            seq=msg.seq,
            rows=rows,
            min_ts=msg.min_ts,
            changes=changes,
            errors=msg.errors,
        )
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            # shed telemetry first: the car keeps unacknowledged messages and sends them again
            self.counters["shed_overload"] += 1

    def _storage_of(self, path: str) -> tuple[int, int, Signal]:
        """How a validated value of `path` is stored: (signal id, _NUMBER | _TEXT | _OTHER, signal)."""
        signal = self._catalog.signals[path]
        if signal.is_array:
            kind = _OTHER
        elif signal.datatype == "string":
            kind = _TEXT
        elif signal.is_numeric:
            kind = _NUMBER  # the catalog coerced it to int, float or bool: float() is `encode`'s answer
        else:
            kind = _OTHER
        how = self._storage[path] = (self._registry.signal_ids[path], kind, signal)
        return how

    # -- the writer ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Commit queued messages in batches until cancelled; retries while the database is down."""
        backoff = 0.2
        while True:
            batch, duplicates = await self._next_batch()
            while True:
                try:
                    batch, new = await self._store(batch)
                    break
                except Unavailable as exc:
                    now = self._clock.now_ms()
                    if self.failing_since_ms is None:
                        self.failing_since_ms = now
                        logger.error("ingest cannot write to the database, retrying: %s", exc.message)
                    self.last_error = exc.message
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
            if self.failing_since_ms is not None:
                logger.warning("ingest writes to the database again")
                self.failing_since_ms = None
                self.last_error = None
            backoff = 0.2
            kept = {(m.vehicle_id, m.seq) for m in batch}
            duplicates = [m for m in duplicates if (m.vehicle_id, m.seq) in kept]
            await self._after_commit(batch, duplicates, new)

    async def _store(self, batch: list[PendingMessage]) -> tuple[list[PendingMessage], set[tuple[int, int]]]:
        """Commit `batch`; if the database refuses some data, split until the refused message stands alone.

        Returns the messages that were kept (committed or already stored) and the keys that were new.
        """
        try:
            return batch, await self._writer.write(batch, self._clock.now_ms())
        except Unstorable as exc:
            if len(batch) == 1:
                m = batch[0]
                self.counters["rejected_unstorable"] += 1
                logger.warning("the database refused one telemetry message (%s); it is rejected", exc.message)
                reason = f"the database refused this message: {exc.message[:300]}"
                self.errors.add(m.vin, self._clock.now_ms(), m.seq, [{"path": "", "reason": reason}])
                self._spawn(self._link.send_errors(m.vin, m.seq, [{"path": "", "reason": reason}]))
                return [], set()
            mid = len(batch) // 2
            kept_a, new_a = await self._store(batch[:mid])
            kept_b, new_b = await self._store(batch[mid:])
            return kept_a + kept_b, new_a | new_b

    async def _next_batch(self) -> tuple[list[PendingMessage], list[PendingMessage]]:
        # Group commit: what queued up during the previous commit goes at once. Only a writer that was idle
        # waits (up to batch_wait_ms) for company, so a steady stream is not delayed twice.
        queue = self._queue
        idle = queue.empty()
        batch = [await queue.get()]
        limit = self._settings.batch_messages
        if idle and self._settings.batch_wait_ms and queue.qsize() < limit - 1:
            # one sleep, not a wait_for (a task and a timer) per message
            await asyncio.sleep(self._settings.batch_wait_ms / 1000)
        for _ in range(min(queue.qsize(), limit - 1)):
            batch.append(queue.get_nowait())
        # a car may resend before its ack arrives: keep one copy of each (vehicle, seq) per batch
        unique: dict[tuple[int, int], PendingMessage] = {}
        duplicates = []
        for m in batch:
            key = (m.vehicle_id, m.seq)
            if key in unique:
                duplicates.append(m)
            else:
                unique[key] = m
        return list(unique.values()), duplicates

    async def _after_commit(
        self, batch: list[PendingMessage], duplicates: list[PendingMessage], new: set[tuple[int, int]]
    ) -> None:
        now_ms = self._clock.now_ms()
        self.last_commit_ms = now_ms
        stored_signals = 0
        for m in batch:
            if (m.vehicle_id, m.seq) not in new:
                self.counters["duplicate"] += 1
                continue
            stored_signals += len(m.rows)
            taken = self._twin.apply(m.vehicle_id, m.changes)
            if taken:
                self._bus.publish(SignalsChanged(m.vin, taken))
        self.counters["messages_stored"] += len(new)
        self.counters["signals_stored"] += stored_signals
        now_s = now_ms / 1000
        self.messages_rate.add(len(new), now_s)
        self.signals_rate.add(stored_signals, now_s)
        # the link queues these without waiting for the broker, so one loop is cheaper than a task per ack
        failed = 0
        for m in batch + duplicates:
            try:
                await self._link.send_ack(m.vin, m.seq)
                if m.errors:
                    await self._link.send_errors(m.vin, m.seq, m.errors)
            except Exception:
                failed += 1
        if failed:
            # the car will resend and be acknowledged again: nothing is lost, only delayed
            self.counters["ack_send_failed"] += failed

    # -- connectivity ----------------------------------------------------------------------------------------

    async def status(self, vin: str, payload: bytes) -> None:
        """A car's retained online/offline status (offline is its last will)."""
        record = self._registry.by_vin(vin) or await self._registry.lookup(vin)
        if record is None:
            self.counters["unknown_vehicle"] += 1
            return
        text = payload.decode("utf-8", "replace").strip().lower()
        if text not in ("online", "offline"):
            self.counters["rejected_bad_status"] += 1
            return
        now = self._clock.now_ms()
        online = text == "online"
        if self._twin.seen(record.id, now, online=online):
            self._bus.publish(VehicleConnectivityChanged(vin, online, now))

    # -- health --------------------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def queue_depth(self) -> int:
        """Messages waiting to be committed."""
        return self._queue.qsize()

    def health(self) -> dict[str, Any]:
        """Ingest figures and, when it is red, why."""
        now = self._clock.now_ms()
        reason = None
        stall_ms = self._settings.stall_after_s * 1000
        since_commit_s = (now - (self.last_commit_ms or self.started_ms)) / 1000
        if self.failing_since_ms is not None and now - self.failing_since_ms >= min(stall_ms, 10_000):
            failing_s = (now - self.failing_since_ms) / 1000
            reason = f"cannot write to the database for {failing_s:.0f} s: {self.last_error}"
        elif self.queue_depth and since_commit_s * 1000 > stall_ms:
            reason = f"no commit for {since_commit_s:.0f} s with messages waiting"
        elif self.queue_depth >= self._queue.maxsize:
            reason = "the ingest queue is full: telemetry is being shed"
        return {
            "ok": reason is None,
            "reason": reason,
            "messages_per_s": round(self.messages_rate.per_s(now / 1000), 1),
            "signals_per_s": round(self.signals_rate.per_s(now / 1000), 1),
            "queue_depth": self.queue_depth,
            "last_commit_ms": self.last_commit_ms,
            "counters": dict(self.counters),
            "rejected_signals_by_reason": dict(self.rejected_signals),
        }


def _reason_kind(reason: str) -> str:
    if reason.startswith("unknown signal"):
        return "unknown_signal"
    if "branch" in reason:
        return "branch_not_signal"
    if reason.startswith("expected"):
        return "wrong_type"
    if "range" in reason or "minimum" in reason or "maximum" in reason or "finite" in reason:
        return "out_of_range"
    if "allowed values" in reason:
        return "not_allowed"
    if "timestamp" in reason:
        return "bad_timestamp"
    return "other"
