"""A simulated station on the wire: the `ocpp` library's charge point, one subclass per protocol version.

Each connection gets a fresh `Station16` or `Station201`. Its handlers are thin: they read the central system's
request, ask the station (`chargers.SimulatedStation`) or its model (`charger_model.StationModel`) and answer;
anything that has to happen after the answer (authorising a remote start, a firmware update, a report, a
triggered message) is handed back with `then` and runs once the answer is on the wire, so the central system
always sees its answer before what follows from it. The same classes render the model's events (`TxEvent`,
`StatusChanged`) as requests of their version, so the offline queue holds protocol-free events and a 1.6
StartTransaction made while offline gets its real transaction id into the messages that follow it.

Our own requests go out without the library's JSON-schema validation unless the station asks for it: the
library validates each message in a worker thread, which costs more than the rest of a simulated station's
message; the central system validates what it receives anyway. Requests from the central system are validated.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ocpp.charge_point import ChargePoint as _LibraryChargePoint
from ocpp.exceptions import OCPPError, UnknownCallErrorCodeError
from ocpp.exceptions import ValidationError as _ValidationError
from ocpp.routing import on as _library_on
from ocpp.v16 import ChargePoint as _ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as _ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from smartev.agent.protocol import raise_if_cancelled, rfc3339_ms
from smartev.sim.charger_model import (
    SETTINGS,
    ChargingProfile,
    ConnectorStatus,
    MeterSample,
    ProfilePurpose,
    Reservation,
    SchedulePeriod,
    Setting,
    StatusChanged,
    StopReason,
    TokenType,
    Trigger,
    TxEvent,
    TxEventKind,
    is_busy,
)

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from smartev.sim.chargers import SimulatedStation

logger = logging.getLogger(__name__)
_wire_logger = logging.getLogger("smartev.sim.ocpp_wire")  # every frame at INFO: the library logs that much

_H = TypeVar("_H", bound=Callable[..., Any])
Job = Callable[[], Coroutine[Any, Any, None]]

_REPORT_ITEMS_PER_MESSAGE = 20


def on(action: str) -> Callable[[_H], _H]:
    """The library's `@on(action)` with its type kept (the library is untyped)."""
    return cast("Callable[[_H], _H]", _library_on(action))


class CallFailed(Exception):
    """A request of ours got no usable answer."""


class NoAnswer(CallFailed):
    """No answer came within the response timeout."""


class Refused(CallFailed):
    """The central system answered with a CallError (or an answer that is not valid)."""


def ts(moment: datetime) -> str:
    """An OCPP timestamp: RFC 3339 UTC with milliseconds."""
    return rfc3339_ms(moment.timestamp())


