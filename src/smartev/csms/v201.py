"""OCPP 2.0.1 adapter: thin `@on` handlers into the stations and sessions services, and 2.0.1 CALLs out.

2.0.1 stations create their transaction ids; the central system binds each to the station that sent it
and applies TransactionEvents once, by seqNo, never reopening an ended transaction.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
from datetime import datetime
from typing import Any

from ocpp.routing import on
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action, MessageTriggerEnumType

from smartev.clock import ms_to_datetime
from smartev.csms.control import ChargingLimit, ResetKind, reading, rfc3339, timestamp_ms
from smartev.csms.link import StationLink
from smartev.csms.models import IdTag
from smartev.csms.runtime import Services
from smartev.csms.sessions import Authorization, Reading

logger = logging.getLogger(__name__)

# our tag kinds -> 2.0.1 IdTokenEnumType
TOKEN_TYPES = {"rfid": "ISO14443", "vin": "Central", "evccid": "MacAddress", "emaid": "eMAID"}


# what a 2.0.1 message can carry (string(50) names and instances, string(1000) values)
NAME_MAX, VALUE_MAX = 50, 1000
TRIGGERS = tuple(t.value for t in MessageTriggerEnumType)
# Component[instance].Variable[instance]; names are what OCPP's device model uses: letters, digits, _ and -
_NAME, _INSTANCE = rf"([A-Za-z0-9_-]{{1,{NAME_MAX}}})", rf"(?:\[([^\[\]]{{1,{NAME_MAX}}})\])?"
_KEY = re.compile(rf"{_NAME}{_INSTANCE}\.{_NAME}{_INSTANCE}")


def _token_info(auth: Authorization) -> dict[str, Any]:
    info: dict[str, Any] = {"status": auth.status}
    if auth.accepted and auth.expiry_ms is not None:
        info["cache_expiry_date_time"] = rfc3339(ms_to_datetime(auth.expiry_ms))
    return info


def _token(tag: str, known: IdTag | None) -> dict[str, Any]:
    """The IdTokenType of a tag: a registered card is ISO14443 and so on by its kind; others are Central."""
    return {"id_token": tag, "type": TOKEN_TYPES.get(known.kind, "Central") if known else "Central"}


def _readings(meter_value: list[dict[str, Any]] | None, default_ms: int) -> list[Reading]:
    out = []
    for mv in meter_value or []:
        values = []
        for sv in mv.get("sampled_value", []):
            unit = sv.get("unit_of_measure") or {}
            value = float(sv["value"]) * 10 ** int(unit.get("multiplier", 0))
            if not math.isfinite(value):
                continue
            values.append(
                (
                    sv.get("measurand", "Energy.Active.Import.Register"),
                    sv.get("phase"),
                    value,
                    unit.get("unit"),
                )
            )
        out.append(reading(timestamp_ms(mv.get("timestamp"), default_ms), values))
    return out


def check_setting(key: str, value: str) -> None:
    """ValueError unless SetVariables can carry this key (Component.Variable) and value."""
    _split_key(key)
    if len(value) > VALUE_MAX:
        raise ValueError(f"OCPP 2.0.1 carries values of at most {VALUE_MAX} characters, not {len(value)}")


def _variable_key(component: dict[str, Any], variable: dict[str, Any]) -> str:
    """Component[instance].Variable[instance], the instances only when present; `_split_key` reads it back."""

    def named(item: dict[str, Any]) -> str:
        return f"{item['name']}[{item['instance']}]" if item.get("instance") else str(item["name"])

    return f"{named(component)}.{named(variable)}"


def _split_key(key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ComponentType and VariableType a key names; ValueError when it is not Component.Variable."""
    match = _KEY.fullmatch(key)
    if match is None:
        raise ValueError(
            "a 2.0.1 setting is Component.Variable (each up to 50 letters, digits, _ or -, optionally with "
            f"an [instance]), e.g. OCPPCommCtrlr.HeartbeatInterval; not {key[:120]!r}"
        )
    component_name, component_instance, variable_name, variable_instance = match.groups()
    component: dict[str, Any] = {"name": component_name}
    variable: dict[str, Any] = {"name": variable_name}
    if component_instance:
        component["instance"] = component_instance
    if variable_instance:
        variable["instance"] = variable_instance
    return component, variable


