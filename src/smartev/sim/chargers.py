"""Simulated charging stations that speak OCPP 1.6 or 2.0.1 to a central system, one or hundreds per process.

`SimulatedStation` is one charge point: it connects to `{base_url}/{station_id}` with HTTP Basic auth, boots
(honouring Pending and Rejected), reports its connectors, sends heartbeats, and reconnects with backoff when the
connection goes. Cars are plugged in with `plug_in` (or by `ChargerFleet` on a seeded schedule); the station
authorises them, runs the transaction, meters it, and ends it when the car is full or leaves.

The station's state lives in a pure `StationModel` (`charger_model.py`); the wire in `ocpp_station.py`. This
module is the runtime between them: time, tasks, the connection and the queue of messages.

Offline: transaction events (1.6 StartTransaction, MeterValues, StopTransaction; 2.0.1 TransactionEvent) wait in
the outbox in the order they happened, and are delivered in that order once the station is back and accepted,
before anything that happens later; a message whose answer never came is sent again with the same message id,
so the central system must take a repeat as the same message. Status notifications are not queued: after each
boot the station reports every connector as it is then.

Time: simulated time runs `speed` times as fast as the wall clock (`ScaledClock`). Meter samples, charging,
reservations and car schedules follow simulated time; heartbeats, retries and timeouts follow the wall clock.
OCPP timestamps are simulated time, so at `speed > 1` they run ahead of the central system's clock.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import math
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from smartev.agent.protocol import Backoff, raise_if_cancelled
from smartev.clock import Clock
from smartev.sim.charger_model import (
    AwaitedStart,
    ChargeSession,
    ChargingProfile,
    Event,
    MeterSample,
    PluggedCar,
    ProfilePurpose,
    Reservation,
    StationModel,
    StatusChanged,
    StopReason,
    TokenType,
    Trigger,
    TxEvent,
    TxEventKind,
)
from smartev.sim.model import CAR_MODELS
from smartev.sim.ocpp_station import (
    STATION_CLASSES,
    SUBPROTOCOLS,
    CallFailed,
    NoAnswer,
    Refused,
    StationChargePoint,
    next_firmware_version,
)
from smartev.vehicles.vin import make_vin

logger = logging.getLogger(__name__)

Job = Callable[[], Coroutine[Any, Any, None]]

_CONNECTION_ERRORS = (OSError, TimeoutError, InvalidHandshake, ConnectionClosed)
_DRAIN_BEFORE_REBOOT_S = 5.0
_FIRMWARE_STEP_S = 10.0  # simulated seconds each firmware phase takes
_WATCH_EVERY_S = 1.0
_CONNECTS_PER_S = 200.0


class ScaledClock:
    """Simulated time: starts at `start` and runs `speed` times as fast as the wall clock."""

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if speed <= 0 or not math.isfinite(speed):
            raise ValueError("speed must be a positive number")
        self.speed = speed
        self._start = start or datetime.now(UTC)
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    def now_ms(self) -> int:
        return int(self.now().timestamp() * 1000)


class Outbox:
    """What waits for the central system, oldest first: transaction events (kept until answered) and statuses
    (dropped with the connection). Beyond `limit` queued transaction events the oldest periodic samples go."""

    def __init__(self, limit: int) -> None:
        self._items: deque[Event] = deque()
        self._limit = limit
        self._tx = 0
        self.dropped = 0
        self._nonempty = asyncio.Event()
        self._no_tx = asyncio.Event()
        self._no_tx.set()

    def __len__(self) -> int:
        """Transaction events waiting."""
        return self._tx

    def append(self, item: Event) -> None:
        """Queue a message behind the others."""
        self._items.append(item)
        if isinstance(item, TxEvent):
            self._tx += 1
            self._no_tx.clear()
            if self._tx > self._limit:
                self._drop_a_sample()
        self._nonempty.set()

    def head(self) -> Event:
        """The oldest message."""
        return self._items[0]

    def pop(self) -> None:
        """The oldest message is done with."""
        item = self._items.popleft()
        if isinstance(item, TxEvent):
            self._tx -= 1
            if self._tx == 0:
                self._no_tx.set()

    async def wait(self) -> None:
        """Until there is something to send."""
        while not self._items:
            self._nonempty.clear()
            await self._nonempty.wait()

    async def drained(self) -> None:
        """Until every transaction event has been answered."""
        await self._no_tx.wait()

    def drop_statuses(self) -> None:
        """Forget the statuses: the next boot reports every connector afresh."""
        self._items = deque(item for item in self._items if isinstance(item, TxEvent))

    def _drop_a_sample(self) -> None:
        # Never the head: it may be on the wire.
        for i in range(1, len(self._items)):
            item = self._items[i]
            if isinstance(item, TxEvent) and item.kind is TxEventKind.UPDATED:
                del self._items[i]
                self._tx -= 1
                self.dropped += 1
                return


@dataclass(frozen=True, slots=True)
class StationStats:
    """Counters of one station."""

    connected: bool
    online: bool  # connected and accepted
    boots: int
    pending: int  # transaction messages waiting for the central system
    sent: int  # transaction messages the central system answered
    repeated: int  # sent again because no answer came
    dropped: int  # given up after errors, or dropped from a full outbox
    sessions: int
    active: int


class SimulatedStation:
    """One simulated charging station and its OCPP connection."""

    def __init__(
        self,
        station_id: str,
        base_url: str,
        password: str,
        *,
        version: str = "1.6",
        connectors: int = 2,
        max_power_w: float = 22_000.0,
        dc: bool | None = None,
        vendor: str = "smartev",
        model: str = "SimBox",
        firmware: str = "1.0.0",
        serial_number: str | None = None,
        seed: int | str = 1,
        speed: float = 1.0,
        meter_interval_s: int = 60,
        heartbeat_fallback_s: float = 300.0,
        boot_retry_s: float = 30.0,
        response_timeout_s: float = 30.0,
        reconnect_first_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        reboot_s: float = 2.0,
        open_timeout_s: float = 10.0,
        ping_interval_s: float | None = 20.0,
        validate_messages: bool = False,
        boot_on_reconnect: bool = True,
        offline_limit: int = 10_000,
        register_wh: float | None = None,
        clock: Clock | None = None,
        accepts_profiles: bool = True,
    ) -> None:
        """Create the station; nothing connects until `run`.

        Args:
            station_id: its identity at the central system, the last part of its URL and its Basic-auth user.
            base_url: the central system's endpoint without the station id, e.g. `ws://host:9000/ocpp`.
            password: its Basic-auth password (16 to 40 characters).
            version: "1.6" or "2.0.1".
            connectors: connectors (2.0.1: EVSEs with one connector each).
            max_power_w: what each connector can deliver, e.g. 11 kW AC at home, 22 kW AC, 150 kW DC.
            dc: a DC fast charger; by default when max_power_w is above 43 kW.
            seed: decides the meter registers and the station's randomness.
            speed: simulated seconds per real second.
            meter_interval_s: simulated seconds between meter samples (MeterValueSampleInterval).
            heartbeat_fallback_s: heartbeat interval when the central system gives none.
            boot_retry_s: wait before booting again after Pending or Rejected without an interval.
            response_timeout_s: real seconds to wait for an answer before sending again.
            reconnect_first_s, reconnect_max_s: the reconnect backoff (doubling with jitter).
            reboot_s: real seconds a reset or a firmware installation keeps the station off the air.
            validate_messages: validate our own requests and their answers against the OCPP schemas.
            boot_on_reconnect: send BootNotification on every new connection; False boots only after a
                (re)start and, on a reconnect, goes straight to statuses and the queued messages.
            offline_limit: transaction messages kept while offline before the oldest samples are dropped.
            register_wh: each connector's energy register at the start; seeded when not given.
            clock: simulated time; a `ScaledClock(speed)` when not given (share one across a fleet).
            accepts_profiles: False makes it refuse every SetChargingProfile (a station smart charging
                cannot steer).
        """
        if version not in STATION_CLASSES:
            raise ValueError(f"version must be one of {', '.join(STATION_CLASSES)}")
        if not 16 <= len(password) <= 40:
            raise ValueError("the password must have 16 to 40 characters")
        if speed <= 0 or not math.isfinite(speed):
            raise ValueError("speed must be a positive number")
        if meter_interval_s <= 0:
            raise ValueError("meter_interval_s must be positive")
        self.station_id = station_id
        self.accepts_profiles = accepts_profiles
        self.version = version
        self.vendor = vendor
        self.model_name = model
        self.firmware_version = firmware
        self.serial_number = (
            serial_number or f"SIM-{random.Random(f'{seed}:{station_id}').randrange(10**8):08d}"
        )
        self.speed = speed
        self.clock: Clock = clock or ScaledClock(speed)
        self.heartbeat_fallback_s = heartbeat_fallback_s
        self.boot_retry_s = boot_retry_s
        self.response_timeout_s = response_timeout_s
        self.reboot_s = reboot_s
        self.open_timeout_s = open_timeout_s
        self.ping_interval_s = ping_interval_s
        self.validate_messages = validate_messages
        self.boot_on_reconnect = boot_on_reconnect
        self.model = StationModel(
            station_id,
            connectors=connectors,
            max_power_w=max_power_w,
            dc=max_power_w > 43_000 if dc is None else dc,
            now=self.clock.now(),
            seed=seed,
            register_wh=register_wh,
        )
        self.model.config["MeterValueSampleInterval"] = str(int(meter_interval_s))
        self.boot_status = ""  # the answer to the last BootNotification
        self.boots = 0  # accepted BootNotifications
        self._accepted = False  # booted and accepted since the station (re)started
        self._url = f"{base_url.rstrip('/')}/{quote(station_id, safe='')}"
        self._auth = "Basic " + base64.b64encode(f"{station_id}:{password}".encode()).decode()
        self._subprotocol = Subprotocol(SUBPROTOCOLS[version])
        self._backoff = Backoff(
            reconnect_first_s, reconnect_max_s, random.Random(f"{seed}:{station_id}:backoff")
        )
        self._outbox = Outbox(offline_limit)
        self._cp: StationChargePoint | None = None
        self._closed: asyncio.Future[None] | None = None
        self._online = False
        self._boot_reason = "PowerUp"
        self._rebooting = False
        self._reset_when_idle: StopReason | None = None
        self._heartbeat_s = heartbeat_fallback_s
        self._heartbeat_changed = asyncio.Event()
        self._meter_changed = asyncio.Event()
        self._boot_again = asyncio.Event()
        self._idle = asyncio.Event()  # set while no transaction runs
        self._idle.set()
        self._firmware_status = "Idle"
        self._firmware_request: int | None = None
        self._diagnostics_status = "Idle"
        self._tg: asyncio.TaskGroup | None = None
        self._counts = {"sent": 0, "repeated": 0, "dropped": 0}
        self._refused_credentials = False

    # -- what tests and the fleet read ----------------------------------------------------------------------

    @property
    def ledger(self) -> dict[str, ChargeSession]:
        """Every transaction the station ran, by its session key, with what it metered."""
        return self.model.sessions

    @property
    def ledger_total_wh(self) -> int:
        """Energy metered over all transactions, Wh."""
        return sum(s.energy_wh for s in self.model.sessions.values())

    @property
    def connected(self) -> bool:
        """True while the websocket is open."""
        return self._cp is not None

    @property
    def online(self) -> bool:
        """True while connected and accepted by the central system."""
        return self._online

    @property
    def pending(self) -> int:
        """Transaction messages waiting for the central system."""
        return len(self._outbox)

    def now(self) -> datetime:
        """Simulated time."""
        return self.clock.now()

    def stats(self) -> StationStats:
        """Counters of this station."""
        sessions = self.model.sessions.values()
        return StationStats(
            connected=self.connected,
            online=self._online,
            boots=self.boots,
            pending=len(self._outbox),
            sent=self._counts["sent"],
            repeated=self._counts["repeated"],
            dropped=self._counts["dropped"] + self._outbox.dropped,
            sessions=len(self.model.sessions),
            active=sum(1 for s in sessions if s.active),
        )

    async def delivered(self) -> None:
        """Wait until the central system has answered every transaction message so far."""
        await self._outbox.drained()

    # -- running ----------------------------------------------------------------------------------------------

    async def run(self, *, start_delay_s: float = 0.0) -> None:
        """Meter, connect and stay connected until cancelled."""
        if start_delay_s > 0:
            await asyncio.sleep(start_delay_s)
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self._meter(), name=f"meter {self.station_id}")
            tg.create_task(self._stay_connected(), name=f"ocpp {self.station_id}")

    def later(self, job: Job) -> None:
        """Run `job` alongside the station; its failure is logged, not fatal."""
        if self._tg is None:
            raise RuntimeError("the station is not running")
        self._tg.create_task(self._guarded(job), name=f"job {self.station_id}")

    async def _guarded(self, job: Job) -> None:
        try:
            await job()
        except Exception:
            logger.exception("station %s: a background job failed", self.station_id)

    async def _meter(self) -> None:
        """Move the model on, sample the meters and let the samples out, every meter interval."""
        while True:
            sample_s = self.model.setting_int("MeterValueSampleInterval")
            try:
                await asyncio.wait_for(self._meter_changed.wait(), (sample_s or 60) / self.speed)
                self._meter_changed.clear()
            except TimeoutError:
                pass
            raise_if_cancelled()
            now = self.now()
            self.model.tick(now)
            if sample_s > 0:
                self.model.report(now)
            self._flush()

    async def _stay_connected(self) -> None:
        while True:
            error: BaseException | None = None
            try:
                await self._connect_once()
            except* _CONNECTION_ERRORS as group:
                error = group.exceptions[0]
            finally:
                was_online = self.boots > 0 and self._online
                self._cp = None
                self._online = False
                self._outbox.drop_statuses()
                if self._closed is not None and not self._closed.done():
                    self._closed.set_result(None)
            if self._rebooting:
                self._rebooting = False
                await asyncio.sleep(self.reboot_s)
                continue
            self._log_failure(error, was_online)
            await self._backoff.sleep()

    def _log_failure(self, error: BaseException | None, was_online: bool) -> None:
        if isinstance(error, InvalidStatus) and error.response.status_code in (401, 403):
            if not self._refused_credentials:
                logger.warning("station %s: the central system refused its credentials", self.station_id)
            self._refused_credentials = True
            return
        # Per station at debug, like the simulated cars: a fleet logs the outage once (ChargerFleet._watch).
        if was_online:
            logger.debug("station %s: lost the central system: %s", self.station_id, error)
        elif self._backoff.failures == 0:
            logger.debug("station %s: cannot reach the central system: %s", self.station_id, error)

    async def _connect_once(self) -> None:
        async with connect(
            self._url,
            subprotocols=[self._subprotocol],
            additional_headers={"Authorization": self._auth},
            open_timeout=self.open_timeout_s,
            ping_interval=self.ping_interval_s,
            ping_timeout=self.ping_interval_s,
            compression=None,  # most stations do not deflate, and a fleet would pay its memory per connection
        ) as websocket:
            if websocket.subprotocol != self._subprotocol:
                logger.warning(
                    "station %s: the central system did not agree to %s", self.station_id, self._subprotocol
                )
                await websocket.close(1002, "subprotocol required")
                return
            cp = STATION_CLASSES[self.version](
                self, websocket, response_timeout_s=self.response_timeout_s, validate=self.validate_messages
            )
            self._closed = asyncio.get_running_loop().create_future()
            self._cp = cp
            self._refused_credentials = False
            async with asyncio.TaskGroup() as tg:
                tg.create_task(cp.start(), name=f"receive {self.station_id}")
                tg.create_task(self._session(cp, tg), name=f"boot {self.station_id}")

    async def _session(self, cp: StationChargePoint, tg: asyncio.TaskGroup) -> None:
        if self.boot_on_reconnect or not self._accepted:
            await self._boot(cp)
            self.boots += 1
            self._accepted = True
        self._online = True
        if self._backoff.failures:
            logger.debug("station %s: connected again", self.station_id)
        self._backoff.reset()
        self._flush()  # statuses that changed before the boot were dropped: these replace them
        for status in cp.boot_statuses():
            self._outbox.append(status)
        tg.create_task(self._deliver(cp), name=f"deliver {self.station_id}")
        tg.create_task(self._heartbeats(cp), name=f"heartbeat {self.station_id}")

    async def _boot(self, cp: StationChargePoint) -> None:
        """BootNotification until accepted, waiting the interval the central system asks for in between."""
        while True:
            try:
                result = await cp.request(cp.boot_request(self._boot_reason))
            except CallFailed as exc:
                logger.debug("station %s: boot failed: %s", self.station_id, exc)
                await asyncio.sleep(self.boot_retry_s)
                continue
            status, interval = cp.boot_answer(result)
            self.boot_status = status
            if status == "Accepted":
                self._heartbeat_s = interval if interval > 0 else self.heartbeat_fallback_s
                self.model.config["HeartbeatInterval"] = str(int(self._heartbeat_s))
                self._boot_reason = "PowerUp"
                return
            if status == "Rejected":
                logger.warning("station %s: the central system rejected its boot", self.station_id)
            self._boot_again.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._boot_again.wait(), interval if interval > 0 else self.boot_retry_s
                )
            raise_if_cancelled()

    async def _heartbeats(self, cp: StationChargePoint) -> None:
        while True:
            try:
                await asyncio.wait_for(self._heartbeat_changed.wait(), self._heartbeat_s)
                self._heartbeat_changed.clear()
                continue
            except TimeoutError:
                pass
            raise_if_cancelled()
            with contextlib.suppress(CallFailed):
                await cp.request(cp.heartbeat_request())

    async def _deliver(self, cp: StationChargePoint) -> None:
        """Send the outbox in order; a transaction event leaves it only once answered (or given up)."""
        outbox = self._outbox
        while True:
            await outbox.wait()
            item = outbox.head()
            if isinstance(item, StatusChanged):
                for request in cp.status_change_requests(item):
                    with contextlib.suppress(CallFailed):
                        await cp.request(request)
                outbox.pop()
                continue
            request = cp.tx_request(item)
            if request is None:
                outbox.pop()
                continue
            if item.message_id is None:
                item.message_id = str(uuid.uuid4())
            try:
                result = await cp.request(request, item.message_id)
            except NoAnswer:
                self._counts["repeated"] += 1
                continue
            except Refused as exc:
                item.attempts += 1
                if item.attempts >= max(self.model.setting_int("TransactionMessageAttempts"), 1):
                    logger.warning("station %s: giving up on a transaction message: %s", self.station_id, exc)
                    self._counts["dropped"] += 1
                    outbox.pop()
                    continue
                await asyncio.sleep(self.model.setting_int("TransactionMessageRetryInterval") * item.attempts)
                continue
            outbox.pop()
            self._counts["sent"] += 1
            if cp.tx_answer(item, result) is False:
                self._deauthorize(item.session)

    def _deauthorize(self, session: ChargeSession) -> None:
        """The central system refused the id tag of a running transaction."""
        self.model.remember_authorization(session.id_tag, False)
        if not session.active:
            return
        if self.model.setting_bool("StopTransactionOnInvalidId"):
            self.model.stop(session.connector, StopReason.DEAUTHORIZED, self.now(), Trigger.DEAUTHORIZED)
        else:
            session.authorized = False
            self.model.tick(self.now())
        self._flush()

    def _flush(self) -> None:
        """Move the model's events to the outbox (statuses only while online: a boot reports them afresh)."""
        events = self.model.events
        while events:
            event = events.popleft()
            if isinstance(event, TxEvent):
                event.offline = not self._online
                self._outbox.append(event)
            elif self._online:
                self._outbox.append(event)
        if any(c.session for c in self.model.connectors.values()):
            self._idle.clear()
            return
        self._idle.set()
        if self._reset_when_idle is not None:
            reason, self._reset_when_idle = self._reset_when_idle, None
            self.later(lambda: self._reboot(reason, "RemoteReset"))

    async def _ask(self, build: Callable[[StationChargePoint], Any]) -> Any | None:
        """Send one request now if online and return its answer; None when offline or without an answer."""
        cp, closed = self._cp, self._closed
        if cp is None or closed is None or not self._online:
            return None
        task = asyncio.ensure_future(cp.request(build(cp)))
        try:
            await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
        if not task.done() or task.cancelled():
            return None
        if task.exception() is not None:
            logger.debug("station %s: no answer: %s", self.station_id, task.exception())
            return None
        return task.result()

    # -- cars -----------------------------------------------------------------------------------------------

    async def plug_in(
        self,
        connector: int,
        id_tag: str | None = None,
        *,
        vin: str | None = None,
        soc: float = 20.0,
        capacity_kwh: float = 60.0,
        target_soc: float = 100.0,
        max_ac_w: float = 11_000.0,
        max_dc_w: float = 150_000.0,
        leave_when_full: bool = True,
    ) -> ChargeSession | None:
        """Plug a car in and, with an id tag (the VIN for autocharge), authorise it and start charging.

        Returns the transaction, or None when none started: no id tag (the car waits for a remote start or
        `present_tag`), or the id tag was refused. Raises ValueError when the connector is taken.
        """
        car = PluggedCar(
            soc=soc,
            capacity_kwh=capacity_kwh,
            target_soc=target_soc,
            vin=vin,
            max_ac_w=max_ac_w,
            max_dc_w=max_dc_w,
            leave_when_full=leave_when_full,
        )
        self.model.plug(connector, car, self.now())
        self._flush()
        awaited = self.model.connector(connector).awaiting
        if awaited is not None:
            if awaited.authorized:
                return self._start(
                    connector, awaited.id_tag, awaited.token_type, Trigger.REMOTE_START, awaited
                )
            return None  # the remote start is still being authorised and will find the car
        if id_tag is None:
            return None
        return await self._authorize_and_start(connector, id_tag, car)

    async def present_tag(self, connector: int, id_tag: str) -> ChargeSession | None:
        """A driver holds a card to the reader: stops their own transaction, or starts one for the car there."""
        conn = self.model.connector(connector)
        if conn.session is not None:
            if conn.session.id_tag.lower() != id_tag.lower():
                return None
            session = self.model.stop(connector, StopReason.LOCAL, self.now(), Trigger.STOP_AUTHORIZED)
            self._flush()
            return session
        if conn.car is None:
            return None
        return await self._authorize_and_start(connector, id_tag, conn.car)

    def unplug(self, connector: int) -> ChargeSession | None:
        """The car leaves; ends its transaction (EVDisconnected) if one runs, and returns that transaction."""
        session = self.model.unplug(connector, self.now())
        self._flush()
        return session

    async def _authorize_and_start(
        self, connector: int, id_tag: str, car: PluggedCar
    ) -> ChargeSession | None:
        if not self.model.may_start(connector, id_tag):
            return None
        token_type = TokenType.VIN if car.vin is not None and id_tag == car.vin else TokenType.RFID
        if not await self._authorize(id_tag, token_type):
            return None
        conn = self.model.connector(connector)
        if conn.car is not car or conn.session is not None:
            return None  # the car left, or something else started, while we asked
        return self._start(connector, id_tag, token_type, Trigger.AUTHORIZED, None)

    def _start(
        self,
        connector: int,
        id_tag: str,
        token_type: TokenType,
        trigger: Trigger,
        awaited: AwaitedStart | None,
    ) -> ChargeSession:
        session = self.model.start(
            connector,
            id_tag,
            self.now(),
            token_type=token_type,
            offline=not self._online,
            transaction_id=str(uuid.uuid4()) if self.version == "2.0.1" else None,
            remote_start_id=awaited.remote_start_id if awaited is not None else None,
            trigger=trigger,
        )
        self._flush()
        return session

    async def _authorize(self, id_tag: str, token_type: TokenType) -> bool:
        """Ask the central system about an id tag; decide locally when it cannot be asked."""
        model = self.model
        if model.setting_bool("LocalPreAuthorize") and (
            model.local_list.get(id_tag) == "Accepted" or model.auth_cache.get(id_tag) is True
        ):
            return True
        result = await self._ask(lambda cp: cp.authorize_request(id_tag, token_type))
        if result is None:
            return model.authorize_offline(id_tag)
        cp = self._cp
        accepted = cp.authorize_answer(result) if cp is not None else False
        model.remember_authorization(id_tag, accepted)
        return accepted

    # -- what the central system asks (called by the handlers, which answer before the events go out) -----

    def after_answer(self, jobs: list[Job]) -> None:
        """An answer went out: let the events it caused follow, and start its follow-ups."""
        self._flush()
        for job in jobs:
            self.later(job)

    def remote_start(
        self,
        id_tag: str,
        token_type: TokenType,
        connector: int | None,
        remote_start_id: int | None,
        profile: ChargingProfile | None,
    ) -> bool:
        """Hold a connector for a remote start; False when none is free."""
        now = self.now()
        self.model.tick(now)
        chosen = self.model.free_connector(connector)
        if chosen is None:
            return False
        authorize = self.model.setting_bool("AuthorizeRemoteTxRequests")
        deadline = now + timedelta(seconds=self.model.setting_int("ConnectionTimeOut"))
        awaited = AwaitedStart(
            id_tag, token_type, deadline, remote_start_id, profile, authorized=not authorize
        )
        self.model.await_start(chosen, awaited)
        self.later(lambda: self._remote_start(chosen, awaited))
        return True

    async def _remote_start(self, connector: int, awaited: AwaitedStart) -> None:
        if not awaited.authorized:
            if not await self._authorize(awaited.id_tag, awaited.token_type):
                if self.model.connector(connector).awaiting is awaited:
                    self.model.cancel_awaited(connector)
                    self._flush()
                return
            held = self.model.connector(connector).awaiting
            if held is not awaited:
                return
            awaited = AwaitedStart(
                awaited.id_tag,
                awaited.token_type,
                awaited.deadline,
                awaited.remote_start_id,
                awaited.profile,
                authorized=True,
            )
            self.model.await_start(connector, awaited)
        conn = self.model.connector(connector)
        if conn.awaiting is awaited and conn.car is not None and conn.session is None:
            self._start(connector, awaited.id_tag, awaited.token_type, Trigger.REMOTE_START, awaited)

    def remote_stop(self, transaction_id: int | str) -> bool:
        """Stop a running transaction by its id; False when none runs with it."""
        session = self.model.session_by_transaction(transaction_id)
        if session is None:
            return False
        self.model.stop(session.connector, StopReason.REMOTE, self.now(), Trigger.REMOTE_STOP)
        return True

    def change_availability(self, connector: int, operative: bool) -> str:
        """Take connectors (0: all) in or out of service."""
        self.model.tick(self.now())
        return self.model.change_availability(connector, operative)

    def change_setting(self, key: str, value: str) -> str:
        """Change a configuration value; intervals take effect at once."""
        status = self.model.change_setting(key, value)
        if status == "Accepted" and key == "HeartbeatInterval":
            self._heartbeat_s = max(int(value), 1) if int(value) > 0 else self.heartbeat_fallback_s
            self._heartbeat_changed.set()
        elif status == "Accepted" and key == "MeterValueSampleInterval":
            self._meter_changed.set()
        return status

    def reset(self, reason: StopReason, *, on_idle: bool) -> str:
        """Reboot: "Accepted" (now, ending transactions) or "Scheduled" (once no transaction runs)."""
        if on_idle and any(c.session for c in self.model.connectors.values()):
            self._reset_when_idle = reason
            return "Scheduled"
        self.later(lambda: self._reboot(reason, "RemoteReset"))
        return "Accepted"

    async def _reboot(self, reason: StopReason, boot_reason: str) -> None:
        """End the transactions, let their last messages out, and go off the air for `reboot_s`."""
        now = self.now()
        for conn in self.model.connectors.values():
            if conn.session is not None:
                self.model.stop(conn.id, reason, now, Trigger.RESET)
        self._flush()
        if self._online:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.drained(), _DRAIN_BEFORE_REBOOT_S)
            raise_if_cancelled()
        self._boot_reason = boot_reason
        self._rebooting = True
        self._accepted = False
        cp = self._cp
        if cp is not None:
            await cp.websocket.close()

    def unlock(self, connector: int, *, stop: bool) -> None:
        """Release the cable: ends a running transaction when `stop`, and the car leaves."""
        now = self.now()
        if stop and self.model.connector(connector).session is not None:
            self.model.stop(connector, StopReason.UNLOCK_COMMAND, now, Trigger.UNLOCK)
        self.model.unplug(connector, now)

    def set_profile(self, profile: ChargingProfile) -> bool:
        """Install a charging profile; power follows it from now on."""
        self.model.tick(self.now())
        return self.model.set_profile(profile)

    def clear_profiles(
        self,
        *,
        profile_id: int | None,
        connector: int | None,
        purpose: ProfilePurpose | None,
        stack_level: int | None,
    ) -> bool:
        """Remove charging profiles; False when none matched."""
        self.model.tick(self.now())
        return self.model.clear_profiles(
            profile_id=profile_id, connector=connector, purpose=purpose, stack_level=stack_level
        )

    def reserve(self, reservation: Reservation) -> str:
        """Hold a connector for an id tag."""
        return self.model.reserve(reservation, self.now())

    def update_firmware(self, location: str, retrieve_at: datetime | None, request_id: int | None) -> None:
        """Download, install (once idle) and boot into the firmware at `location`."""
        self.later(lambda: self._install_firmware(location, retrieve_at, request_id))

    async def _install_firmware(
        self, location: str, retrieve_at: datetime | None, request_id: int | None
    ) -> None:
        self._firmware_request = request_id
        step = _FIRMWARE_STEP_S / self.speed
        if retrieve_at is not None:
            wait = (retrieve_at - self.now()).total_seconds() / self.speed
            if wait > 0:
                await asyncio.sleep(wait)
        await self._firmware(request_id, "Downloading")
        await asyncio.sleep(step)
        await self._firmware(request_id, "Downloaded")
        self._flush()
        await self._idle.wait()  # installs only once no car is charging
        await self._firmware(request_id, "Installing")
        await asyncio.sleep(step)
        self.firmware_version = next_firmware_version(location, self.firmware_version)
        await self._firmware(request_id, "Installed")
        self._firmware_status = "Idle"
        await self._reboot(StopReason.REBOOT, "FirmwareUpdate")

    async def _firmware(self, request_id: int | None, status: str) -> None:
        self._firmware_status = status
        await self._ask(lambda cp: cp.firmware_status_request(status, request_id))

    def upload_diagnostics(self, location: str) -> str:
        """Start uploading diagnostics to `location`; returns the file name."""
        name = f"diagnostics-{self.station_id}-{self.now():%Y%m%dT%H%M%S}.zip"

        async def upload() -> None:
            for status in ("Uploading", "Uploaded"):
                self._diagnostics_status = status

                def request(cp: StationChargePoint, status: str = status) -> Any:
                    return cp.diagnostics_status_request(status)

                await self._ask(request)
                await asyncio.sleep(_FIRMWARE_STEP_S / self.speed)
            self._diagnostics_status = "Idle"

        self.later(upload)
        return name

    # -- messages sent on request (TriggerMessage, GetBaseReport) -------------------------------------------

    async def send_boot(self) -> None:
        """A BootNotification on request: boots at once while Pending, else reports and takes the new interval."""
        if self.boot_status != "Accepted":
            self._boot_again.set()
            return
        result = await self._ask(lambda cp: cp.boot_request("Triggered"))
        cp = self._cp
        if result is not None and cp is not None:
            status, interval = cp.boot_answer(result)
            if status == "Accepted" and interval > 0:
                self._heartbeat_s = interval
                self._heartbeat_changed.set()

    async def send_heartbeat(self) -> None:
        """A Heartbeat on request."""
        await self._ask(lambda cp: cp.heartbeat_request())

    async def send_statuses(self, connector: int | None) -> None:
        """StatusNotifications of one or every connector."""
        now = self.now()
        self.model.tick(now)
        for conn in self.model.connectors.values():
            if connector is None or conn.id == connector:
                changed = StatusChanged(conn.id, conn.status, now)
                await self.send_all(self._cp.status_requests(changed) if self._cp is not None else [])

    async def send_meter_values(self, connector: int | None) -> None:
        """MeterValues of one or every connector."""
        for conn in list(self.model.connectors.values()):
            if connector is None or conn.id == connector:
                sample = self.model.sample(conn.id, self.now())

                def request(cp: StationChargePoint, c: int = conn.id, s: MeterSample = sample) -> Any:
                    return cp.meter_values_request(c, s)

                await self._ask(request)

    async def send_firmware_status(self) -> None:
        """The current firmware status."""
        status, request = self._firmware_status, self._firmware_request
        await self._ask(lambda cp: cp.firmware_status_request(status, request if status != "Idle" else None))

    async def send_diagnostics_status(self) -> None:
        """The current diagnostics upload status."""
        status = self._diagnostics_status
        await self._ask(lambda cp: cp.diagnostics_status_request(status))

    async def send_transaction_update(self, connector: int | None) -> None:
        """A TransactionEvent Updated (Trigger) for the running transaction(s), through the outbox."""
        now = self.now()
        self.model.tick(now)
        for conn in self.model.connectors.values():
            if conn.session is not None and connector in (None, conn.id):
                self.model.report_one(conn.id, now, Trigger.TRIGGER)
        self._flush()

    async def send_all(self, requests: Iterable[Any]) -> None:
        """Send ready-made requests one after another."""
        for ready in requests:

            def request(cp: StationChargePoint, r: Any = ready) -> Any:
                return r

            await self._ask(request)


