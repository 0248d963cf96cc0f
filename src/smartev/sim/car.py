"""A simulated car on the wire: drives its `CarModel` in (scaled) real time and speaks the MQTT contract.

One MQTT client per car, named after its VIN and logged in as the car. Telemetry goes through an outbox and is
re-sent with its original seq until the platform acks it, so a platform or broker restart loses nothing; commands
are executed at most once per id, and a replayed id is answered with the first result.

The MQTT client is `CarLink`, a small MQTT 3.1.1 client on an asyncio protocol, rather than aiomqtt: a fleet of
10,000 cars in one process needs a car's second (a report, a publish, an ack and two PUBACKs) to cost tens of
microseconds, and aiomqtt spends hundreds on a task per received message, a `wait_for` per publish and a
thread-safe wake-up per write. The car publishes without waiting for PUBACKs (the outbox waits for the
platform's ack, which says more) and is driven by loop timers, not a task that sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from smartev.agent.protocol import (
    Backoff,
    Topics,
    expiry_refusal,
    granted_all,
    raise_if_cancelled,
    rfc3339_ms,
)
from smartev.clock import Clock, SystemClock
from smartev.sim.faults import random_faults
from smartev.sim.model import CarModel, CommandOutcome, CommandStatus, SignalValue, car_spec
from smartev.sim.mqtt import CarLink, LinkDown, utf8
from smartev.sim.telemetry import Outbox, Sample, SignalDelta

if TYPE_CHECKING:
    from smartev.sim.fleet import CarIdentity

logger = logging.getLogger(__name__)

_REMEMBERED_COMMANDS = 1024


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A command the car answered, with the answer it gave."""

    id: str
    name: str
    args: dict[str, Any]
    status: CommandStatus
    detail: str
    replay: bool = False


@dataclass
class Ledger:
    """What the car sent and received, for tests and the demo; the oldest entries go beyond `limit`."""

    limit: int = 1000
    sent: dict[int, list[Sample]] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)
    errors: list[dict[str, Any]] = field(default_factory=list)
    commands: list[CommandRecord] = field(default_factory=list)  # executed against the car
    results: list[CommandRecord] = field(default_factory=list)  # every answer, replays and refusals too

    def unacked(self) -> list[int]:
        """Seqs sent and not yet acknowledged, oldest first."""
        return [seq for seq in self.sent if seq not in self.acked]

    def record_sent(self, seq: int, samples: list[Sample]) -> None:
        """Remember message `seq`."""
        if self.limit <= 0:
            return
        self.sent[seq] = samples
        while len(self.sent) > self.limit:
            oldest = next(iter(self.sent))
            del self.sent[oldest]
            self.acked.discard(oldest)

    def record_ack(self, seq: int) -> None:
        """Remember that `seq` was acknowledged."""
        if seq in self.sent:
            self.acked.add(seq)

    def record(self, entries: list[Any], entry: Any) -> None:
        """Append to one of the lists, keeping at most `limit` entries."""
        if self.limit <= 0:
            return
        entries.append(entry)
        if len(entries) > self.limit:
            del entries[: len(entries) - self.limit]


@dataclass(frozen=True, slots=True)
class CarStats:
    """Counters of one car's traffic."""

    connected: bool
    sent: int  # telemetry messages created (each seq once)
    resent: int
    acked: int
    pending: int
    dropped: int
    errors: int  # error reports received from the platform
    commands: int  # commands executed