def parse_ts(value: Any) -> datetime | None:
    """An OCPP timestamp from the central system, or None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def next_firmware_version(location: str, current: str) -> str:
    """The version a firmware image at `location` installs: the last dotted number in its name, else current + 1."""
    found = re.findall(r"\d+\.\d+(?:\.\d+)*", location.rsplit("/", 1)[-1])
    if found:
        return str(found[-1])
    parts = current.split(".")
    if parts and parts[-1].isdigit():
        return ".".join([*parts[:-1], str(int(parts[-1]) + 1)])
    return f"{current}.1"


def _sampled_values(
    sample: MeterSample, context: str, measurands: str, *, numeric: bool
) -> list[dict[str, Any]]:
    """The sampled values of one meter reading, as 1.6 (strings) or 2.0.1 (numbers and unitOfMeasure)."""
    wanted = set(measurands.split(","))

    def value(
        measurand: str, number: float, unit: str, phase: str | None = None, location: str = "Outlet"
    ) -> dict[str, Any]:
        item: dict[str, Any] = {"context": context, "measurand": measurand, "location": location}
        if numeric:
            item["value"] = number
            item["unit_of_measure"] = {"unit": unit}
        else:
            item["value"] = str(number) if isinstance(number, int) else f"{number:.1f}"
            item["unit"] = unit
        if phase is not None:
            item["phase"] = phase
        return item

    values = [value("Energy.Active.Import.Register", sample.energy_wh, "Wh")]
    if "Power.Active.Import" in wanted:
        values.append(value("Power.Active.Import", sample.power_w, "W"))
    if "Current.Import" in wanted:
        if sample.phases:
            values.extend(
                value("Current.Import", sample.current_a, "A", f"L{n}") for n in range(1, sample.phases + 1)
            )
        else:
            values.append(value("Current.Import", sample.current_a, "A"))
    if "Voltage" in wanted:
        values.append(value("Voltage", sample.voltage_v, "V"))
    if "SoC" in wanted and sample.soc is not None:
        values.append(value("SoC", sample.soc, "Percent", location="EV"))
    return values


def _context(event: TxEvent) -> str:
    if event.kind is TxEventKind.STARTED:
        return "Transaction.Begin"
    if event.kind is TxEventKind.ENDED:
        return "Transaction.End"
    return "Trigger" if event.trigger is Trigger.TRIGGER else "Sample.Periodic"


class StationChargePoint(_LibraryChargePoint):  # type: ignore[misc]
    """What both versions share: requests with typed failures, answers before follow-ups, the station's state."""

    version = ""

    def __init__(
        self,
        station: SimulatedStation,
        connection: ClientConnection,
        *,
        response_timeout_s: float,
        validate: bool,
    ) -> None:
        super().__init__(
            station.station_id, connection, response_timeout=response_timeout_s, logger=_wire_logger
        )
        self.station = station
        self.model = station.model
        self.websocket = connection
        self._validate = validate
        self._after: list[Job] = []

    async def route_message(self, raw_msg: str) -> None:
        """Handle one frame, then start what the answer promised."""
        if self.station.boot_status == "Rejected" and raw_msg.lstrip().startswith("[2"):
            return  # a rejected station answers nothing until it is accepted
        await super().route_message(raw_msg)
        jobs, self._after = self._after, []
        self.station.after_answer(jobs)

    def then(self, job: Job) -> None:
        """Run `job` once the answer to the request being handled has been sent."""
        self._after.append(job)

    async def request(self, payload: Any, message_id: str | None = None) -> Any:
        """Send a request and return the answer; raises NoAnswer or Refused, or ConnectionClosed."""
        try:
            result = await self.call(
                payload, suppress=False, unique_id=message_id, skip_schema_validation=not self._validate
            )
            # The library waits with asyncio.wait_for, which on 3.11 lets an answer arriving with a cancel win.
            raise_if_cancelled()
            return result
        except TimeoutError as exc:
            raise NoAnswer(f"no answer to {type(payload).__name__}") from exc
        except (OCPPError, UnknownCallErrorCodeError, _ValidationError) as exc:
            raise Refused(f"{type(payload).__name__}: {exc}") from exc

    # -- what each version renders ------------------------------------------------------------------------

    def boot_request(self, reason: str) -> Any:
        """The BootNotification to send."""
        raise NotImplementedError

    def boot_answer(self, result: Any) -> tuple[str, int]:
        """(status, interval) of a BootNotification answer."""
        return str(result.status), int(result.interval)

    def heartbeat_request(self) -> Any:
        """A Heartbeat."""
        raise NotImplementedError

    def status_requests(self, changed: StatusChanged) -> list[Any]:
        """The StatusNotifications that report a connector's status."""
        raise NotImplementedError

    def status_change_requests(self, changed: StatusChanged) -> list[Any]:
        """The StatusNotifications for a status change: none when this version shows no change."""
        return self.status_requests(changed)

    def boot_statuses(self) -> list[StatusChanged]:
        """Every status the central system needs after a boot."""
        now = self.model.time
        return [StatusChanged(conn.id, conn.status, now) for conn in self.model.connectors.values()]

    def authorize_request(self, id_tag: str, token_type: TokenType) -> Any:
        """An Authorize for this id tag."""
        raise NotImplementedError

    def authorize_answer(self, result: Any) -> bool:
        """Whether an Authorize answer accepts the id tag."""
        raise NotImplementedError

    def tx_request(self, event: TxEvent) -> Any | None:
        """The request that reports a transaction event, or None when this version has none for it."""
        raise NotImplementedError

    def tx_answer(self, event: TxEvent, result: Any) -> bool | None:
        """Take in the answer to a transaction request; False when it refuses the id tag."""
        raise NotImplementedError

    def meter_values_request(self, connector: int, sample: MeterSample) -> Any:
        """MeterValues for TriggerMessage."""
        raise NotImplementedError

    def firmware_status_request(self, status: str, request_id: int | None) -> Any:
        """A FirmwareStatusNotification."""
        raise NotImplementedError

    def diagnostics_status_request(self, status: str) -> Any:
        """A DiagnosticsStatusNotification (1.6 only)."""
        raise NotImplementedError

    # -- shared handling ----------------------------------------------------------------------------------

    def _trigger(self, requested: str, connector: int | None) -> str:
        """Answer a TriggerMessage and send the message after the answer."""
        station = self.station
        if connector and connector not in self.model.connectors:
            return "Rejected"
        jobs: dict[str, Job] = {
            "BootNotification": station.send_boot,
            "Heartbeat": station.send_heartbeat,
            "StatusNotification": lambda: station.send_statuses(connector or None),
            "MeterValues": lambda: station.send_meter_values(connector or None),
            "FirmwareStatusNotification": station.send_firmware_status,
        }
        if self.version == "1.6":
            jobs["DiagnosticsStatusNotification"] = station.send_diagnostics_status
        else:
            jobs["TransactionEvent"] = lambda: station.send_transaction_update(connector or None)
        job = jobs.get(requested)
        if job is None:
            return "NotImplemented"
        self.then(job)
        return "Accepted"

    def _settings_value(self, setting: Setting) -> str:
        return self.model.config[setting.key]