# -- many stations ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StationIdentity:
    """Who a simulated station is at the central system, and what it is."""

    station_id: str
    password: str = field(repr=False)
    version: str = "1.6"
    connectors: int = 2
    max_power_w: float = 22_000.0


@dataclass(frozen=True, slots=True)
class FleetStats:
    """Counters summed over a fleet of stations."""

    stations: int
    online: int
    sessions: int
    active: int
    pending: int
    sent: int
    repeated: int
    dropped: int
    energy_wh: int


class ChargerFleet:
    """Many stations in one process, with cars arriving at their connectors on a seeded schedule."""

    def __init__(
        self,
        stations: Iterable[SimulatedStation],
        *,
        seed: int | str = 1,
        cars: bool = True,
        mean_arrival_gap_s: float = 4 * 3600.0,
        mean_dwell_s: float = 3 * 3600.0,
        autocharge_share: float = 0.2,
        connects_per_s: float = _CONNECTS_PER_S,
    ) -> None:
        """Gather the stations; nothing runs until `run`.

        Args:
            seed: decides every car: when it comes, what it is, how full, with which id tag, how long it stays.
            cars: plug cars in on the schedule; False leaves that to the caller.
            mean_arrival_gap_s: simulated seconds between a car leaving a connector and the next arriving.
            mean_dwell_s: how long a car stays plugged in (log-normal around it), full or not.
            autocharge_share: the share of cars that identify by their VIN rather than a card.
            connects_per_s: how fast the stations come up, so a big fleet does not hit the server at once.
        """
        self.stations: list[SimulatedStation] = list(stations)
        ids = [s.station_id for s in self.stations]
        if len(set(ids)) != len(ids):
            raise ValueError("station ids must be unique in a fleet")
        self.seed = seed
        self.cars = cars
        self.mean_arrival_gap_s = mean_arrival_gap_s
        self.mean_dwell_s = mean_dwell_s
        self.autocharge_share = autocharge_share
        self.connects_per_s = connects_per_s
        self.arrivals = 0
        self.refused = 0  # cars whose id tag was refused
        self._arriving = True

    @classmethod
    def create(
        cls,
        identities: Iterable[StationIdentity],
        base_url: str,
        *,
        seed: int | str = 1,
        speed: float = 1.0,
        cars: bool = True,
        mean_arrival_gap_s: float = 4 * 3600.0,
        mean_dwell_s: float = 3 * 3600.0,
        autocharge_share: float = 0.2,
        connects_per_s: float = _CONNECTS_PER_S,
        **station_options: Any,
    ) -> ChargerFleet:
        """Stations for these identities against one central system, on one shared simulated clock.

        `station_options` go to every `SimulatedStation` (e.g. meter_interval_s, reconnect_first_s).
        """
        clock = ScaledClock(speed)
        stations = [
            SimulatedStation(
                identity.station_id,
                base_url,
                identity.password,
                version=identity.version,
                connectors=identity.connectors,
                max_power_w=identity.max_power_w,
                seed=seed,
                speed=speed,
                clock=clock,
                **station_options,
            )
            for identity in identities
        ]
        return cls(
            stations,
            seed=seed,
            cars=cars,
            mean_arrival_gap_s=mean_arrival_gap_s,
            mean_dwell_s=mean_dwell_s,
            autocharge_share=autocharge_share,
            connects_per_s=connects_per_s,
        )

    def __len__(self) -> int:
        return len(self.stations)

    def stop_arrivals(self) -> None:
        """No more cars come; those plugged in stay until their dwell time ends (or `unplug`)."""
        self._arriving = False

    @property
    def ledger_total_wh(self) -> int:
        """Energy metered by every station, Wh."""
        return sum(s.ledger_total_wh for s in self.stations)

    def stats(self) -> FleetStats:
        """Counters summed over the fleet."""
        per = [s.stats() for s in self.stations]
        return FleetStats(
            stations=len(per),
            online=sum(s.online for s in per),
            sessions=sum(s.sessions for s in per),
            active=sum(s.active for s in per),
            pending=sum(s.pending for s in per),
            sent=sum(s.sent for s in per),
            repeated=sum(s.repeated for s in per),
            dropped=sum(s.dropped for s in per),
            energy_wh=self.ledger_total_wh,
        )

    async def run(self) -> None:
        """Run every station (and its cars) until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for i, station in enumerate(self.stations):
                delay = i / self.connects_per_s
                tg.create_task(station.run(start_delay_s=delay), name=f"station {station.station_id}")
                if self.cars:
                    for connector in station.model.connectors:
                        tg.create_task(
                            self._cars(station, connector, delay), name=f"cars {station.station_id}"
                        )
            tg.create_task(self._watch(), name="charger fleet watch")

    async def _cars(self, station: SimulatedStation, connector: int, delay_s: float) -> None:
        """Cars come to one connector, charge, and leave after their dwell time (full or not)."""
        rng = random.Random(f"{self.seed}:{station.station_id}:{connector}:cars")
        specs = list(CAR_MODELS.values())
        await asyncio.sleep(delay_s)
        while True:
            await asyncio.sleep(rng.expovariate(1.0 / self.mean_arrival_gap_s) / station.speed)
            if not self._arriving:
                return
            spec = rng.choice(specs)
            vin = make_vin(rng)
            id_tag = vin if rng.random() < self.autocharge_share else f"{rng.getrandbits(56):014X}"
            soc = rng.uniform(8.0, 60.0)
            target = rng.choice((80.0, 80.0, 90.0, 100.0))
            dwell_s = rng.lognormvariate(math.log(self.mean_dwell_s), 0.6)
            conn = station.model.connector(connector)
            if conn.car is not None or conn.session is not None or not conn.operative:
                continue
            self.arrivals += 1
            try:
                session = await station.plug_in(
                    connector,
                    id_tag,
                    vin=vin,
                    soc=soc,
                    capacity_kwh=spec.net_capacity_kwh,
                    target_soc=target,
                    max_ac_w=spec.ac_charge_kw * 1000,
                    max_dc_w=spec.dc_charge_kw * 1000,
                    leave_when_full=False,
                )
            except ValueError:  # taken meanwhile (a remote start's car)
                continue
            if session is None:
                self.refused += 1
                dwell_s = min(dwell_s, 120.0)  # a refused driver does not wait long
            car = station.model.connector(connector).car
            await asyncio.sleep(dwell_s / station.speed)
            if station.model.connector(connector).car is car and car is not None:
                station.unplug(connector)

    async def _watch(self) -> None:
        """Log when stations lose the central system and when all are back, not per station and retry."""
        total = len(self.stations)
        all_online = False
        while True:
            await asyncio.sleep(_WATCH_EVERY_S)
            online = sum(s.online for s in self.stations)
            if online == total and not all_online:
                all_online = True
                logger.info("all %d simulated stations are online", total)
            elif online < total and all_online:
                all_online = False
                logger.warning("%d of %d simulated stations lost the central system", total - online, total)


def main(argv: list[str] | None = None) -> None:
    """Run simulated stations against a central system until interrupted (`python -m smartev.sim.chargers`)."""
    parser = argparse.ArgumentParser(
        prog="python -m smartev.sim.chargers",
        description="Simulated OCPP charging stations, with cars arriving on a seeded schedule.",
    )
    parser.add_argument("url", help="the OCPP endpoint without the station id, e.g. ws://localhost:9000/ocpp")
    parser.add_argument("--stations", type=int, default=10)
    parser.add_argument("--prefix", default="SIM", help="station ids are PREFIX0001, PREFIX0002, ...")
    parser.add_argument("--version", choices=["1.6", "2.0.1", "mixed"], default="mixed")
    parser.add_argument("--connectors", type=int, default=2)
    parser.add_argument(
        "--dc-share", type=float, default=0.2, help="share of 150 kW DC stations (others 22 kW AC)"
    )
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--meter-interval", type=int, default=60, help="simulated seconds between samples")
    parser.add_argument("--arrival-gap", type=float, default=4 * 3600.0, help="mean simulated s between cars")
    parser.add_argument("--dwell", type=float, default=3 * 3600.0, help="mean simulated s a car stays")
    parser.add_argument("--seed", default="1")
    args = parser.parse_args(argv)
    password = os.environ.get("SMARTEV_SIM_STATION_PASSWORD", "")
    if not 16 <= len(password) <= 40:
        parser.error("set SMARTEV_SIM_STATION_PASSWORD to the stations' password (16 to 40 characters)")
    rng = random.Random(f"{args.seed}:fleet")
    versions = ["1.6", "2.0.1"] if args.version == "mixed" else [args.version]
    identities = [
        StationIdentity(
            f"{args.prefix}{n:04d}",
            password,
            version=versions[n % len(versions)],
            connectors=args.connectors,
            max_power_w=150_000.0 if rng.random() < args.dc_share else 22_000.0,
        )
        for n in range(1, args.stations + 1)
    ]
    fleet = ChargerFleet.create(
        identities,
        args.url,
        seed=args.seed,
        speed=args.speed,
        mean_arrival_gap_s=args.arrival_gap,
        mean_dwell_s=args.dwell,
        meter_interval_s=args.meter_interval,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(fleet.run())
            while True:
                await asyncio.sleep(30)
                logger.info("%s", fleet.stats())

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()


__all__ = [
    "ChargeSession",
    "ChargerFleet",
    "FleetStats",
    "ScaledClock",
    "SimulatedStation",
    "StationIdentity",
    "StationStats",
    "TxEventKind",
]
