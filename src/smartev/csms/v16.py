"""OCPP 1.6J adapter: thin `@on` handlers into the stations and sessions services, and 1.6 CALLs out.

1.6 connector N is stored as EVSE N, connector 1 (connector 0 is the station itself: EVSE 0, connector 0).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Any

import orjson
from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action

from smartev.clock import ms_to_datetime
from smartev.csms.control import ChargingLimit, ResetKind, reading, rfc3339, timestamp_ms
from smartev.csms.link import StationLink
from smartev.csms.sessions import Authorization, Reading

logger = logging.getLogger(__name__)


# what a 1.6 message can carry (CiString20 id tags, CiString50 keys, CiString500 values)
ID_TAG_MAX, KEY_MAX, VALUE_MAX = 20, 50, 500
TRIGGERS = (
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
)


def _tag_info(auth: Authorization) -> dict[str, Any]:
    info: dict[str, Any] = {"status": auth.status}
    if auth.accepted and auth.expiry_ms is not None:
        info["expiry_date"] = rfc3339(ms_to_datetime(auth.expiry_ms))  # stations cache it no longer
    return info


def _check_length(what: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise ValueError(f"OCPP 1.6 carries {what} of at most {limit} characters, not {len(text)}")


def check_setting(key: str, value: str) -> None:
    """ValueError unless ChangeConfiguration can carry this key and value."""
    _check_length("configuration keys", key, KEY_MAX)
    _check_length("configuration values", value, VALUE_MAX)


def _readings(meter_value: list[dict[str, Any]] | None, default_ms: int) -> list[Reading]:
    out = []
    for mv in meter_value or []:
        values = []
        for sv in mv.get("sampled_value", []):
            if sv.get("format") == "SignedData":
                continue
            try:
                value = float(sv["value"])
            except ValueError:
                continue  # a value that is not a number (the schema allows any string)
            if not math.isfinite(value):
                continue  # "NaN" and "inf" parse as floats but are no reading

            values.append(
                (sv.get("measurand", "Energy.Active.Import.Register"), sv.get("phase"), value, sv.get("unit"))
            )
        out.append(reading(timestamp_ms(mv.get("timestamp"), default_ms), values))
    return out


class Station16(StationLink):
    """A connected OCPP 1.6J station."""

    version = "ocpp1.6"
    _ocpp_version = "1.6"
    _call = call
    _call_result = call_result

    # --- from the station ---

    @on(Action.boot_notification)
    async def on_boot(
        self,
        charge_point_vendor: str,
        charge_point_model: str,
        charge_point_serial_number: str | None = None,
        firmware_version: str | None = None,
        **_: Any,
    ) -> call_result.BootNotification:
        return self.accept_boot(
            charge_point_vendor, charge_point_model, charge_point_serial_number, firmware_version
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return self.answer_heartbeat()

    @on(Action.status_notification)
    async def on_status(
        self, connector_id: int, error_code: str, status: str, timestamp: str | None = None, **_: Any
    ) -> call_result.StatusNotification:
        at = timestamp_ms(timestamp, self.s.clock.now_ms())
        connector = 0 if connector_id == 0 else 1
        error = None if error_code == "NoError" else error_code
        self.s.connector_status(self.id, connector_id, connector, status, error, at)
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=_tag_info(self.s.sessions.authorize(id_tag)))

    @on(Action.start_transaction)
    async def on_start(
        self,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None = None,
        **_: Any,
    ) -> call_result.StartTransaction:
        station = self.s.stations.get(self.id)
        ts = timestamp_ms(timestamp, self.s.clock.now_ms())
        ref = await self.s.sessions.start(
            station,
            protocol=self.version,
            evse_id=connector_id,
            connector_id=1,
            id_tag=id_tag,
            meter_start_wh=float(meter_start),
            ts_ms=ts,
            # the same start sent again (its answer was lost) finds the session it opened
            start_key=f"{self.id}|{connector_id}|{id_tag}|{ts}|{meter_start}",
        )
        return call_result.StartTransaction(
            transaction_id=int(ref.transaction_id), id_tag_info=_tag_info(ref.authorization)
        )

    @on(Action.meter_values)
    async def on_meter_values(
        self,
        connector_id: int,
        meter_value: list[dict[str, Any]],
        transaction_id: int | None = None,
        **_: Any,
    ) -> call_result.MeterValues:
        readings = _readings(meter_value, self.s.clock.now_ms())
        if transaction_id is not None:
            if await self.s.sessions.meter(self.id, str(transaction_id), readings) is None:
                logger.warning("station %s sent meter values for a transaction it does not have", self.id)
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    async def on_stop(
        self,
        meter_stop: int,
        timestamp: str,
        transaction_id: int,
        reason: str | None = None,
        id_tag: str | None = None,
        transaction_data: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> call_result.StopTransaction:
        now = self.s.clock.now_ms()
        ref = await self.s.sessions.stop(
            self.id,
            str(transaction_id),
            meter_stop_wh=float(meter_stop),
            ts_ms=timestamp_ms(timestamp, now),
            reason=reason or "Local",
            readings=_readings(transaction_data, now),
        )
        if ref is None:
            logger.warning("station %s tried to stop transaction it does not have", self.id)
            return call_result.StopTransaction(id_tag_info={"status": "Invalid"})
        if id_tag:
            return call_result.StopTransaction(id_tag_info=_tag_info(self.s.sessions.authorize(id_tag)))
        return call_result.StopTransaction()

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **_: Any) -> call_result.DataTransfer:
        logger.info("station %s sent a DataTransfer for vendor %s, which we do not know", self.id, vendor_id)
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.firmware_status_notification)
    async def on_firmware_status(self, status: str) -> call_result.FirmwareStatusNotification:
        self.s.firmware_status(self.id, status)
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status(self, status: str) -> call_result.DiagnosticsStatusNotification:
        logger.info("station %s diagnostics upload: %s", self.id, status)
        return call_result.DiagnosticsStatusNotification()

    # --- to the station (ChargerControl) ---

    async def remote_start(self, id_tag: str, evse_id: int | None, remote_start_id: int) -> str:
        _check_length("id tags", id_tag, ID_TAG_MAX)
        r = await self.ask(call.RemoteStartTransaction(id_tag=id_tag, connector_id=evse_id))
        return str(r.status)

    async def remote_stop(self, transaction_id: str) -> str:
        r = await self.ask(call.RemoteStopTransaction(transaction_id=int(transaction_id)))
        return str(r.status)

    async def reset(self, kind: ResetKind) -> str:
        r = await self.ask(call.Reset(type="Soft" if kind == "soft" else "Hard"))
        return str(r.status)

    async def unlock(self, evse_id: int, connector_id: int) -> str:
        r = await self.ask(call.UnlockConnector(connector_id=evse_id))
        return str(r.status)

    async def change_availability(self, evse_id: int, operative: bool) -> str:
        kind = "Operative" if operative else "Inoperative"
        r = await self.ask(call.ChangeAvailability(connector_id=evse_id, type=kind))
        return str(r.status)

    async def get_configuration(self, keys: list[str] | None) -> dict[str, Any]:
        for key in keys or ():
            _check_length("configuration keys", key, KEY_MAX)
        r = await self.ask(call.GetConfiguration(key=keys))
        values = {
            item["key"]: {"value": item.get("value"), "readonly": item["readonly"]}
            for item in (r.configuration_key or [])
        }
        if keys is None:
            self.s.stations.configuration_read(self.id, values)
        return {"values": values, "unknown": list(r.unknown_key or [])}

    async def set_configuration(self, key: str, value: str) -> str:
        check_setting(key, value)
        r = await self.ask(call.ChangeConfiguration(key=key, value=value))
        return str(r.status)

    async def trigger(self, message: str, evse_id: int | None) -> str:
        if message not in TRIGGERS:
            raise ValueError(f"an OCPP 1.6 station can be asked for {', '.join(TRIGGERS)}; not {message!r}")
        r = await self.ask(call.TriggerMessage(requested_message=message, connector_id=evse_id))
        return str(r.status)

    async def set_charging_limit(self, limit: ChargingLimit) -> str:
        schedule: dict[str, Any] = {
            "charging_rate_unit": limit.unit,
            "charging_schedule_period": [{"start_period": 0, "limit": round(limit.limit, 1)}],
        }
        if limit.duration_s:
            schedule["duration"] = limit.duration_s
        profile: dict[str, Any] = {
            "charging_profile_id": limit.profile_id,
            "stack_level": limit.stack_level,
            "charging_profile_purpose": limit.purpose,
            "charging_profile_kind": "Relative" if limit.duration_s else "Absolute",
            "charging_schedule": schedule,
        }
        if not limit.duration_s:
            schedule["start_schedule"] = self.s.now_text()
        if limit.transaction_id is not None:
            profile["transaction_id"] = int(limit.transaction_id)
        r = await self.ask(call.SetChargingProfile(connector_id=limit.evse_id, cs_charging_profiles=profile))
        return str(r.status)

    async def clear_charging_limit(self, evse_id: int | None, profile_id: int | None) -> str:
        r = await self.ask(call.ClearChargingProfile(id=profile_id, connector_id=evse_id))
        return str(r.status)

    async def composite_schedule(self, evse_id: int, duration_s: int, unit: str | None) -> dict[str, Any]:
        r = await self.ask(
            call.GetCompositeSchedule(connector_id=evse_id, duration=duration_s, charging_rate_unit=unit)
        )
        # the library reads this answer's numbers as Decimal (to check their one decimal place): JSON wants floats
        schedule = (
            orjson.loads(orjson.dumps(r.charging_schedule, default=float)) if r.charging_schedule else None
        )
        return {"status": str(r.status), "schedule": schedule, "start": r.schedule_start}

    async def update_firmware(self, location: str, retrieve_at: datetime, request_id: int) -> str:
        await self.ask(call.UpdateFirmware(location=location, retrieve_date=rfc3339(retrieve_at)))
        return "Accepted"  # 1.6's UpdateFirmware.conf has no status; progress comes as notifications

    async def reserve(self, reservation_id: int, evse_id: int, id_tag: str, expires_at: datetime) -> str:
        _check_length("id tags", id_tag, ID_TAG_MAX)
        r = await self.ask(
            call.ReserveNow(
                connector_id=evse_id,
                expiry_date=rfc3339(expires_at),
                id_tag=id_tag,
                reservation_id=reservation_id,
            )
        )
        return str(r.status)

    async def cancel_reservation(self, reservation_id: int) -> str:
        r = await self.ask(call.CancelReservation(reservation_id=reservation_id))
        return str(r.status)

    async def send_local_list(self, version: int, entries: list[tuple[str, str]]) -> str:
        items = []
        for tag, status in entries:
            if len(tag) > ID_TAG_MAX:
                logger.info(
                    "id tag %s... is too long for OCPP 1.6: left out of %s's local list", tag[:8], self.id
                )
                continue
            info = _tag_info(self.s.sessions.authorize(tag))
            info["status"] = status
            items.append({"id_tag": tag, "id_tag_info": info})
        r = await self.ask(
            call.SendLocalList(list_version=version, update_type="Full", local_authorization_list=items)
        )
        return str(r.status)

    async def get_diagnostics(self, location: str) -> str | None:
        """Ask for a diagnostics upload to `location`; returns the file name the station will upload."""
        r = await self.ask(call.GetDiagnostics(location=location))
        return str(r.file_name) if r.file_name else None