# -- OCPP 1.6 ---------------------------------------------------------------------------------------------------

_PURPOSE_16 = {
    "ChargePointMaxProfile": ProfilePurpose.STATION_MAX,
    "TxDefaultProfile": ProfilePurpose.TX_DEFAULT,
    "TxProfile": ProfilePurpose.TX,
}


def _schedule_periods(periods: Iterable[dict[str, Any]]) -> tuple[SchedulePeriod, ...]:
    return tuple(
        SchedulePeriod(int(p["start_period"]), float(p["limit"]), p.get("number_phases"))
        for p in sorted(periods, key=lambda p: int(p["start_period"]))
    )


def _profile(
    data: dict[str, Any], schedule: dict[str, Any], profile_id: int, connector: int, purpose: ProfilePurpose
) -> ChargingProfile:
    """The fields both versions spell alike (the ocpp library hands both over in snake_case)."""
    return ChargingProfile(
        id=profile_id,
        connector=connector,
        purpose=purpose,
        stack_level=int(data["stack_level"]),
        unit=str(schedule["charging_rate_unit"]),
        periods=_schedule_periods(schedule["charging_schedule_period"]),
        kind=str(data.get("charging_profile_kind", "Absolute")),
        recurrency=data.get("recurrency_kind"),
        start=parse_ts(schedule.get("start_schedule")),
        duration_s=schedule.get("duration"),
        valid_from=parse_ts(data.get("valid_from")),
        valid_to=parse_ts(data.get("valid_to")),
        transaction_id=data.get("transaction_id"),
    )


def profile_from_16(data: dict[str, Any], connector: int) -> ChargingProfile | None:
    """A 1.6 csChargingProfiles as a model profile; None when it is not one we can apply."""
    purpose = _PURPOSE_16.get(str(data.get("charging_profile_purpose")))
    schedule = data.get("charging_schedule") or {}
    if purpose is None or not schedule.get("charging_schedule_period"):
        return None
    return _profile(data, schedule, int(data["charging_profile_id"]), connector, purpose)


