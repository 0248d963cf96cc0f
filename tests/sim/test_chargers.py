"""Simulated charging stations against a small OCPP central system over real websockets.

The central system here is test-only: the `ocpp` library's central-system charge points for 1.6 and 2.0.1 on a
`websockets` server that checks Basic auth, records every request it receives (with its message id, so repeats
show), keeps transactions idempotently, and can be told to leave requests unanswered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint as CentralChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as CentralChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from smartev.sim.charger_model import (
    ChargingProfile,
    PluggedCar,
    ProfilePurpose,
    SchedulePeriod,
    StationModel,
    StopReason,
    TokenType,
)
from smartev.sim.chargers import ChargerFleet, SimulatedStation, StationIdentity

from brokers import eventually, free_port

PASSWORD = "station-password-0123"
VERSIONS = ["1.6", "2.0.1"]
TX_ACTIONS = {"StartTransaction", "StopTransaction", "MeterValues", "TransactionEvent"}


def now_ts() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Received:
    station: str
    action: str
    payload: dict[str, Any]
    message_id: str
    answered: bool = True


@dataclass
class Transaction:
    """What the central system knows of one transaction."""

    station: str
    id: str
    id_tag: str | None = None
    meter_start: int | None = None
    meter_stop: int | None = None
    stop_reason: str | None = None
    events: list[dict[str, Any]] = field(
        default_factory=list
    )  # 2.0.1 TransactionEvents, first copy of each seqNo

    @property
    def energy_wh(self) -> int:
        assert self.meter_start is not None and self.meter_stop is not None
        return self.meter_stop - self.meter_start


def register_wh(meter_values: list[dict[str, Any]]) -> int | None:
    """The energy register in a (snake_case) meterValue list."""
    for mv in meter_values:
        for sv in mv["sampled_value"]:
            if sv.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register":
                return int(float(sv["value"]))
    return None


def sampled(meter_values: list[dict[str, Any]], measurand: str) -> list[float]:
    return [
        float(sv["value"])
        for mv in meter_values
        for sv in mv["sampled_value"]
        if sv.get("measurand") == measurand
    ]


class _Recorded:
    """What both test central systems share: every frame goes through the TestCsms ledger first."""

    id: str
    csms: TestCsms

    def __init__(self, station_id: str, connection: ServerConnection, csms: TestCsms) -> None:
        super().__init__(station_id, connection, response_timeout=5)
        self.csms = csms

    async def route_message(self, raw_msg: str) -> None:
        if self.csms.record(self.id, raw_msg):
            await super().route_message(raw_msg)


class Central16(_Recorded, CentralChargePoint16):  # type: ignore[misc]
    @on("BootNotification")
    def on_boot(self, **_: Any) -> Any:
        status = self.csms.boot_answers.pop(0) if self.csms.boot_answers else "Accepted"
        return result16.BootNotification(current_time=now_ts(), interval=self.csms.interval, status=status)

    @on("Heartbeat")
    def on_heartbeat(self) -> Any:
        return result16.Heartbeat(current_time=now_ts())

    @on("StatusNotification")
    def on_status(self, **_: Any) -> Any:
        return result16.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_tag: str) -> Any:
        return result16.Authorize(id_tag_info={"status": self.csms.tag_status(id_tag)})

    @on("StartTransaction")
    def on_start(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any) -> Any:
        # Idempotent: a repeat of the same start gets the same transaction.
        key = (self.id, connector_id, id_tag, meter_start, timestamp)
        tx_id = self.csms.starts.get(key)
        if tx_id is None:
            tx_id = self.csms.starts[key] = len(self.csms.starts) + 1
            self.csms.transactions[str(tx_id)] = Transaction(self.id, str(tx_id), id_tag, meter_start)
        return result16.StartTransaction(
            transaction_id=tx_id, id_tag_info={"status": self.csms.tag_status(id_tag)}
        )

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> Any:
        return result16.MeterValues()

    @on("StopTransaction")
    def on_stop(self, transaction_id: int, meter_stop: int, reason: str = "Local", **_: Any) -> Any:
        tx = self.csms.transactions[str(transaction_id)]
        tx.meter_stop, tx.stop_reason = meter_stop, reason
        return result16.StopTransaction(id_tag_info={"status": "Accepted"})

    @on("FirmwareStatusNotification")
    def on_firmware(self, **_: Any) -> Any:
        return result16.FirmwareStatusNotification()

    @on("DiagnosticsStatusNotification")
    def on_diagnostics(self, **_: Any) -> Any:
        return result16.DiagnosticsStatusNotification()


class Central201(_Recorded, CentralChargePoint201):  # type: ignore[misc]
    @on("BootNotification")
    def on_boot(self, **_: Any) -> Any:
        status = self.csms.boot_answers.pop(0) if self.csms.boot_answers else "Accepted"
        return result201.BootNotification(current_time=now_ts(), interval=self.csms.interval, status=status)

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        return result201.Heartbeat(current_time=now_ts())

    @on("StatusNotification")
    def on_status(self, **_: Any) -> Any:
        return result201.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_token: dict[str, Any], **_: Any) -> Any:
        return result201.Authorize(id_token_info={"status": self.csms.tag_status(id_token["id_token"])})

    @on("TransactionEvent")
    def on_transaction_event(
        self, event_type: str, seq_no: int, transaction_info: dict[str, Any], **kwargs: Any
    ) -> Any:
        tx_id = transaction_info["transaction_id"]
        tx = self.csms.transactions.setdefault(tx_id, Transaction(self.id, tx_id))
        if any(e["seq_no"] == seq_no for e in tx.events):
            return result201.TransactionEvent()  # a repeat: answered, not applied twice
        event = {"event_type": event_type, "seq_no": seq_no, "transaction_info": transaction_info, **kwargs}
        tx.events.append(event)
        energy = register_wh(kwargs.get("meter_value") or [])
        if event_type == "Started":
            tx.meter_start = energy
            tx.id_tag = kwargs["id_token"]["id_token"]
        if event_type == "Ended":
            tx.meter_stop = energy
            tx.stop_reason = transaction_info.get("stopped_reason")
        if "id_token" in kwargs:
            return result201.TransactionEvent(
                id_token_info={"status": self.csms.tag_status(kwargs["id_token"]["id_token"])}
            )
        return result201.TransactionEvent()

    @on("NotifyReport")
    def on_notify_report(self, **_: Any) -> Any:
        return result201.NotifyReport()

    @on("FirmwareStatusNotification")
    def on_firmware(self, **_: Any) -> Any:
        return result201.FirmwareStatusNotification()

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> Any:
        return result201.MeterValues()


class TestCsms:
    """A central system for both versions, on a free port, that records what it receives."""

    __test__ = False

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ocpp"
        self.received: list[Received] = []
        self.connections: dict[str, Central16 | Central201] = {}
        self.transactions: dict[str, Transaction] = {}
        self.starts: dict[tuple[Any, ...], int] = {}
        self.boot_answers: list[str] = []
        self.interval = 60
        self.blocked: set[str] = set()
        self.swallow: dict[str, int] = {}  # action → how many of the next requests to leave unanswered
        self.refused_logins = 0
        self._server: Server | None = None

    def tag_status(self, id_tag: str) -> str:
        return "Blocked" if id_tag in self.blocked else "Accepted"

    def record(self, station: str, raw: str) -> bool:
        """Remember a request; False when it is to go unanswered."""
        message = json.loads(raw)
        if message[0] != 2:
            return True
        _, message_id, action, payload = message
        answer = True
        if self.swallow.get(action, 0) > 0:
            self.swallow[action] -= 1
            answer = False
        self.received.append(Received(station, action, payload, message_id, answer))
        return answer

    def requests(self, station: str, action: str | None = None) -> list[dict[str, Any]]:
        return [
            r.payload
            for r in self.received
            if r.station == station and (action is None or r.action == action)
        ]

    def _check_login(self, connection: ServerConnection, request: Request) -> Response | None:
        station = request.path.rsplit("/", 1)[-1]
        expected = "Basic " + base64.b64encode(f"{station}:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            self.refused_logins += 1
            return connection.respond(HTTPStatus.UNAUTHORIZED, "who are you?\n")
        return None

    async def _serve(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        station = connection.request.path.rsplit("/", 1)[-1]
        kind = Central16 if connection.subprotocol == "ocpp1.6" else Central201
        cp = kind(station, connection, self)
        self.connections[station] = cp
        try:
            await cp.start()
        except ConnectionClosed:
            pass
        finally:
            if self.connections.get(station) is cp:
                del self.connections[station]

    async def start(self) -> None:
        self._server = await serve(
            self._serve,
            "127.0.0.1",
            self.port,
            subprotocols=["ocpp1.6", "ocpp2.0.1"],  # type: ignore[list-item]
            process_request=self._check_login,
        )

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        self.connections.clear()

    async def ask(self, station: str, request: Any) -> Any:
        return await self.connections[station].call(request)


@pytest.fixture
async def csms() -> AsyncIterator[TestCsms]:
    server = TestCsms()
    await server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(AssertionError):
            await server.stop()


@contextlib.asynccontextmanager
async def running(*things: SimulatedStation | ChargerFleet) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(thing.run()) for thing in things]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def make_station(csms: TestCsms, version: str, station_id: str = "CP1", **options: Any) -> SimulatedStation:
    defaults: dict[str, Any] = {
        "version": version,
        "speed": 600.0,
        "meter_interval_s": 60,
        "reconnect_first_s": 0.05,
        "reconnect_max_s": 0.3,
        "boot_retry_s": 0.2,
        "reboot_s": 0.1,
        "response_timeout_s": 2.0,
    }
    return SimulatedStation(station_id, csms.url, PASSWORD, **{**defaults, **options})


def statuses(csms: TestCsms, station: str, connector: int) -> list[str]:
    out = []
    for p in csms.requests(station, "StatusNotification"):
        if p.get("evseId", p.get("connectorId")) == connector:
            out.append(p.get("status") or p["connectorStatus"])
    return out


# -- the tests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_station_boots_after_pending_reports_its_connectors_and_sends_heartbeats(
    csms: TestCsms, version: str
) -> None:
    csms.boot_answers = ["Pending"]
    csms.interval = 1
    station = make_station(csms, version)
    intruder = SimulatedStation(
        "CP9", csms.url, "not-the-password-0", version=version, reconnect_first_s=0.05
    )
    async with running(station, intruder):
        await eventually(lambda: csms.requests("CP1", "Heartbeat"), within_s=5)
    boots = csms.requests("CP1", "BootNotification")
    assert len(boots) == 2  # Pending, then again after the interval: Accepted
    assert station.boot_status == "Accepted" and station.boots == 1
    connectors = [0, 1, 2] if version == "1.6" else [1, 2]
    assert all(statuses(csms, "CP1", c) == ["Available"] for c in connectors)
    if version == "1.6":
        assert boots[0]["chargePointVendor"] == "smartev" and boots[0]["firmwareVersion"] == "1.0.0"
    else:
        assert boots[0]["reason"] == "PowerUp" and boots[0]["chargingStation"]["vendorName"] == "smartev"
    # Nothing reaches the central system before it accepted the boot.
    first_accepted = [r.action for r in csms.received if r.station == "CP1"][:3]
    assert first_accepted == ["BootNotification", "BootNotification", "StatusNotification"]
    assert csms.refused_logins >= 1 and not csms.requests("CP9")


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_car_charges_until_full_and_the_central_system_meters_what_the_station_did(
    csms: TestCsms, version: str
) -> None:
    station = make_station(csms, version, validate_messages=True)
    vin = "SEVAB12C0TA123456"
    register = station.model.connector(1).register_wh
    async with running(station):
        await eventually(lambda: station.online, within_s=5)
        # 1.6 with a card; 2.0.1 with autocharge (the car's VIN is its id).
        tag = "04A2B3C4D5E680" if version == "1.6" else vin
        session = await station.plug_in(1, tag, vin=vin, soc=74.0, capacity_kwh=40.0, target_soc=80.0)
        assert session is not None
        await eventually(lambda: not session.active, within_s=10)
        await asyncio.wait_for(station.delivered(), 5)
        await eventually(lambda: statuses(csms, "CP1", 1)[-1:] == ["Available"], within_s=5)

    assert session.meter_start_wh == round(register)
    assert session.stop_reason == "EVDisconnected"
    assert 2_400 < session.energy_wh < 2_800  # 6 % of 40 kWh through a 92 % efficient charger
    tx = csms.transactions[str(session.transaction_id)]
    assert tx.energy_wh == session.energy_wh == station.ledger_total_wh
    assert tx.stop_reason == "EVDisconnected" and tx.id_tag == tag

    if version == "1.6":
        assert isinstance(session.transaction_id, int)
        assert statuses(csms, "CP1", 1) == [
            "Available",
            "Preparing",
            "Charging",
            "SuspendedEV",
            "Finishing",
            "Available",
        ]
        start = csms.requests("CP1", "StartTransaction")[0]
        assert start["meterStart"] == session.meter_start_wh and start["connectorId"] == 1
        samples = [p["meterValue"] for p in csms.requests("CP1", "MeterValues")]
        assert samples and all(
            p["transactionId"] == session.transaction_id for p in csms.requests("CP1", "MeterValues")
        )
        values = [sv for mv in samples for m in mv for sv in m["sampledValue"]]
        power = [float(v["value"]) for v in values if v["measurand"] == "Power.Active.Import"]
        assert max(power) == pytest.approx(11_000, rel=0.01)  # the car's on-board charger, not the 22 kW post
        assert {v["phase"] for v in values if v["measurand"] == "Current.Import"} == {"L1", "L2", "L3"}
        stop = csms.requests("CP1", "StopTransaction")[0]
        assert [m["sampledValue"][0]["context"] for m in stop["transactionData"]] == [
            "Transaction.Begin",
            "Transaction.End",
        ]
    else:
        assert statuses(csms, "CP1", 1) == ["Available", "Occupied", "Available"]
        events = [p for p in csms.requests("CP1", "TransactionEvent")]
        assert [e["seqNo"] for e in events] == list(range(len(events)))
        assert events[0]["eventType"] == "Started" and events[-1]["eventType"] == "Ended"
        assert events[0]["idToken"] == {"idToken": vin, "type": TokenType.VIN.value}
        assert events[0]["evse"] == {"id": 1, "connectorId": 1}
        assert events[-1]["transactionInfo"]["stoppedReason"] == "EVDisconnected"
        assert events[-1]["triggerReason"] == "EVCommunicationLost"
        assert all(not e.get("offline") for e in events)
        soc = [
            sv["value"]
            for e in events
            for mv in e["meterValue"]
            for sv in mv["sampledValue"]
            if sv.get("measurand") == "SoC"
        ]
        assert soc[0] == pytest.approx(74.0) and soc[-1] == pytest.approx(80.0)


@pytest.mark.parametrize("version", VERSIONS)
async def test_remote_start_waits_for_the_car_and_remote_stop_ends_the_transaction(
    csms: TestCsms, version: str
) -> None:
    station = make_station(csms, version)
    async with running(station):
        await eventually(lambda: "CP1" in csms.connections and station.online, within_s=5)
        if version == "1.6":
            answer = await csms.ask("CP1", call16.RemoteStartTransaction(id_tag="REMOTE-TAG", connector_id=2))
        else:
            request = call201.RequestStartTransaction(
                id_token={"id_token": "REMOTE-TAG", "type": "Central"}, remote_start_id=7, evse_id=2
            )
            answer = await csms.ask("CP1", request)
        assert answer.status == "Accepted"
        await eventually(lambda: csms.requests("CP1", "Authorize"), within_s=5)  # AuthorizeRemoteTxRequests
        await station.plug_in(2, soc=30.0, capacity_kwh=60.0)  # the car comes: the remote start starts
        session = await eventually(lambda: next(iter(station.ledger.values()), None), within_s=5)
        assert session.id_tag == "REMOTE-TAG" and session.connector == 2
        await eventually(
            lambda: session.transaction_id is not None and str(session.transaction_id) in csms.transactions
        )

        if version == "1.6":
            unknown = await csms.ask("CP1", call16.RemoteStopTransaction(transaction_id=999))
            answer = await csms.ask(
                "CP1", call16.RemoteStopTransaction(transaction_id=session.transaction_id)
            )
        else:
            unknown = await csms.ask("CP1", call201.RequestStopTransaction(transaction_id="nope"))
            answer = await csms.ask(
                "CP1", call201.RequestStopTransaction(transaction_id=session.transaction_id)
            )
        assert unknown.status == "Rejected" and answer.status == "Accepted"
        await asyncio.wait_for(station.delivered(), 5)
        assert not session.active and session.stop_reason == "Remote"
        tx = csms.transactions[str(session.transaction_id)]
        assert tx.stop_reason == "Remote" and tx.energy_wh == session.energy_wh > 0
        if version == "2.0.1":
            started = tx.events[0]
            assert (
                started["trigger_reason"] == "RemoteStart"
                and started["transaction_info"]["remote_start_id"] == 7
            )
            assert tx.events[-1]["trigger_reason"] == "RemoteStop"
        # The car is still plugged in: the connector is finishing, not free.
        assert station.model.connector(2).status == "Finishing"


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_charging_profile_lowers_the_power_and_clearing_it_restores_it(
    csms: TestCsms, version: str
) -> None:
    station = make_station(csms, version)
    async with running(station):
        await eventually(lambda: station.online, within_s=5)
        session = await station.plug_in(1, "TAG-1", soc=20.0, capacity_kwh=80.0, leave_when_full=False)
        assert session is not None
        await eventually(lambda: station.model.connector(1).power_w == pytest.approx(11_000), within_s=5)
        if version == "1.6":
            profile = {
                "charging_profile_id": 5,
                "stack_level": 1,
                "charging_profile_purpose": "TxProfile",
                "charging_profile_kind": "Relative",
                "charging_schedule": {
                    "charging_rate_unit": "W",
                    "charging_schedule_period": [{"start_period": 0, "limit": 5000.0}],
                },
            }
            answer = await csms.ask(
                "CP1", call16.SetChargingProfile(connector_id=1, cs_charging_profiles=profile)
            )
            expected_w = 5_000.0
        else:
            profile = {
                "id": 5,
                "stack_level": 1,
                "charging_profile_purpose": "TxDefaultProfile",
                "charging_profile_kind": "Absolute",
                "charging_schedule": [
                    {
                        "id": 1,
                        "start_schedule": now_ts(),
                        "charging_rate_unit": "A",
                        "charging_schedule_period": [{"start_period": 0, "limit": 10.0}],
                    }
                ],
            }
            answer = await csms.ask("CP1", call201.SetChargingProfile(evse_id=1, charging_profile=profile))
            expected_w = 10 * 3 * 230.0
        assert answer.status == "Accepted"
        sent_before = len(csms.received)

        def reported_power() -> list[float]:
            later = [
                r.payload
                for r in csms.received[sent_before:]
                if r.action in ("MeterValues", "TransactionEvent")
            ]
            return [
                float(sv["value"])
                for p in later
                for mv in p["meterValue"]
                for sv in mv["sampledValue"]
                if sv.get("measurand") == "Power.Active.Import"
            ]

        await eventually(lambda: len(reported_power()) >= 2, within_s=5)
        assert reported_power()[-1] == pytest.approx(expected_w)

        if version == "1.6":
            composite = await csms.ask(
                "CP1", call16.GetCompositeSchedule(connector_id=1, duration=600, charging_rate_unit="W")
            )
            periods = composite.charging_schedule["charging_schedule_period"]
            cleared = await csms.ask("CP1", call16.ClearChargingProfile(id=5))
        else:
            composite = await csms.ask(
                "CP1", call201.GetCompositeSchedule(duration=600, evse_id=1, charging_rate_unit="W")
            )
            periods = composite.schedule["charging_schedule_period"]
            cleared = await csms.ask("CP1", call201.ClearChargingProfile(charging_profile_id=5))
        assert composite.status == "Accepted" and periods[0]["limit"] == pytest.approx(expected_w)
        assert cleared.status == "Accepted"
        await eventually(lambda: station.model.connector(1).power_w == pytest.approx(11_000), within_s=5)


@pytest.mark.parametrize("version", VERSIONS)
async def test_while_offline_transaction_messages_queue_and_replay_in_order(
    csms: TestCsms, version: str
) -> None:
    # The 1.6 station boots again on reconnecting; the 2.0.1 one, as 2.0.1 allows, goes straight on.
    station = make_station(csms, version, response_timeout_s=0.5, boot_on_reconnect=version == "1.6")
    async with running(station):
        await eventually(lambda: station.online, within_s=5)
        online_tx = await station.plug_in(1, "TAG-A", soc=20.0, capacity_kwh=80.0, leave_when_full=False)
        assert online_tx is not None
        await eventually(
            lambda: len(csms.requests("CP1", "MeterValues" if version == "1.6" else "TransactionEvent")) >= 3
        )

        await csms.stop()
        await eventually(lambda: not station.online, within_s=5)
        await asyncio.sleep(0.4)  # samples pile up
        station.unplug(1)
        offline_tx = await station.plug_in(2, "TAG-B", soc=20.0, capacity_kwh=80.0, leave_when_full=False)
        assert offline_tx is not None and offline_tx.offline
        if version == "1.6":
            assert offline_tx.transaction_id is None  # known only once the central system answers
        await asyncio.sleep(0.4)
        assert station.pending >= 5

        csms.swallow = {
            "StartTransaction" if version == "1.6" else "TransactionEvent": 1
        }  # the first goes unanswered
        await csms.start()
        await eventually(lambda: station.online and station.pending == 0, within_s=10)
        station.unplug(2)
        await asyncio.wait_for(station.delivered(), 5)

    assert len(csms.requests("CP1", "BootNotification")) == (2 if version == "1.6" else 1)
    tx_messages = [r for r in csms.received if r.action in TX_ACTIONS]
    ids = [r.message_id for r in tx_messages]
    unanswered = [r for r in tx_messages if not r.answered]
    assert len(unanswered) == 1 and station.stats().repeated >= 1
    assert ids.count(unanswered[0].message_id) >= 2  # it came again, with the same message id
    first_copies = [r for i, r in enumerate(tx_messages) if r.message_id not in ids[:i]]
    stamps = [
        r.payload["timestamp"] if "timestamp" in r.payload else r.payload["meterValue"][0]["timestamp"]
        for r in first_copies
    ]
    assert stamps == sorted(stamps)  # in the order they happened, the queue before anything newer

    for session in (online_tx, offline_tx):
        tx = csms.transactions[str(session.transaction_id)]
        assert tx.energy_wh == session.energy_wh > 0
    assert sum(t.energy_wh for t in csms.transactions.values()) == station.ledger_total_wh

    if version == "1.6":
        # The offline start got its id only when replayed; everything after it carries that id.
        assert (
            isinstance(offline_tx.transaction_id, int)
            and offline_tx.transaction_id != online_tx.transaction_id
        )
        after_start = False
        for r in first_copies:
            if r.action == "StartTransaction" and r.payload["connectorId"] == 2:
                after_start = True
            elif (
                r.action in ("MeterValues", "StopTransaction")
                and r.payload.get("transactionId") == offline_tx.transaction_id
            ):
                assert after_start
        meter_ids = {p.get("transactionId") for p in csms.requests("CP1", "MeterValues")}
        assert meter_ids == {online_tx.transaction_id, offline_tx.transaction_id}
    else:
        for session in (online_tx, offline_tx):
            events = [
                r.payload
                for r in first_copies
                if r.payload["transactionInfo"]["transactionId"] == session.transaction_id
            ]
            assert [e["seqNo"] for e in events] == list(range(len(events)))  # gap-free and in order
            flags = "".join("T" if e.get("offline") else "F" for e in events)
            assert re.fullmatch("F*T+F*", flags), flags  # offline exactly for what happened while offline
        events_b = csms.transactions[offline_tx.transaction_id].events
        assert events_b[0]["offline"] is True and events_b[-1].get("offline") is None


@pytest.mark.parametrize("version", VERSIONS)
async def test_configuration_trigger_firmware_update_and_reset(csms: TestCsms, version: str) -> None:
    station = make_station(csms, version)
    async with running(station):
        await eventually(lambda: station.online, within_s=5)
        if version == "1.6":
            changed = await csms.ask(
                "CP1", call16.ChangeConfiguration(key="MeterValueSampleInterval", value="30")
            )
            readonly = await csms.ask("CP1", call16.ChangeConfiguration(key="NumberOfConnectors", value="4"))
            config = await csms.ask("CP1", call16.GetConfiguration(key=["MeterValueSampleInterval", "Nope"]))
            assert (changed.status, readonly.status) == ("Accepted", "Rejected")
            assert config.configuration_key == [
                {"key": "MeterValueSampleInterval", "readonly": False, "value": "30"}
            ]
            assert config.unknown_key == ["Nope"]
            trigger = call16.TriggerMessage(requested_message="StatusNotification", connector_id=1)
            firmware = call16.UpdateFirmware(
                location="https://fw.example/simbox-2.1.0.bin", retrieve_date=now_ts()
            )
            reset = call16.Reset(type="Soft")
        else:
            component = {"name": "SampledDataCtrlr"}
            set_answer = await csms.ask(
                "CP1",
                call201.SetVariables(
                    set_variable_data=[
                        {
                            "attribute_value": "30",
                            "component": component,
                            "variable": {"name": "TxUpdatedInterval"},
                        },
                        {"attribute_value": "1", "component": {"name": "Nope"}, "variable": {"name": "X"}},
                    ]
                ),
            )
            assert [r["attribute_status"] for r in set_answer.set_variable_result] == [
                "Accepted",
                "UnknownComponent",
            ]
            got = await csms.ask(
                "CP1",
                call201.GetVariables(
                    get_variable_data=[{"component": component, "variable": {"name": "TxUpdatedInterval"}}]
                ),
            )
            assert got.get_variable_result[0]["attribute_value"] == "30"
            report = await csms.ask("CP1", call201.GetBaseReport(request_id=3, report_base="FullInventory"))
            assert report.status == "Accepted"
            await eventually(
                lambda: (
                    csms.requests("CP1", "NotifyReport")
                    and not csms.requests("CP1", "NotifyReport")[-1].get("tbc")
                )
            )
            reported = [
                d["variable"]["name"] for p in csms.requests("CP1", "NotifyReport") for d in p["reportData"]
            ]
            assert "HeartbeatInterval" in reported and "AvailabilityState" in reported
            trigger = call201.TriggerMessage(requested_message="StatusNotification", evse={"id": 1})
            firmware = call201.UpdateFirmware(
                request_id=11,
                firmware={"location": "https://fw.example/simbox-2.1.0.bin", "retrieve_date_time": now_ts()},
            )
            reset = call201.Reset(type="Immediate")
        assert station.model.setting_int("MeterValueSampleInterval") == 30

        before = len(statuses(csms, "CP1", 1))
        assert (await csms.ask("CP1", trigger)).status == "Accepted"
        await eventually(lambda: len(statuses(csms, "CP1", 1)) == before + 1)

        await csms.ask("CP1", firmware)
        await eventually(lambda: station.boots == 2, within_s=10)  # installed, then rebooted into it
        notes = [p["status"] for p in csms.requests("CP1", "FirmwareStatusNotification")]
        assert notes == ["Downloading", "Downloaded", "Installing", "Installed"]
        boot = csms.requests("CP1", "BootNotification")[-1]
        assert (boot.get("firmwareVersion") or boot["chargingStation"]["firmwareVersion"]) == "2.1.0"

        session = await station.plug_in(1, "TAG-R", soc=20.0, capacity_kwh=80.0)
        await eventually(lambda: "CP1" in csms.connections)
        assert (await csms.ask("CP1", reset)).status == "Accepted"
        await eventually(lambda: station.boots == 3, within_s=10)
        assert session is not None and session.stop_reason in ("SoftReset",)
        tx = csms.transactions[str(session.transaction_id)]
        assert tx.stop_reason == ("SoftReset" if version == "1.6" else "ImmediateReset")
        if version == "2.0.1":
            assert csms.requests("CP1", "BootNotification")[-1]["reason"] == "RemoteReset"


@pytest.mark.parametrize("version", VERSIONS)
async def test_reservations_availability_unlock_local_list_and_refused_tags(
    csms: TestCsms, version: str
) -> None:
    station = make_station(csms, version)
    v16 = version == "1.6"
    expiry = datetime.now(UTC).replace(year=datetime.now(UTC).year + 1).isoformat().replace("+00:00", "Z")
    async with running(station):
        await eventually(lambda: station.online and "CP1" in csms.connections, within_s=5)

        def reserve(connector: int, reservation: int) -> Any:
            if v16:
                return call16.ReserveNow(
                    connector_id=connector, expiry_date=expiry, id_tag="RES-TAG", reservation_id=reservation
                )
            token = {"id_token": "RES-TAG", "type": "ISO14443"}
            return call201.ReserveNow(
                id=reservation, expiry_date_time=expiry, id_token=token, evse_id=connector
            )

        assert (await csms.ask("CP1", reserve(1, 1))).status == "Accepted"
        assert station.model.connector(1).status == "Reserved"
        assert await station.plug_in(1, "SOMEONE-ELSE") is None  # held for another tag
        station.unplug(1)
        session = await station.plug_in(1, "RES-TAG", soc=20.0, capacity_kwh=80.0)
        assert session is not None and session.reservation_id == 1
        await asyncio.wait_for(station.delivered(), 5)
        if v16:
            assert csms.requests("CP1", "StartTransaction")[-1]["reservationId"] == 1
        else:
            assert csms.transactions[str(session.transaction_id)].events[0]["reservation_id"] == 1

        assert (await csms.ask("CP1", reserve(2, 2))).status == "Accepted"
        cancel = (
            call16.CancelReservation(reservation_id=2) if v16 else call201.CancelReservation(reservation_id=2)
        )
        assert (await csms.ask("CP1", cancel)).status == "Accepted"
        assert (await csms.ask("CP1", cancel)).status == "Rejected"

        # Unlocking ends a 1.6 transaction; 2.0.1 refuses while one runs.
        unlock = (
            call16.UnlockConnector(connector_id=1)
            if v16
            else call201.UnlockConnector(evse_id=1, connector_id=1)
        )
        answer = await csms.ask("CP1", unlock)
        if v16:
            assert answer.status == "Unlocked" and session.stop_reason == "UnlockCommand"
        else:
            assert answer.status == "OngoingAuthorizedTransaction" and session.active
            station.unplug(1)

        # Out of service: at once when idle, after the transaction otherwise.
        def availability(connector: int, operative: bool) -> Any:
            kind = "Operative" if operative else "Inoperative"
            if v16:
                return call16.ChangeAvailability(connector_id=connector, type=kind)
            evse = {"id": connector} if connector else None
            return call201.ChangeAvailability(operational_status=kind, evse=evse)

        assert (await csms.ask("CP1", availability(2, False))).status == "Accepted"
        assert station.model.connector(2).status == "Unavailable"
        with pytest.raises(ValueError):
            await station.plug_in(2, "TAG")
        assert (await csms.ask("CP1", availability(2, True))).status == "Accepted"
        running_tx = await station.plug_in(2, "TAG", soc=20.0, capacity_kwh=80.0)
        assert running_tx is not None
        assert (await csms.ask("CP1", availability(0, False))).status == "Scheduled"
        assert station.model.connector(1).status == "Unavailable" and running_tx.active
        station.unplug(2)
        assert station.model.connector(2).status == "Unavailable"
        await eventually(lambda: statuses(csms, "CP1", 2)[-1:] == ["Unavailable"])
        assert (await csms.ask("CP1", availability(0, True))).status == "Accepted"

        # The central system refuses a tag: no transaction, and the car waits.
        csms.blocked = {"BAD-TAG"}
        assert await station.plug_in(2, "BAD-TAG") is None
        assert station.model.connector(2).status == "Preparing"

        if v16:
            local = [{"id_tag": "LOCAL-1", "id_tag_info": {"status": "Accepted"}}]
            request = call16.SendLocalList(list_version=4, update_type="Full", local_authorization_list=local)
            assert (await csms.ask("CP1", request)).status == "Accepted"
            assert (await csms.ask("CP1", call16.GetLocalListVersion())).list_version == 4
            echo = await csms.ask(
                "CP1", call16.DataTransfer(vendor_id="smartev", message_id="ping", data="hi")
            )
            other = await csms.ask("CP1", call16.DataTransfer(vendor_id="acme"))
        else:
            local = [
                {
                    "id_token": {"id_token": "LOCAL-1", "type": "ISO14443"},
                    "id_token_info": {"status": "Accepted"},
                }
            ]
            request = call201.SendLocalList(
                version_number=4, update_type="Full", local_authorization_list=local
            )
            assert (await csms.ask("CP1", request)).status == "Accepted"
            assert (await csms.ask("CP1", call201.GetLocalListVersion())).version_number == 4
            echo = await csms.ask(
                "CP1", call201.DataTransfer(vendor_id="smartev", message_id="ping", data="hi")
            )
            other = await csms.ask("CP1", call201.DataTransfer(vendor_id="acme"))
        assert (echo.status, echo.data, other.status) == ("Accepted", "hi", "UnknownVendorId")
        assert station.model.local_list == {"LOCAL-1": "Accepted"}


async def test_fifty_stations_in_one_process_complete_sessions(csms: TestCsms) -> None:
    identities = [
        StationIdentity(
            f"FLEET{n:03d}",
            PASSWORD,
            version=VERSIONS[n % 2],
            connectors=2,
            max_power_w=150_000.0 if n % 5 == 0 else 22_000.0,
        )
        for n in range(50)
    ]
    fleet = ChargerFleet.create(
        identities,
        csms.url,
        seed=3,
        speed=1200.0,
        meter_interval_s=600,
        mean_arrival_gap_s=600.0,
        mean_dwell_s=2400.0,
        reconnect_first_s=0.1,
    )
    assert len(fleet) == 50

    def completed() -> int:
        return sum(any(not s.active for s in st.ledger.values()) for st in fleet.stations)

    async with running(fleet):
        await eventually(lambda: completed() == 50, within_s=30)
        # Stop charging and let the last messages out before comparing.
        fleet.stop_arrivals()
        for station in fleet.stations:
            for connector in station.model.connectors:
                station.unplug(connector)
        await asyncio.wait_for(asyncio.gather(*(s.delivered() for s in fleet.stations)), 10)
        stats = fleet.stats()

    assert stats.online == 50 and stats.pending == 0 and stats.dropped == 0
    sessions = [s for st in fleet.stations for s in st.ledger.values()]
    assert len(sessions) >= 50 and all(not s.active for s in sessions)
    for session in sessions:
        assert csms.transactions[str(session.transaction_id)].energy_wh == session.energy_wh
    assert fleet.ledger_total_wh == sum(t.energy_wh for t in csms.transactions.values()) > 0
    assert any(s.token_type is TokenType.VIN for s in sessions)  # some cars use autocharge
    dc = [s for st in fleet.stations if st.model.dc for s in st.ledger.values()]
    assert dc and max(s.energy_wh for s in dc) > 0


# -- the model, without a wire -------------------------------------------------------------------------------

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def charge_to_full(
    dc: bool, max_power_w: float, car: PluggedCar
) -> tuple[StationModel, list[tuple[float, float]]]:
    """Charge one car minute by minute until it is full and leaves; (soc, power) after each minute."""
    model = StationModel("CPX", connectors=1, max_power_w=max_power_w, dc=dc, now=T0, register_wh=0)
    model.plug(1, car, T0)
    model.start(1, "T", T0)
    curve, t = [], T0
    while model.connector(1).car is not None:
        t += timedelta(minutes=1)
        model.tick(t)
        curve.append((car.soc, model.connector(1).power_w))
    return model, curve


@pytest.mark.parametrize(
    ("dc", "station_w", "full_until", "full_w"),
    [(False, 22_000.0, 79.0, 11_000.0), (True, 150_000.0, 49.0, 100_000.0), (True, 50_000.0, 59.0, 50_000.0)],
)
def test_the_charging_curve_holds_full_power_then_tapers(
    dc: bool, station_w: float, full_until: float, full_w: float
) -> None:
    car = PluggedCar(soc=12.0, capacity_kwh=60.0, target_soc=100.0, max_ac_w=11_000.0, max_dc_w=100_000.0)
    model, curve = charge_to_full(dc, station_w, car)
    assert all(
        p == pytest.approx(full_w) for soc, p in curve if 15 < soc < full_until
    )  # the lower of car and post
    assert all(p < full_w * 0.7 for soc, p in curve if 90 < soc < 99.9)  # tapering at the top
    (session,) = model.sessions.values()
    efficiency = 0.97 if dc else 0.92
    assert not session.active and session.stop_reason == "EVDisconnected"
    assert session.energy_wh == pytest.approx(
        60_000 * 0.88 / efficiency, abs=2
    )  # the meter counts the losses


def test_profiles_stack_tx_over_default_and_the_station_limit_is_shared() -> None:
    model = StationModel("CPX", connectors=2, max_power_w=22_000, dc=False, now=T0, register_wh=0)
    for c in (1, 2):
        model.plug(c, PluggedCar(soc=20.0, capacity_kwh=80.0), T0)
        model.start(c, f"T{c}", T0)
    assert [model.connector(c).power_w for c in (1, 2)] == [11_000, 11_000]

    def profile(
        pid: int, connector: int, purpose: ProfilePurpose, limit: float, unit: str = "W", **kw: Any
    ) -> ChargingProfile:
        return ChargingProfile(pid, connector, purpose, 0, unit, (SchedulePeriod(0, limit),), **kw)

    assert model.set_profile(profile(1, 0, ProfilePurpose.TX_DEFAULT, 16, "A"))  # 16 A × 3 × 230 V on each
    assert model.limit_w(1, T0) == pytest.approx(11_040) and model.connector(1).power_w == 11_000
    assert model.set_profile(profile(2, 1, ProfilePurpose.TX, 6_000))  # the transaction's own wins on 1
    assert model.connector(1).power_w == 6_000 and model.connector(2).power_w == 11_000
    assert model.set_profile(profile(3, 0, ProfilePurpose.STATION_MAX, 14_000))  # shared by the two cars
    assert [model.connector(c).power_w for c in (1, 2)] == [6_000, 7_000]
    assert not model.set_profile(profile(4, 1, ProfilePurpose.STATION_MAX, 1_000))  # only for the station

    # A limit that starts in ten minutes shows in the composite schedule, and takes effect then.
    later = ChargingProfile(
        5, 2, ProfilePurpose.TX, 1, "W", (SchedulePeriod(0, 11_000), SchedulePeriod(600, 3_000)), start=T0
    )
    assert model.set_profile(later)
    assert model.composite_schedule(2, T0, 3600, "W") == [
        SchedulePeriod(0, 7_000),
        SchedulePeriod(600, 3_000),
    ]
    model.tick(T0 + timedelta(minutes=11))
    assert model.connector(2).power_w == 3_000
    assert model.clear_profiles(purpose=ProfilePurpose.TX) and not model.clear_profiles(profile_id=2)
    model.stop(1, StopReason.LOCAL, T0 + timedelta(minutes=12))
    assert model.connector(1).status == "Finishing" and model.connector(2).power_w == 11_000
