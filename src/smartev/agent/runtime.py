"""The running agent: source → sampler → batches → spool → MQTT, acks → spool, commands → source → results.

Live data first: after a reconnect the messages made while connected go out at once, and the backlog the spool
kept while offline is replayed oldest first at `replay_per_s`, with at most `max_in_flight` unacknowledged, so a
long outage neither floods the platform nor holds back what is happening now. A message not acknowledged within
`ack_timeout_s` is sent again with the same seq (the platform stores it once).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiomqtt
import orjson

from smartev.agent.config import AgentConfig
from smartev.agent.protocol import (
    Backoff,
    Topics,
    expiry_refusal,
    granted_all,
    raise_if_cancelled,
    rfc3339_ms,
)
from smartev.agent.sampling import Batch, Batcher, Sampler
from smartev.agent.source import CommandOutcome, SignalSource, SignalValue
from smartev.agent.spool import AsyncSpool, Spool, Spooled
from smartev.clock import Clock, SystemClock
from smartev.transport.mqtt import BrokerAddress

logger = logging.getLogger(__name__)

_TICK_S = 0.1
_STATUS_EVERY_S = 1.0
_AGE_CHECK_EVERY_S = 10.0
_ACK_FLUSH = 200  # acknowledged seqs deleted in one transaction
_PAGE = 200
_COMMAND_TIMEOUT_S = 30.0


class Agent:
    """One car's agent. `run()` until cancelled; `status()` at any time."""

    def __init__(
        self,
        config: AgentConfig,
        source: SignalSource,
        *,
        password: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.vin = config.vin
        self.source = source
        self._clock: Clock = clock or SystemClock()
        self._password = password if password is not None else config.mqtt_password()
        self._broker = BrokerAddress.from_url(config.platform.mqtt_url)
        self._topics = Topics.for_vin(self.vin)
        spool_cfg = config.spool
        self._spool = AsyncSpool(
            Spool(
                config.spool_path,
                max_bytes=int(spool_cfg.max_mb * 1024 * 1024),
                max_age_s=spool_cfg.max_age_h * 3600,
                synchronous=spool_cfg.synchronous,
                clock=self._clock,
            )
        )
        sampling = config.sampling
        self._sampler = Sampler(sampling.to_rules(), sampling.heartbeat_s)
        self._batcher = Batcher(max_samples=sampling.batch_samples, max_delay_ms=sampling.batch_ms)
        self._closed: asyncio.Queue[Batch] = asyncio.Queue()
        self._commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._results: deque[tuple[str, bytes]] = deque()
        self._wake = asyncio.Event()
        self._backoff = Backoff(max_s=config.platform.reconnect_max_s)

        # Session state: which messages are live, which are backlog, which are waiting for their ack.
        self.connected = False
        self._connected_since: float | None = None
        self._boundary = 0  # seqs below it were made before this session: backlog
        self._last_seq = -1
        self._live: deque[Spooled] = deque()
        self._in_flight: dict[int, float] = {}  # seq -> loop time sent
        self._backlog_in_flight: set[int] = set()
        self._retry: list[int] = []  # heap of seqs whose ack timed out
        self._cursor = -1  # highest backlog seq read from the spool in this session
        self._tokens = 0.0
        self._tokens_at = 0.0
        self._acked: set[int] = set()  # acknowledged, not yet deleted
        self._last_reading_ms: int | None = None
        self._last_reading_loop = 0.0
        self.counts = {
            "published": 0,
            "resent": 0,
            "acked": 0,
            "commands": 0,
            "refused": 0,
            "errors": 0,
            "source_failures": 0,
        }
        self._last_ack_at: str | None = None
        self.on_spooled: list[Callable[[Spooled, Batch], None]] = []  # observers (tests, a local logger)
        self.on_acked: list[Callable[[int], None]] = []

    # -- running --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read, spool, send and obey until cancelled; the spool file is closed on the way out."""
        # Whatever an earlier run left in the spool is backlog: replayed, oldest first, once connected.
        self._last_seq = self._spool.spool.next_seq - 1
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read(), name="source")
                tg.create_task(self._write(), name="spool writer")
                tg.create_task(self._tick(), name="tick")
                tg.create_task(self._stay_connected(), name="mqtt")
                tg.create_task(self._obey(), name="commands")
        finally:
            with contextlib.suppress(Exception):
                await self._flush_on_exit()
                await self._write_status(running=False)
            self._spool.close()

    async def _read(self) -> None:
        """Run the source; when it fails (a CAN adapter unplugged), say why and start it again, with backoff.

        The spool keeps sending meanwhile, so an outage of the source never holds back what was already read.
        """
        backoff = Backoff(first_s=1.0, max_s=60.0)
        while True:
            started = asyncio.get_running_loop().time()
            try:
                await self.source.run(self._on_readings)
                logger.warning("the signal source stopped; starting it again")
            except Exception as exc:  # any source failure: the agent must outlive it
                logger.error("the signal source failed: %s", exc)
                self.counts["source_failures"] += 1
            if asyncio.get_running_loop().time() - started > 60:
                backoff.reset()
            await backoff.sleep()

    async def _flush_on_exit(self) -> None:
        batch = self._batcher.flush()
        if batch is not None:
            await self._append(batch)
        while not self._closed.empty():
            await self._append(self._closed.get_nowait())
        await self._delete_acked()

    # -- readings → spool -----------------------------------------------------------------------------------

    def _on_readings(self, ts: float, readings: Mapping[str, SignalValue]) -> None:
        ts_ms = round(ts * 1000)
        loop_now = asyncio.get_running_loop().time()
        self._last_reading_ms, self._last_reading_loop = ts_ms, loop_now
        now_ms = int(loop_now * 1000)
        out = self._sampler.offer(ts_ms, readings)
        if out:
            self._add_sample(ts_ms, out, now_ms)
        for due_ts, signals in self._sampler.due(ts_ms):
            self._add_sample(due_ts, signals, now_ms)

    def _add_sample(self, ts_ms: int, signals: dict[str, SignalValue], now_ms: int) -> None:
        for batch in self._batcher.add(rfc3339_ms(ts_ms / 1000), ts_ms, signals, now_ms):
            self._closed.put_nowait(batch)

    async def _write(self) -> None:
        while True:
            await self._append(await self._closed.get())

    async def _append(self, batch: Batch) -> None:
        # Acknowledged messages leave first, so the size bound never counts them as dropped.
        await self._delete_acked()
        spooled = await self._spool.call(self._spool.spool.append, batch.samples, batch.first_ts_ms)
        self._last_seq = spooled.seq
        for observer in self.on_spooled:
            observer(spooled, batch)
        if self.connected and spooled.seq >= self._boundary:
            self._live.append(spooled)
            self._wake.set()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_status = next_age = loop.time()
        while True:
            await asyncio.sleep(_TICK_S)
            now = loop.time()
            if self._last_reading_ms is not None and now - self._last_reading_loop >= 1.0:
                # A quiet source (a parked car's CAN bus): its time moves on at the pace of the loop.
                source_ms = self._last_reading_ms + int((now - self._last_reading_loop) * 1000)
                for due_ts, signals in self._sampler.due(source_ms):
                    self._add_sample(due_ts, signals, int(now * 1000))
            batch = self._batcher.due(int(now * 1000))
            if batch is not None:
                self._closed.put_nowait(batch)
            if len(self._acked) >= _ACK_FLUSH or (self._acked and not self.connected):
                await self._delete_acked()
            if now >= next_age:
                next_age = now + _AGE_CHECK_EVERY_S
                dropped = await self._spool.call(self._spool.spool.enforce_age)
                if dropped.messages:
                    logger.warning("dropped %d spooled messages older than the age bound", dropped.messages)
            if now >= next_status:
                next_status = now + _STATUS_EVERY_S
                await self._delete_acked()
                await self._write_status(running=True)

    async def _delete_acked(self) -> None:
        if not self._acked:
            return
        seqs, self._acked = self._acked, set()
        await self._spool.call(self._spool.spool.ack, seqs)

    # -- the MQTT session -----------------------------------------------------------------------------------

    async def _stay_connected(self) -> None:
        while True:
            error: BaseException | None = None
            session = asyncio.create_task(self._session(), name="session")
            try:
                await session
            except* aiomqtt.MqttError as group:
                error = group.exceptions[0]
            raise_if_cancelled()
            delay = self._backoff.next_delay()
            logger.warning("MQTT %s: %s; retrying in %.1f s", self._broker.public_url(), error, delay)
            await asyncio.sleep(delay)

    def _client(self) -> aiomqtt.Client:
        tls = None
        if self._broker.tls:
            ca = self.config.platform.ca_file
            tls = ssl.create_default_context(cafile=str(self.config.resolve(ca)) if ca else None)
        return aiomqtt.Client(
            self._broker.host,
            self._broker.port,
            username=self.vin,
            password=self._password,
            identifier=self.vin,
            clean_session=False,  # commands sent while the car was away are waiting for it
            will=aiomqtt.Will(self._topics.status, b"offline", qos=1, retain=True),
            keepalive=self.config.platform.keepalive_s,
            tls_context=tls,
            max_queued_outgoing_messages=None,
        )

    async def _session(self) -> None:
        async with self._client() as client:
            try:
                if not granted_all(await client.subscribe(self._topics.subscriptions())):
                    raise aiomqtt.MqttError("the broker refused the car's subscriptions (check its ACL)")
                await client.publish(self._topics.status, b"online", qos=1, retain=True)
                raise_if_cancelled()
                self._begin_session()
                logger.info("connected to %s as %s", self._broker.public_url(), self.vin)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._receive(client))
                    tg.create_task(self._send(client))
            except asyncio.CancelledError:
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.publish(self._topics.status, b"offline", qos=1, retain=True, timeout=2.0)
                raise
            finally:
                self.connected = False
                self._connected_since = None

    def _begin_session(self) -> None:
        self._backoff.reset()
        self.connected = True
        self._connected_since = self._clock.now().timestamp()
        self._boundary = self._last_seq + 1
        self._live.clear()
        self._in_flight.clear()
        self._backlog_in_flight.clear()
        self._retry.clear()
        self._cursor = -1
        self._tokens = 1.0
        self._tokens_at = asyncio.get_running_loop().time()
        self._wake.set()

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            try:
                payload = orjson.loads(message.payload) if isinstance(message.payload, bytes | str) else None
            except orjson.JSONDecodeError:
                payload = None
            if not isinstance(payload, dict):
                logger.warning("ignoring a message on %s that is not a JSON object", topic)
                continue
            if topic == self._topics.ack:
                self._on_ack(payload.get("seq"))
            elif topic == self._topics.errors:
                await self._on_errors(payload)
            elif topic == self._topics.commands:
                self._commands.put_nowait(payload)

    def _on_ack(self, seq: object) -> None:
        if type(seq) is not int:
            return
        self._in_flight.pop(seq, None)
        self._backlog_in_flight.discard(seq)
        self._acked.add(seq)
        self.counts["acked"] += 1
        for observer in self.on_acked:
            observer(seq)
        self._last_ack_at = rfc3339_ms(self._clock.now().timestamp())
        self._wake.set()

    async def _on_errors(self, payload: dict[str, Any]) -> None:
        self.counts["errors"] += 1
        seq, errors = payload.get("seq"), payload.get("errors")
        if not isinstance(errors, list):
            return
        if self.counts["errors"] in (1, 10, 100) or self.counts["errors"] % 1000 == 0:
            logger.warning(
                "the platform reported problems with message %s (%d reports so far): %s",
                seq,
                self.counts["errors"],
                errors[:3],
            )
        # A message it could not read at all (path "") will never be stored: keeping it would resend it forever.
        unreadable = any(isinstance(e, dict) and e.get("path") == "" for e in errors)
        if unreadable and type(seq) is int:
            self._in_flight.pop(seq, None)
            self._backlog_in_flight.discard(seq)
            await self._spool.call(self._spool.spool.reject, [seq])

    async def _send(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.config.platform.ack_timeout_s
        self._results.extend(await self._spool.call(self._spool.spool.unsent_results))
        while True:
            self._wake.clear()
            while self._live:  # what is happening now goes first
                message = self._live.popleft()
                if message.seq not in self._acked:
                    await self._publish(client, message.seq, message.payload)
            while self._results:
                command_id, payload = self._results[0]
                await client.publish(self._topics.results, payload, qos=1, timeout=timeout)
                self._results.popleft()
                await self._spool.call(self._spool.spool.result_sent, command_id)
            now = loop.time()
            for seq, sent_at in list(self._in_flight.items()):
                if now - sent_at >= timeout:
                    del self._in_flight[seq]
                    self._backlog_in_flight.discard(seq)
                    heapq.heappush(self._retry, seq)
            await self._replay(client)
            raise_if_cancelled()
            await self._sleep_until_needed(loop.time())

    async def _replay(self, client: aiomqtt.Client) -> None:
        """Send backlog and timed-out messages, oldest first, within the rate and the in-flight window."""
        spool_cfg = self.config.spool
        now = asyncio.get_running_loop().time()
        self._tokens = min(
            self._tokens + (now - self._tokens_at) * spool_cfg.replay_per_s, spool_cfg.replay_per_s
        )
        self._tokens_at = now
        while self._tokens >= 1.0 and len(self._backlog_in_flight) < spool_cfg.max_in_flight:
            batch = await self._next_backlog(min(int(self._tokens), spool_cfg.max_in_flight, _PAGE))
            if not batch:
                return
            for message in batch:
                if message.seq in self._acked or message.seq in self._in_flight:
                    continue
                self._backlog_in_flight.add(message.seq)
                await self._publish(client, message.seq, message.payload)
                self._tokens -= 1.0

    async def _next_backlog(self, count: int) -> list[Spooled]:
        retry: list[int] = []
        while self._retry and len(retry) < count:
            retry.append(heapq.heappop(self._retry))
        if retry:
            fetched = await self._spool.call(self._spool.spool.get, retry)
            self.counts["resent"] += len(fetched)
            return fetched
        if self._cursor + 1 >= self._boundary:
            return []
        page = await self._spool.call(self._spool.spool.pending, self._cursor, count)
        page = [m for m in page if m.seq < self._boundary]
        if page:
            self._cursor = page[-1].seq
        else:
            self._cursor = self._boundary
        return page

    async def _publish(self, client: aiomqtt.Client, seq: int, payload: bytes) -> None:
        await client.publish(
            self._topics.telemetry, payload, qos=1, timeout=self.config.platform.ack_timeout_s
        )
        self._in_flight[seq] = asyncio.get_running_loop().time()
        self.counts["published"] += 1

    async def _sleep_until_needed(self, now: float) -> None:
        deadlines = (
            [min(self._in_flight.values()) + self.config.platform.ack_timeout_s] if self._in_flight else []
        )
        backlog_waiting = self._retry or self._cursor + 1 < self._boundary
        if backlog_waiting and len(self._backlog_in_flight) < self.config.spool.max_in_flight:
            deadlines.append(now + max(1.0 - self._tokens, 0.0) / self.config.spool.replay_per_s)
        timeout = max(min(deadlines) - now, 0.0) if deadlines else None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    # -- commands -------------------------------------------------------------------------------------------

    async def _obey(self) -> None:
        """One command at a time, in the order they arrive."""
        spool = self._spool.spool
        while True:
            command = await self._commands.get()
            command_id = command.get("id")
            if not isinstance(command_id, str) or not command_id or len(command_id) > 200:
                logger.warning("ignoring a command without a usable id")
                continue
            seen = await self._spool.call(spool.command_seen, command_id)
            if seen is not None:
                status, detail = seen
                self.counts["refused"] += 1
                if status is None:
                    outcome = CommandOutcome(
                        "failed", "interrupted by a restart of the agent; not executed again"
                    )
                else:
                    outcome = CommandOutcome(status, f"{detail} (answered before; not executed again)")  # type: ignore[arg-type]
                await self._answer(command_id, outcome, record=False)
                continue
            outcome = await self._execute(command_id, command)
            await self._answer(command_id, outcome, record=True)

    async def _execute(self, command_id: str, command: dict[str, Any]) -> CommandOutcome:
        refusal = expiry_refusal(command.get("expires_at"), self._clock.now())
        if refusal is not None:
            self.counts["refused"] += 1
            return refusal
        name, args = command.get("name"), command.get("args")
        if args is None:
            args = {}
        if not isinstance(name, str) or not name:
            return CommandOutcome("rejected", "command name missing")
        if not isinstance(args, dict):
            return CommandOutcome("rejected", "args must be a JSON object")
        await self._spool.call(self._spool.spool.command_started, command_id)
        try:
            outcome = await asyncio.wait_for(self.source.actuate(name, args), _COMMAND_TIMEOUT_S)
        except TimeoutError:
            outcome = CommandOutcome(
                "failed", f"the car did not carry it out within {_COMMAND_TIMEOUT_S:g} s"
            )
        except Exception as exc:  # a source's bug must not take the agent down; the owner hears why it failed
            logger.exception("command %s failed in the source", name)
            outcome = CommandOutcome("failed", f"the car could not carry it out: {exc}")
        self.counts["commands"] += 1
        return outcome

    async def _answer(self, command_id: str, outcome: CommandOutcome, *, record: bool) -> None:
        payload = orjson.dumps({"id": command_id, "status": outcome.status, "detail": outcome.detail})
        if record:
            await self._spool.call(
                self._spool.spool.command_answered, command_id, outcome.status, outcome.detail, payload
            )
        self._results.append((command_id, payload))
        self._wake.set()

    # -- status ---------------------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """What `smartev agent status` shows."""
        stats = await self._spool.call(self._spool.spool.stats)
        return {
            "vin": self.vin,
            "pid": os.getpid(),
            "updated_at": rfc3339_ms(self._clock.now().timestamp()),
            "broker": self._broker.public_url(),
            "connected": self.connected,
            "connected_since": rfc3339_ms(self._connected_since) if self._connected_since else None,
            "last_ack_at": self._last_ack_at,
            "in_flight": len(self._in_flight),
            "spool": asdict(stats),
            "counts": dict(self.counts),
        }

    async def _write_status(self, *, running: bool) -> None:
        status = await self.status() | {"running": running}
        await asyncio.to_thread(write_status, self.config.status_path, status)


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Replace the status file in one step, so a reader never sees half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(status, option=orjson.OPT_INDENT_2))
    tmp.replace(path)