class Station16(StationChargePoint, _ChargePoint16):  # type: ignore[misc]
    """A simulated OCPP 1.6-J charge point."""

    version = "1.6"

    def boot_request(self, reason: str) -> Any:
        s = self.station
        return call16.BootNotification(
            charge_point_vendor=s.vendor,
            charge_point_model=s.model_name,
            charge_point_serial_number=s.serial_number,
            firmware_version=s.firmware_version,
            meter_type="SimMeter",
        )

    def heartbeat_request(self) -> Any:
        return call16.Heartbeat()

    def status_requests(self, changed: StatusChanged) -> list[Any]:
        return [
            call16.StatusNotification(
                connector_id=changed.connector,
                error_code="NoError",
                status=changed.status.value,
                timestamp=ts(changed.at),
            )
        ]

    def boot_statuses(self) -> list[StatusChanged]:
        operative = any(c.operative for c in self.model.connectors.values())
        whole = ConnectorStatus.AVAILABLE if operative else ConnectorStatus.UNAVAILABLE
        return [StatusChanged(0, whole, self.model.time), *super().boot_statuses()]

    def authorize_request(self, id_tag: str, token_type: TokenType) -> Any:
        return call16.Authorize(id_tag=id_tag)

    def authorize_answer(self, result: Any) -> bool:
        return bool(result.id_tag_info.get("status") == "Accepted")

    def _meter_value(self, sample: MeterSample, context: str, measurands: str) -> dict[str, Any]:
        return {
            "timestamp": ts(sample.at),
            "sampled_value": _sampled_values(sample, context, measurands, numeric=False),
        }

    def tx_request(self, event: TxEvent) -> Any | None:
        session = event.session
        if event.kind is TxEventKind.STARTED:
            return call16.StartTransaction(
                connector_id=session.connector,
                id_tag=session.id_tag,
                meter_start=session.meter_start_wh,
                timestamp=ts(event.at),
                reservation_id=session.reservation_id,
            )
        if session.transaction_id is None:
            logger.warning(
                "station %s: dropping %s of %s: its StartTransaction never got a transaction id",
                self.id,
                event.kind.value,
                session.key,
            )
            return None
        if event.kind is TxEventKind.UPDATED:
            if event.trigger is Trigger.CHARGING_STATE:
                return None  # 1.6 tells this with a StatusNotification
            measurands = self.model.config["MeterValuesSampledData"]
            return call16.MeterValues(
                connector_id=session.connector,
                transaction_id=int(session.transaction_id),
                meter_value=[self._meter_value(event.sample, _context(event), measurands)],
            )
        measurands = self.model.config["StopTxnSampledData"]
        return call16.StopTransaction(
            meter_stop=session.meter_stop_wh,
            timestamp=ts(event.at),
            transaction_id=int(session.transaction_id),
            reason=(session.stop_reason or StopReason.OTHER).value,
            id_tag=session.id_tag,
            transaction_data=[
                self._meter_value(session.begin, "Transaction.Begin", measurands),
                self._meter_value(event.sample, "Transaction.End", measurands),
            ],
        )

    def tx_answer(self, event: TxEvent, result: Any) -> bool | None:
        info = getattr(result, "id_tag_info", None)
        if event.kind is TxEventKind.STARTED:
            event.session.transaction_id = int(result.transaction_id)
        if isinstance(info, dict) and event.kind is TxEventKind.STARTED:
            return info.get("status") == "Accepted"
        return None

    def meter_values_request(self, connector: int, sample: MeterSample) -> Any:
        session = self.model.connectors[connector].session
        tx = session.transaction_id if session is not None else None
        return call16.MeterValues(
            connector_id=connector,
            transaction_id=int(tx) if tx is not None else None,
            meter_value=[self._meter_value(sample, "Trigger", self.model.config["MeterValuesSampledData"])],
        )

    def firmware_status_request(self, status: str, request_id: int | None) -> Any:
        return call16.FirmwareStatusNotification(status=status)

    def diagnostics_status_request(self, status: str) -> Any:
        """A DiagnosticsStatusNotification."""
        return call16.DiagnosticsStatusNotification(status=status)

    # -- handlers -------------------------------------------------------------------------------------------

    @on("RemoteStartTransaction")
    def on_remote_start(
        self,
        id_tag: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        profile = None
        if charging_profile is not None:
            profile = profile_from_16(charging_profile, connector_id or 0)
            if profile is None or profile.purpose is not ProfilePurpose.TX:
                return result16.RemoteStartTransaction(status="Rejected")
        ok = self.station.remote_start(id_tag, TokenType.RFID, connector_id, None, profile)
        return result16.RemoteStartTransaction(status="Accepted" if ok else "Rejected")

    @on("RemoteStopTransaction")
    def on_remote_stop(self, transaction_id: int, **_: Any) -> Any:
        ok = self.station.remote_stop(transaction_id)
        return result16.RemoteStopTransaction(status="Accepted" if ok else "Rejected")

    @on("ChangeAvailability")
    def on_change_availability(self, connector_id: int, type: str, **_: Any) -> Any:
        status = self.station.change_availability(connector_id, type == "Operative")
        return result16.ChangeAvailability(status=status)

    @on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str, **_: Any) -> Any:
        return result16.ChangeConfiguration(status=self.station.change_setting(key, value))

    @on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        by_key = {s.key: s for s in SETTINGS}
        wanted = key or list(by_key)
        known = [
            {"key": k, "readonly": by_key[k].readonly, "value": self._settings_value(by_key[k])}
            for k in wanted
            if k in by_key
        ]
        unknown = [k for k in wanted if k not in by_key]
        return result16.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on("Reset")
    def on_reset(self, type: str, **_: Any) -> Any:
        reason = StopReason.HARD_RESET if type == "Hard" else StopReason.SOFT_RESET
        return result16.Reset(status=self.station.reset(reason, on_idle=False))

    @on("UnlockConnector")
    def on_unlock_connector(self, connector_id: int, **_: Any) -> Any:
        if connector_id not in self.model.connectors:
            return result16.UnlockConnector(status="NotSupported")
        self.station.unlock(connector_id, stop=True)
        return result16.UnlockConnector(status="Unlocked")

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None, **_: Any) -> Any:
        return result16.TriggerMessage(status=self._trigger(requested_message, connector_id))

    @on("SetChargingProfile")
    def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any], **_: Any
    ) -> Any:
        profile = profile_from_16(cs_charging_profiles, connector_id)
        ok = profile is not None and self.station.accepts_profiles and self.station.set_profile(profile)
        return result16.SetChargingProfile(status="Accepted" if ok else "Rejected")

    @on("ClearChargingProfile")
    def on_clear_charging_profile(
        self,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
        **_: Any,
    ) -> Any:
        purpose = _PURPOSE_16.get(charging_profile_purpose or "")
        ok = self.station.clear_profiles(
            profile_id=id, connector=connector_id, purpose=purpose, stack_level=stack_level
        )
        return result16.ClearChargingProfile(status="Accepted" if ok else "Unknown")

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None, **_: Any
    ) -> Any:
        if connector_id != 0 and connector_id not in self.model.connectors:
            return result16.GetCompositeSchedule(status="Rejected")
        unit = charging_rate_unit or "W"
        now = self.station.now()
        periods = self.model.composite_schedule(connector_id, now, duration, unit)
        return result16.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=ts(now),
            charging_schedule={
                "duration": duration,
                "start_schedule": ts(now),
                "charging_rate_unit": unit,
                "charging_schedule_period": [{"start_period": p.start_s, "limit": p.limit} for p in periods],
            },
        )

    @on("UpdateFirmware")
    def on_update_firmware(self, location: str, retrieve_date: str, **_: Any) -> Any:
        self.station.update_firmware(location, parse_ts(retrieve_date), None)
        return result16.UpdateFirmware()

    @on("GetDiagnostics")
    def on_get_diagnostics(self, location: str, **_: Any) -> Any:
        return result16.GetDiagnostics(file_name=self.station.upload_diagnostics(location))

    @on("ReserveNow")
    def on_reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
        **_: Any,
    ) -> Any:
        expires = parse_ts(expiry_date)
        if expires is None:
            return result16.ReserveNow(status="Rejected")
        reservation = Reservation(reservation_id, connector_id, id_tag, expires, parent_id_tag)
        return result16.ReserveNow(status=self.station.reserve(reservation))

    @on("CancelReservation")
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        ok = self.model.cancel_reservation(reservation_id)
        return result16.CancelReservation(status="Accepted" if ok else "Rejected")

    @on("SendLocalList")
    def on_send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        entries = [
            (str(e["id_tag"]), (e.get("id_tag_info") or {}).get("status"))
            for e in local_authorization_list or []
        ]
        status = self.model.update_local_list(list_version, update_type == "Full", entries)
        return result16.SendLocalList(status=status)

    @on("GetLocalListVersion")
    def on_get_local_list_version(self, **_: Any) -> Any:
        enabled = self.model.setting_bool("LocalAuthListEnabled")
        return result16.GetLocalListVersion(list_version=self.model.local_list_version if enabled else -1)

    @on("ClearCache")
    def on_clear_cache(self, **_: Any) -> Any:
        self.model.auth_cache.clear()
        return result16.ClearCache(status="Accepted")

    @on("DataTransfer")
    def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None, **_: Any
    ) -> Any:
        if vendor_id != self.station.vendor:
            return result16.DataTransfer(status="UnknownVendorId")
        return result16.DataTransfer(status="Accepted", data=data)