class Station201(StationLink):
    """A connected OCPP 2.0.1 station."""

    version = "ocpp2.0.1"
    _ocpp_version = "2.0.1"
    _call = call
    _call_result = call_result

    def __init__(self, station_id: str, connection: Any, services: Services) -> None:
        super().__init__(station_id, connection, services)
        self._reports: dict[int, tuple[asyncio.Future[dict[str, Any]], dict[str, Any]]] = {}

    # --- from the station ---

    @on(Action.boot_notification)
    async def on_boot(
        self, charging_station: dict[str, Any], reason: str, **_: Any
    ) -> call_result.BootNotification:
        return self.accept_boot(
            charging_station["vendor_name"],
            charging_station["model"],
            charging_station.get("serial_number"),
            charging_station.get("firmware_version"),
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return self.answer_heartbeat()

    @on(Action.status_notification)
    async def on_status(
        self, timestamp: str, connector_status: str, evse_id: int, connector_id: int, **_: Any
    ) -> call_result.StatusNotification:
        at = timestamp_ms(timestamp, self.s.clock.now_ms())
        self.s.connector_status(self.id, evse_id, connector_id, connector_status, None, at)
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_token: dict[str, Any], **_: Any) -> call_result.Authorize:
        return call_result.Authorize(
            id_token_info=_token_info(self.s.sessions.authorize(id_token["id_token"]))
        )

    @on(Action.transaction_event)
    async def on_transaction_event(
        self,
        event_type: str,
        timestamp: str,
        trigger_reason: str,
        seq_no: int,
        transaction_info: dict[str, Any],
        offline: bool = False,
        evse: dict[str, Any] | None = None,
        id_token: dict[str, Any] | None = None,
        meter_value: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> call_result.TransactionEvent:
        now = self.s.clock.now_ms()
        tag = id_token["id_token"] if id_token and id_token.get("type") != "NoAuthorization" else None
        ref = await self.s.sessions.event(
            self.s.stations.get(self.id),
            event_type=event_type,
            transaction_id=transaction_info["transaction_id"],
            seq_no=seq_no,
            ts_ms=timestamp_ms(timestamp, now),
            offline=offline,
            evse_id=evse["id"] if evse else None,
            connector_id=evse.get("connector_id") if evse else None,
            id_tag=tag,
            readings=_readings(meter_value, now),
            stopped_reason=transaction_info.get("stopped_reason"),
            remote_start_id=transaction_info.get("remote_start_id"),
            trigger_reason=trigger_reason,
        )
        if id_token is not None:
            return call_result.TransactionEvent(id_token_info=_token_info(ref.authorization))
        return call_result.TransactionEvent()

    @on(Action.meter_values)
    async def on_meter_values(
        self, evse_id: int, meter_value: list[dict[str, Any]], **_: Any
    ) -> call_result.MeterValues:
        # 2.0.1 sends a transaction's readings in TransactionEvents; MeterValues are the EVSE's own
        logger.debug("station %s EVSE %s meter values outside a transaction", self.id, evse_id)
        return call_result.MeterValues()

    @on(Action.notify_report)
    async def on_notify_report(
        self,
        request_id: int,
        generated_at: str,
        seq_no: int,
        tbc: bool = False,
        report_data: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> call_result.NotifyReport:
        pending = self._reports.get(request_id)
        values: dict[str, Any] = pending[1] if pending else {}
        for item in report_data or []:
            for attribute in item.get("variable_attribute", []):
                if attribute.get("type", "Actual") == "Actual":
                    values[_variable_key(item["component"], item["variable"])] = {
                        "value": attribute.get("value"),
                        "readonly": attribute.get("mutability") == "ReadOnly",
                    }
        if not tbc:
            if pending is not None and not pending[0].done():
                pending[0].set_result(values)
            self.s.stations.configuration_read(self.id, values)
        return call_result.NotifyReport()

    @on(Action.firmware_status_notification)
    async def on_firmware_status(self, status: str, **_: Any) -> call_result.FirmwareStatusNotification:
        self.s.firmware_status(self.id, status)
        return call_result.FirmwareStatusNotification()

    @on(Action.security_event_notification)
    async def on_security_event(
        self, type: str, timestamp: str, **_: Any
    ) -> call_result.SecurityEventNotification:
        logger.warning("station %s security event: %s", self.id, type)
        return call_result.SecurityEventNotification()

    @on(Action.notify_event)
    async def on_notify_event(self, **_: Any) -> call_result.NotifyEvent:
        return call_result.NotifyEvent()

    @on(Action.log_status_notification)
    async def on_log_status(self, status: str, **_: Any) -> call_result.LogStatusNotification:
        logger.info("station %s log upload: %s", self.id, status)
        return call_result.LogStatusNotification()

    # --- to the station (ChargerControl) ---

    async def remote_start(self, id_tag: str, evse_id: int | None, remote_start_id: int) -> str:
        r = await self.ask(
            call.RequestStartTransaction(
                id_token=_token(id_tag, self.s.sessions.tag(id_tag)),
                remote_start_id=remote_start_id,
                evse_id=evse_id,
            )
        )
        return str(r.status)

    async def remote_stop(self, transaction_id: str) -> str:
        r = await self.ask(call.RequestStopTransaction(transaction_id=transaction_id))
        return str(r.status)

    async def reset(self, kind: ResetKind) -> str:
        r = await self.ask(call.Reset(type="OnIdle" if kind == "soft" else "Immediate"))
        return str(r.status)

    async def unlock(self, evse_id: int, connector_id: int) -> str:
        r = await self.ask(call.UnlockConnector(evse_id=evse_id, connector_id=connector_id))
        return str(r.status)

    async def change_availability(self, evse_id: int, operative: bool) -> str:
        r = await self.ask(
            call.ChangeAvailability(
                operational_status="Operative" if operative else "Inoperative",
                evse={"id": evse_id} if evse_id else None,
            )
        )
        return str(r.status)

    async def get_configuration(self, keys: list[str] | None) -> dict[str, Any]:
        if keys is None:
            request_id = secrets.randbelow(2**31 - 1)
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._reports[request_id] = (future, {})
            try:
                r = await self.ask(
                    call.GetBaseReport(request_id=request_id, report_base="ConfigurationInventory")
                )
                if r.status not in ("Accepted", "EmptyResultSet"):
                    return {"values": {}, "unknown": [], "status": str(r.status)}
                if r.status == "EmptyResultSet":
                    return {"values": {}, "unknown": []}
                values = await asyncio.wait_for(future, self.s.response_timeout_s)
            finally:
                self._reports.pop(request_id, None)
            return {"values": values, "unknown": []}
        data = []
        for key in keys:
            component, variable = _split_key(key)
            data.append({"component": component, "variable": variable})
        r = await self.ask(call.GetVariables(get_variable_data=data))
        values, unknown = {}, []
        for item in r.get_variable_result:
            key = _variable_key(item["component"], item["variable"])
            if item["attribute_status"] == "Accepted":
                values[key] = {"value": item.get("attribute_value"), "readonly": None}
            else:
                unknown.append(key)
        return {"values": values, "unknown": unknown}

    async def set_configuration(self, key: str, value: str) -> str:
        check_setting(key, value)
        component, variable = _split_key(key)
        r = await self.ask(
            call.SetVariables(
                set_variable_data=[{"attribute_value": value, "component": component, "variable": variable}]
            )
        )
        return str(r.set_variable_result[0]["attribute_status"])

    async def trigger(self, message: str, evse_id: int | None) -> str:
        if message not in TRIGGERS:
            raise ValueError(f"an OCPP 2.0.1 station can be asked for {', '.join(TRIGGERS)}; not {message!r}")
        r = await self.ask(
            call.TriggerMessage(requested_message=message, evse={"id": evse_id} if evse_id else None)
        )
        return str(r.status)

    async def set_charging_limit(self, limit: ChargingLimit) -> str:
        schedule: dict[str, Any] = {
            "id": limit.profile_id,
            "charging_rate_unit": limit.unit,
            "charging_schedule_period": [{"start_period": 0, "limit": round(limit.limit, 1)}],
        }
        if limit.duration_s:
            schedule["duration"] = limit.duration_s
        else:
            schedule["start_schedule"] = self.s.now_text()
        profile: dict[str, Any] = {
            "id": limit.profile_id,
            "stack_level": limit.stack_level,
            "charging_profile_purpose": "ChargingStationMaxProfile"
            if limit.purpose == "ChargePointMaxProfile"
            else limit.purpose,
            "charging_profile_kind": "Relative" if limit.duration_s else "Absolute",
            "charging_schedule": [schedule],
        }
        if limit.transaction_id is not None:
            profile["transaction_id"] = limit.transaction_id
        r = await self.ask(call.SetChargingProfile(evse_id=limit.evse_id, charging_profile=profile))
        return str(r.status)

    async def clear_charging_limit(self, evse_id: int | None, profile_id: int | None) -> str:
        criteria = {"evse_id": evse_id} if evse_id is not None and profile_id is None else None
        r = await self.ask(
            call.ClearChargingProfile(charging_profile_id=profile_id, charging_profile_criteria=criteria)
        )
        return str(r.status)

    async def composite_schedule(self, evse_id: int, duration_s: int, unit: str | None) -> dict[str, Any]:
        r = await self.ask(
            call.GetCompositeSchedule(duration=duration_s, evse_id=evse_id, charging_rate_unit=unit)
        )
        return {"status": str(r.status), "schedule": r.schedule, "start": None}

    async def update_firmware(self, location: str, retrieve_at: datetime, request_id: int) -> str:
        r = await self.ask(
            call.UpdateFirmware(
                request_id=request_id,
                firmware={"location": location, "retrieve_date_time": rfc3339(retrieve_at)},
            )
        )
        return str(r.status)

    async def reserve(self, reservation_id: int, evse_id: int, id_tag: str, expires_at: datetime) -> str:
        r = await self.ask(
            call.ReserveNow(
                id=reservation_id,
                expiry_date_time=rfc3339(expires_at),
                id_token=_token(id_tag, self.s.sessions.tag(id_tag)),
                evse_id=evse_id or None,
            )
        )
        return str(r.status)

    async def cancel_reservation(self, reservation_id: int) -> str:
        r = await self.ask(call.CancelReservation(reservation_id=reservation_id))
        return str(r.status)

    async def send_local_list(self, version: int, entries: list[tuple[str, str]]) -> str:
        items = []
        for tag, status in entries:
            info = _token_info(self.s.sessions.authorize(tag))
            info["status"] = status
            items.append({"id_token": _token(tag, self.s.sessions.tag(tag)), "id_token_info": info})
        r = await self.ask(
            call.SendLocalList(version_number=version, update_type="Full", local_authorization_list=items)
        )
        return str(r.status)