class SimulatedCar:
    """One car: its model, its MQTT session, its outbox and its ledger."""

    def __init__(
        self,
        identity: CarIdentity,
        *,
        mqtt_host: str,
        mqtt_port: int,
        seed: int | str = 1,
        speed: float = 1.0,
        report_interval_s: float = 1.0,
        full_state_every_s: float = 30.0,
        resend_after_s: float = 5.0,
        start: datetime | None = None,
        first_seq: int | None = None,
        wall_clock_ts: bool = False,
        clock: Clock | None = None,
        model: CarModel | None = None,
        ledger_size: int = 1000,
        outbox_capacity: int = 10_000,
        keepalive_s: int = 30,
        fault_rate: float = 0.0,
    ) -> None:
        """Create the car; nothing connects until `run`.

        Args:
            identity: VIN (also MQTT username and client id), password and car model name.
            seed: with the VIN, decides everything random about the car.
            speed: simulated seconds per real second.
            report_interval_s: real seconds between telemetry messages.
            full_state_every_s: simulated seconds between messages carrying every signal.
            resend_after_s: real seconds before an unacknowledged message is sent again.
            start: simulated time to start at; the clock's now when not given.
            first_seq: the first telemetry seq; by default the wall clock in epoch milliseconds, so a car
                that keeps no state between runs never reuses a seq the platform has stored already.
            wall_clock_ts: stamp samples with the wall clock instead of simulated time (a live demo at
                speed > 1 would otherwise send samples from the future, which the platform rejects).
            clock: the wall clock, used for the start and for command expiry.
            model: a ready car model (tests); built from `seed` and the identity otherwise.
            ledger_size: how many messages and commands the ledger keeps (0 keeps none).
            outbox_capacity: unacknowledged messages kept while the platform is unreachable.
            fault_rate: the chance that the car develops a fault (a trouble code, a slow tyre leak or a weak
                12 V battery) at a random moment of its first week; decided by the seed.
        """
        if speed <= 0 or not math.isfinite(speed):
            raise ValueError("speed must be a positive number")
        if report_interval_s <= 0:
            raise ValueError("report_interval_s must be positive")
        self.identity = identity
        self.vin = identity.vin
        self.speed = speed
        self.report_interval_s = report_interval_s
        self._host = mqtt_host
        self._port = mqtt_port
        self._keepalive_s = keepalive_s
        self._clock: Clock = clock or SystemClock()
        car_seed = f"{seed}:{identity.vin}"
        start = start or self._clock.now()
        self.model = model or CarModel(
            car_seed, start, car_spec(identity.model), faults=random_faults(car_seed, fault_rate, start)
        )
        self.ledger = Ledger(limit=ledger_size)
        self._delta = SignalDelta(full_state_every_s)
        self._outbox = Outbox(resend_after_s=resend_after_s, capacity=outbox_capacity)
        self._results: deque[bytes] = deque()  # command results not yet published
        self._unconfirmed: dict[
            int, bytes
        ] = {}  # packet id → a published result the broker has not confirmed
        self._answered: OrderedDict[str, CommandOutcome] = OrderedDict()
        self._link: CarLink | None = None
        self._resend: asyncio.TimerHandle | None = None
        self._backoff = Backoff()
        self._first_seq = first_seq if first_seq is not None else self._clock.now_ms()
        self._seq = self._first_seq - 1
        self._wall_clock_ts = wall_clock_ts
        self._anchor: tuple[float, float] | None = None  # (loop time, simulated time) at run start
        self._connected = False
        self._connected_once = False
        self._counts = {"resent": 0, "acked": 0, "errors": 0, "commands": 0}
        topics = self._topics = Topics.for_vin(identity.vin)
        self._telemetry_topic = topics.telemetry
        self._ack_topic = topics.ack
        self._errors_topic = topics.errors
        self._commands_topic = topics.commands
        self._results_topic = topics.results
        self._status_topic = topics.status
        self._telemetry_wire = utf8(topics.telemetry)
        self._results_wire = utf8(topics.results)

    @property
    def connected(self) -> bool:
        """True while the MQTT session is up."""
        return self._connected

    @property
    def pending(self) -> int:
        """Telemetry messages not yet acknowledged."""
        return len(self._outbox)

    def stats(self) -> CarStats:
        """Counters of this car's traffic."""
        return CarStats(
            connected=self._connected,
            sent=self._seq - self._first_seq + 1,
            resent=self._counts["resent"],
            acked=self._counts["acked"],
            pending=len(self._outbox),
            dropped=self._outbox.dropped,
            errors=self._counts["errors"],
            commands=self._counts["commands"],
        )

    async def run(self, *, start_delay_s: float = 0.0) -> None:
        """Drive, report and stay connected until cancelled."""
        # Anchor before the delay, so every car of a fleet keeps the same simulated time.
        self._anchor = (asyncio.get_running_loop().time(), self.model.time)
        if start_delay_s > 0:
            await asyncio.sleep(start_delay_s)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._drive(), name=f"drive {self.vin}")
            tg.create_task(self._stay_connected(), name=f"mqtt {self.vin}")

    # -- the car's own life, connected or not ----------------------------------------------------------------

    def _sim_now(self) -> float:
        if self._anchor is None:
            return self.model.time
        loop_t0, sim_t0 = self._anchor
        return sim_t0 + self.speed * (asyncio.get_running_loop().time() - loop_t0)

    async def _drive(self) -> None:
        """Report every interval from a loop timer; ends only with the car, or with an error of the model."""
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[None] = loop.create_future()
        next_at = loop.time()
        handle: asyncio.Handle | None = None

        def tick() -> None:
            nonlocal next_at, handle
            try:
                self.report()
            except Exception as exc:  # handed to the task, which raises it
                failed.set_exception(exc)
                return
            next_at += self.report_interval_s
            now = loop.time()
            if next_at < now:
                next_at = now  # after a stall, skip reports rather than burst to catch up
            handle = loop.call_at(next_at, tick)

        handle = loop.call_soon(tick)
        try:
            await failed
        finally:
            handle.cancel()

    def _catch_up(self) -> dict[str, SignalValue]:
        dt = self._sim_now() - self.model.time
        return self.model.step(dt) if dt > 0 else self.model.signals()

    def report(self) -> None:
        """Bring the model up to now and send a telemetry message with what changed, if anything did."""
        changes = self._delta.changes(self._catch_up(), self.model.time)
        if not changes:
            return
        self._seq += 1
        ts = self._clock.now().timestamp() if self._wall_clock_ts else self.model.time
        sample: Sample = {"ts": rfc3339_ms(ts), "signals": changes}
        samples = [sample]
        self._outbox.add(self._seq, orjson.dumps({"seq": self._seq, "samples": samples}))
        self.ledger.record_sent(self._seq, samples)
        self._flush()

    # -- the MQTT session -----------------------------------------------------------------------------------

    async def _stay_connected(self) -> None:
        while True:
            self._connected_once = False
            error: BaseException | None = None
            # Each session is a task of its own: on 3.11 a failed child of a TaskGroup leaves its parent task
            # marked as cancelling, and this task must keep that mark meaningful (see `raise_if_cancelled`).
            session = asyncio.create_task(self._session(), name=f"session {self.vin}")
            try:
                await session
            except OSError as exc:  # LinkDown, refused, unreachable, timed out
                error = exc
            raise_if_cancelled()  # disconnecting after a cancel can fail too; that must not end the cancel
            if self._connected_once:
                self._backoff.reset()
                logger.debug("car %s: lost the MQTT connection: %s", self.vin[-6:], error)
            elif self._backoff.failures == 0:
                logger.debug("car %s: cannot connect to MQTT: %s", self.vin[-6:], error)
            await self._backoff.sleep()

    async def _session(self) -> None:
        link = CarLink(self._handle, self._on_puback, keepalive_s=self._keepalive_s)
        # Messages the broker held for this session arrive right after the CONNACK and are handled as they
        # arrive, so stale acks of a previous run of this car are taken before any new seq goes out.
        await link.connect(
            self._host,
            self._port,
            client_id=self.vin,
            username=self.vin,
            password=self.identity.password,
            will=(self._status_topic, b"offline"),
        )
        try:
            granted = await link.subscribe(self._topics.subscriptions())
            if not granted_all(granted):
                raise LinkDown(f"broker refused a subscription of {self.vin[-6:]}: {granted}")
            await link.publish_confirmed(self._status_topic, b"online", retain=True)
            raise_if_cancelled()
            self._link = link
            self._connected = self._connected_once = True
            logger.debug("car %s: connected", self.vin[-6:])
            self._outbox.all_due()
            self._flush()
            await link.closed
        except asyncio.CancelledError:
            # A graceful disconnect does not fire the last will, so say it ourselves.
            self._link = None
            with contextlib.suppress(OSError):
                await link.publish_confirmed(self._status_topic, b"offline", retain=True, timeout_s=2.0)
            raise
        finally:
            self._link = None
            self._connected = False
            if self._resend is not None:
                self._resend.cancel()
                self._resend = None
            # Results the broker did not confirm go out again, first, on the next connection.
            self._results.extendleft(reversed(self._unconfirmed.values()))
            self._unconfirmed.clear()
            link.close()

    def _flush(self) -> None:
        """Publish what is due: new and unacknowledged telemetry, then command results."""
        link = self._link
        if link is None:
            return
        now = asyncio.get_running_loop().time()
        outbox = self._outbox
        for message in outbox.due(now):
            if message.attempts:
                self._counts["resent"] += 1
            link.publish(self._telemetry_wire, message.payload)
            outbox.mark_sent(message.seq, now)
        # Results after telemetry, so the platform's twin has the new state when it sees "succeeded".
        while self._results:
            payload = self._results.popleft()
            self._unconfirmed[link.publish(self._results_wire, payload)] = payload
        self._schedule_resend()

    def _schedule_resend(self) -> None:
        next_due = self._outbox.next_due_at()
        if next_due is None or (self._resend is not None and self._resend.when() <= next_due):
            return  # nothing pending (a parked car costs no wake-ups), or a timer fires early enough
        if self._resend is not None:
            self._resend.cancel()
        self._resend = asyncio.get_running_loop().call_at(next_due, self._on_resend_due)

    def _on_resend_due(self) -> None:
        self._resend = None
        self._flush()

    def _on_puback(self, packet_id: int) -> None:
        self._unconfirmed.pop(packet_id, None)

    def _handle(self, topic: str, raw: bytes) -> None:
        handlers = {self._ack_topic: self._on_ack, self._commands_topic: self._on_command}
        handle = handlers.get(topic, self._on_errors if topic == self._errors_topic else None)
        if handle is None:
            return  # a broker may hand out retained messages of other topics (amqtt does)
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            logger.warning("car %s: ignoring a message on %s that is not a JSON object", self.vin[-6:], topic)
            return
        handle(payload)

    def _on_ack(self, payload: dict[str, Any]) -> None:
        seq = payload.get("seq")
        if type(seq) is int and self._outbox.ack(seq):
            self._counts["acked"] += 1
            self.ledger.record_ack(seq)

    def _on_errors(self, payload: dict[str, Any]) -> None:
        # The message stays in the outbox: only an ack says it was stored, and resends back off.
        if self._counts["errors"] == 0:
            logger.warning("car %s: the platform rejected signals: %s", self.vin[-6:], payload.get("errors"))
        self._counts["errors"] += 1
        self.ledger.record(self.ledger.errors, payload)

    # -- commands -------------------------------------------------------------------------------------------

    def _on_command(self, payload: dict[str, Any]) -> None:
        command_id = payload.get("id")
        if not isinstance(command_id, str) or not command_id:
            logger.warning("car %s: ignoring a command without an id", self.vin[-6:])
            return
        name = payload.get("name")
        args = payload.get("args")
        if args is None:
            args = {}
        earlier = self._answered.get(command_id)
        if earlier is not None:
            self._answer(command_id, name, args, earlier, replay=True)
            return
        refusal = expiry_refusal(payload.get("expires_at"), self._clock.now())
        if refusal is not None:
            outcome = refusal
        elif not isinstance(name, str) or not name:
            outcome = CommandOutcome("rejected", "command name missing")
        elif not isinstance(args, dict):
            outcome = CommandOutcome("rejected", "args must be a JSON object")
        else:
            self._catch_up()  # the command acts on the car as it is now, not as of the last report
            outcome = self.model.apply_command(name, args)
            self._counts["commands"] += 1
            record = CommandRecord(command_id, name, args, outcome.status, outcome.detail)
            self.ledger.record(self.ledger.commands, record)
            self.report()  # the new state (e.g. locked) goes out now, not at the next interval
        self._answered[command_id] = outcome
        while len(self._answered) > _REMEMBERED_COMMANDS:
            self._answered.popitem(last=False)
        self._answer(command_id, name, args, outcome, replay=False)

    def _answer(
        self, command_id: str, name: Any, args: Any, outcome: CommandOutcome, *, replay: bool
    ) -> None:
        body = {"id": command_id, "status": outcome.status, "detail": outcome.detail}
        self._results.append(orjson.dumps(body))
        record = CommandRecord(
            command_id,
            name if isinstance(name, str) else "",
            args if isinstance(args, dict) else {},
            outcome.status,
            outcome.detail,
            replay,
        )
        self.ledger.record(self.ledger.results, record)
        self._flush()