# -- OCPP 2.0.1 -------------------------------------------------------------------------------------------------

_PURPOSE_201 = {
    "ChargingStationMaxProfile": ProfilePurpose.STATION_MAX,
    "TxDefaultProfile": ProfilePurpose.TX_DEFAULT,
    "TxProfile": ProfilePurpose.TX,
}
_STOPPED_REASON_201 = {
    StopReason.SOFT_RESET: "ImmediateReset",
    StopReason.HARD_RESET: "ImmediateReset",
    StopReason.UNLOCK_COMMAND: "Other",
}
_CHARGING_STATE_201 = {
    ConnectorStatus.CHARGING: "Charging",
    ConnectorStatus.SUSPENDED_EV: "SuspendedEV",
    ConnectorStatus.SUSPENDED_EVSE: "SuspendedEVSE",
}


def profile_from_201(data: dict[str, Any], evse_id: int) -> ChargingProfile | None:
    """A 2.0.1 chargingProfile as a model profile; None when it is not one we can apply."""
    purpose = _PURPOSE_201.get(str(data.get("charging_profile_purpose")))
    schedules = data.get("charging_schedule") or []
    if purpose is None or not schedules or not schedules[0].get("charging_schedule_period"):
        return None
    return _profile(data, schedules[0], int(data["id"]), evse_id, purpose)


def _id_token(id_tag: str, token_type: TokenType) -> dict[str, str]:
    return {"id_token": id_tag, "type": token_type.value}


def _status_201(status: ConnectorStatus, car: bool) -> str:
    # 2.0.1 knows only whether a cable is in: a remote start waiting for its car leaves the EVSE Available.
    if status is ConnectorStatus.PREPARING and not car:
        return "Available"
    return "Occupied" if is_busy(status) else status.value


class Station201(StationChargePoint, _ChargePoint201):  # type: ignore[misc]
    """A simulated OCPP 2.0.1 charging station (one connector per EVSE)."""

    version = "2.0.1"

    def __init__(
        self,
        station: SimulatedStation,
        connection: ClientConnection,
        *,
        response_timeout_s: float,
        validate: bool,
    ) -> None:
        super().__init__(station, connection, response_timeout_s=response_timeout_s, validate=validate)
        self._reported: dict[int, str] = {}  # the status last sent per EVSE

    def boot_request(self, reason: str) -> Any:
        s = self.station
        return call201.BootNotification(
            charging_station={
                "model": s.model_name,
                "vendor_name": s.vendor,
                "serial_number": s.serial_number,
                "firmware_version": s.firmware_version,
            },
            reason=reason,
        )

    def heartbeat_request(self) -> Any:
        return call201.Heartbeat()

    def status_requests(self, changed: StatusChanged) -> list[Any]:
        wire = self._wire_status(changed)
        self._reported[changed.connector] = wire
        return [
            call201.StatusNotification(
                timestamp=ts(changed.at), connector_status=wire, evse_id=changed.connector, connector_id=1
            )
        ]

    def _wire_status(self, changed: StatusChanged) -> str:
        conn = self.model.connectors.get(changed.connector)
        return _status_201(changed.status, conn is not None and conn.car is not None)

    def status_change_requests(self, changed: StatusChanged) -> list[Any]:
        if self._reported.get(changed.connector) == self._wire_status(changed):
            return []  # Preparing → Charging → Finishing are all Occupied here
        return self.status_requests(changed)

    def authorize_request(self, id_tag: str, token_type: TokenType) -> Any:
        return call201.Authorize(id_token=_id_token(id_tag, token_type))

    def authorize_answer(self, result: Any) -> bool:
        return bool(result.id_token_info.get("status") == "Accepted")

    def _meter_value(self, sample: MeterSample, context: str, measurands: str) -> dict[str, Any]:
        return {
            "timestamp": ts(sample.at),
            "sampled_value": _sampled_values(sample, context, measurands, numeric=True),
        }

    def tx_request(self, event: TxEvent) -> Any | None:
        session = event.session
        info: dict[str, Any] = {
            "transaction_id": str(session.transaction_id),
            "time_spent_charging": round(session.charging_s),
        }
        id_token = None
        measurands = self.model.config["MeterValuesSampledData"]
        if event.kind is TxEventKind.STARTED:
            info["remote_start_id"] = session.remote_start_id
            id_token = _id_token(session.id_tag, session.token_type)
        if event.kind is TxEventKind.ENDED:
            reason = session.stop_reason or StopReason.OTHER
            info["stopped_reason"] = _STOPPED_REASON_201.get(reason, reason.value)
            info["charging_state"] = "Idle" if event.trigger is Trigger.EV_LEFT else "EVConnected"
            measurands = self.model.config["StopTxnSampledData"]
            if event.trigger is Trigger.STOP_AUTHORIZED:
                id_token = _id_token(session.id_tag, session.token_type)
        else:
            info["charging_state"] = _CHARGING_STATE_201.get(event.charging_state, "EVConnected")
        return call201.TransactionEvent(
            event_type=event.kind.value,
            timestamp=ts(event.at),
            trigger_reason=event.trigger.value,
            seq_no=event.seq_no,
            transaction_info=info,
            meter_value=[self._meter_value(event.sample, _context(event), measurands)],
            offline=True if event.offline else None,
            number_of_phases_used=event.sample.phases or None,
            reservation_id=session.reservation_id if event.kind is TxEventKind.STARTED else None,
            evse={"id": session.connector, "connector_id": 1},
            id_token=id_token,
        )

    def tx_answer(self, event: TxEvent, result: Any) -> bool | None:
        info = getattr(result, "id_token_info", None)
        if isinstance(info, dict) and "status" in info:
            return bool(info["status"] == "Accepted")
        return None

    def meter_values_request(self, connector: int, sample: MeterSample) -> Any:
        measurands = self.model.config["MeterValuesSampledData"]
        return call201.MeterValues(
            evse_id=connector, meter_value=[self._meter_value(sample, "Trigger", measurands)]
        )

    def firmware_status_request(self, status: str, request_id: int | None) -> Any:
        return call201.FirmwareStatusNotification(status=status, request_id=request_id)

    def notify_report_requests(self, request_id: int, base: str) -> list[Any]:
        """The NotifyReports of a GetBaseReport, in messages of at most a few items."""
        items: list[dict[str, Any]] = []
        for setting in SETTINGS:
            if setting.component is None or setting.variable is None:
                continue
            if base == "ConfigurationInventory" and setting.readonly:
                continue
            variable: dict[str, Any] = {"name": setting.variable}
            if setting.instance:
                variable["instance"] = setting.instance
            items.append(
                {
                    "component": {"name": setting.component},
                    "variable": variable,
                    "variable_attribute": [
                        {
                            "type": "Actual",
                            "value": self._settings_value(setting),
                            "mutability": "ReadOnly" if setting.readonly else "ReadWrite",
                        }
                    ],
                    "variable_characteristics": {"data_type": setting.kind, "supports_monitoring": False},
                }
            )
        if base != "ConfigurationInventory":
            for conn in self.model.connectors.values():
                state = (
                    "Unavailable"
                    if not conn.operative
                    else "Occupied"
                    if is_busy(conn.status)
                    else "Available"
                )
                for name, value, kind in (
                    ("AvailabilityState", state, "OptionList"),
                    ("Power", f"{self.model.max_power_w:g}", "decimal"),
                ):
                    items.append(
                        {
                            "component": {"name": "EVSE", "evse": {"id": conn.id}},
                            "variable": {"name": name},
                            "variable_attribute": [
                                {
                                    "type": "MaxSet" if name == "Power" else "Actual",
                                    "value": value,
                                    "mutability": "ReadOnly",
                                }
                            ],
                            "variable_characteristics": {"data_type": kind, "supports_monitoring": False},
                        }
                    )
        chunks = [
            items[i : i + _REPORT_ITEMS_PER_MESSAGE] for i in range(0, len(items), _REPORT_ITEMS_PER_MESSAGE)
        ]
        generated = ts(self.station.now())
        return [
            call201.NotifyReport(
                request_id=request_id,
                generated_at=generated,
                seq_no=n,
                report_data=chunk,
                tbc=True if n < len(chunks) - 1 else None,
            )
            for n, chunk in enumerate(chunks)
        ]

    def _settings_value(self, setting: Setting) -> str:
        if setting.key == "ChargingScheduleAllowedChargingRateUnit":
            return "A,W"
        return super()._settings_value(setting)

    def _find_setting(
        self, component: dict[str, Any], variable: dict[str, Any]
    ) -> tuple[Setting | None, str]:
        """The setting a component/variable pair names, or None with the reason."""
        name = component.get("name")
        same_component = [s for s in SETTINGS if s.component == name]
        if not same_component:
            return None, "UnknownComponent"
        for setting in same_component:
            if setting.variable == variable.get("name") and setting.instance == variable.get("instance"):
                return setting, "Accepted"
        return None, "UnknownVariable"

    # -- handlers -------------------------------------------------------------------------------------------

    @on("RequestStartTransaction")
    def on_request_start(
        self,
        id_token: dict[str, Any],
        remote_start_id: int,
        evse_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        profile = None
        if charging_profile is not None:
            profile = profile_from_201(charging_profile, evse_id or 0)
            if profile is None or profile.purpose is not ProfilePurpose.TX:
                return result201.RequestStartTransaction(status="Rejected")
        try:
            token_type = TokenType(id_token.get("type", "Central"))
        except ValueError:
            token_type = TokenType.CENTRAL
        ok = self.station.remote_start(
            str(id_token["id_token"]), token_type, evse_id, remote_start_id, profile
        )
        return result201.RequestStartTransaction(status="Accepted" if ok else "Rejected")

    @on("RequestStopTransaction")
    def on_request_stop(self, transaction_id: str, **_: Any) -> Any:
        ok = self.station.remote_stop(transaction_id)
        return result201.RequestStopTransaction(status="Accepted" if ok else "Rejected")

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in get_variable_data:
            component, variable = item["component"], item["variable"]
            setting, status = self._find_setting(component, variable)
            attribute = item.get("attribute_type", "Actual")
            result: dict[str, Any] = {
                "component": component,
                "variable": variable,
                "attribute_type": attribute,
            }
            if setting is not None and attribute != "Actual":
                status = "NotSupportedAttributeType"
            result["attribute_status"] = status
            if setting is not None and status == "Accepted":
                result["attribute_value"] = self._settings_value(setting)
            results.append(result)
        return result201.GetVariables(get_variable_result=results)

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in set_variable_data:
            component, variable = item["component"], item["variable"]
            setting, status = self._find_setting(component, variable)
            attribute = item.get("attribute_type", "Actual")
            if setting is not None:
                if attribute != "Actual":
                    status = "NotSupportedAttributeType"
                else:
                    changed = self.station.change_setting(setting.key, str(item["attribute_value"]))
                    status = "Accepted" if changed == "Accepted" else "Rejected"
            results.append(
                {
                    "component": component,
                    "variable": variable,
                    "attribute_type": attribute,
                    "attribute_status": status,
                }
            )
        return result201.SetVariables(set_variable_result=results)

    @on("GetBaseReport")
    def on_get_base_report(self, request_id: int, report_base: str, **_: Any) -> Any:
        requests = self.notify_report_requests(request_id, report_base)
        self.then(lambda: self.station.send_all(requests))
        return result201.GetBaseReport(status="Accepted")

    @on("Reset")
    def on_reset(self, type: str, evse_id: int | None = None, **_: Any) -> Any:
        if evse_id is not None:
            return result201.Reset(status="Rejected")  # resetting one EVSE is optional and not simulated
        return result201.Reset(status=self.station.reset(StopReason.SOFT_RESET, on_idle=type == "OnIdle"))

    @on("SetChargingProfile")
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any], **_: Any) -> Any:
        profile = profile_from_201(charging_profile, evse_id)
        ok = profile is not None and self.station.accepts_profiles and self.station.set_profile(profile)
        return result201.SetChargingProfile(status="Accepted" if ok else "Rejected")

    @on("ClearChargingProfile")
    def on_clear_charging_profile(
        self,
        charging_profile_id: int | None = None,
        charging_profile_criteria: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        criteria = charging_profile_criteria or {}
        ok = self.station.clear_profiles(
            profile_id=charging_profile_id,
            connector=criteria.get("evse_id"),
            purpose=_PURPOSE_201.get(criteria.get("charging_profile_purpose") or ""),
            stack_level=criteria.get("stack_level"),
        )
        return result201.ClearChargingProfile(status="Accepted" if ok else "Unknown")

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(
        self, duration: int, evse_id: int, charging_rate_unit: str | None = None, **_: Any
    ) -> Any:
        if evse_id != 0 and evse_id not in self.model.connectors:
            return result201.GetCompositeSchedule(status="Rejected")
        unit = charging_rate_unit or "W"
        now = self.station.now()
        periods = self.model.composite_schedule(evse_id, now, duration, unit)
        return result201.GetCompositeSchedule(
            status="Accepted",
            schedule={
                "evse_id": evse_id,
                "duration": duration,
                "schedule_start": ts(now),
                "charging_rate_unit": unit,
                "charging_schedule_period": [{"start_period": p.start_s, "limit": p.limit} for p in periods],
            },
        )

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any) -> Any:
        connector = int(evse["id"]) if evse else None
        return result201.TriggerMessage(status=self._trigger(requested_message, connector))

    @on("UpdateFirmware")
    def on_update_firmware(self, request_id: int, firmware: dict[str, Any], **_: Any) -> Any:
        self.station.update_firmware(
            str(firmware["location"]), parse_ts(firmware.get("retrieve_date_time")), request_id
        )
        return result201.UpdateFirmware(status="Accepted")

    @on("ReserveNow")
    def on_reserve_now(
        self, id: int, expiry_date_time: str, id_token: dict[str, Any], evse_id: int | None = None, **_: Any
    ) -> Any:
        expires = parse_ts(expiry_date_time)
        if expires is None:
            return result201.ReserveNow(status="Rejected")
        reservation = Reservation(id, evse_id or 0, str(id_token["id_token"]), expires)
        return result201.ReserveNow(status=self.station.reserve(reservation))

    @on("CancelReservation")
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        ok = self.model.cancel_reservation(reservation_id)
        return result201.CancelReservation(status="Accepted" if ok else "Rejected")

    @on("ChangeAvailability")
    def on_change_availability(
        self, operational_status: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> Any:
        connector = int(evse["id"]) if evse else 0
        status = self.station.change_availability(connector, operational_status == "Operative")
        return result201.ChangeAvailability(status=status)

    @on("UnlockConnector")
    def on_unlock_connector(self, evse_id: int, connector_id: int, **_: Any) -> Any:
        conn = self.model.connectors.get(evse_id)
        if conn is None or connector_id != 1:
            return result201.UnlockConnector(status="UnknownConnector")
        if conn.session is not None:
            return result201.UnlockConnector(status="OngoingAuthorizedTransaction")
        self.station.unlock(evse_id, stop=False)
        return result201.UnlockConnector(status="Unlocked")

    @on("SendLocalList")
    def on_send_local_list(
        self,
        version_number: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        entries = [
            (str(e["id_token"]["id_token"]), (e.get("id_token_info") or {}).get("status"))
            for e in local_authorization_list or []
        ]
        status = self.model.update_local_list(version_number, update_type == "Full", entries)
        return result201.SendLocalList(status=status)

    @on("GetLocalListVersion")
    def on_get_local_list_version(self, **_: Any) -> Any:
        return result201.GetLocalListVersion(version_number=self.model.local_list_version)

    @on("ClearCache")
    def on_clear_cache(self, **_: Any) -> Any:
        self.model.auth_cache.clear()
        return result201.ClearCache(status="Accepted")

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, data: Any = None, **_: Any) -> Any:
        if vendor_id != self.station.vendor:
            return result201.DataTransfer(status="UnknownVendorId")
        return result201.DataTransfer(status="Accepted", data=data)


STATION_CLASSES: dict[str, type[StationChargePoint]] = {"1.6": Station16, "2.0.1": Station201}
SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}
