"""A scripted charge point on the `ocpp` library, for tests that say exactly what the station sends.

`Station16` and `Station201` answer what the central system asks and keep each request in `.received`
(action, payload in snake_case); an action in `.stall` is never answered, like a station that hangs.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import websockets
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as CP16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as CP201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.client import ClientConnection

from conftest import Harness


def ts(at: datetime | None = None, minutes: float = 0) -> str:
    at = (at or datetime.now(UTC)) + timedelta(minutes=minutes)
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def basic(station_id: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class _Recording:
    """What both scripted stations share: the ledger of requests and the actions they hang on."""

    received: list[tuple[str, dict[str, Any]]]
    stall: set[str]

    async def _got(self, action: str, payload: dict[str, Any]) -> None:
        self.received.append((action, payload))
        if action in self.stall:
            await asyncio.sleep(3600)  # never answers; cancelled when the test disconnects

    def requests(self, action: str) -> list[dict[str, Any]]:
        """The payloads of every `action` received, oldest first."""
        return [payload for name, payload in self.received if name == action]


class Station16(_Recording, CP16):  # type: ignore[misc]
    """Answers what the central system asks, and remembers it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received = []
        self.stall = set()
        self.configuration = {"HeartbeatInterval": "300", "MeterValueSampleInterval": "60"}

    @on("RemoteStartTransaction")
    async def _remote_start(self, **kw: Any) -> Any:
        await self._got("RemoteStartTransaction", kw)
        return result16.RemoteStartTransaction(status="Accepted")

    @on("RemoteStopTransaction")
    async def _remote_stop(self, **kw: Any) -> Any:
        await self._got("RemoteStopTransaction", kw)
        return result16.RemoteStopTransaction(status="Accepted")

    @on("Reset")
    async def _reset(self, **kw: Any) -> Any:
        await self._got("Reset", kw)
        return result16.Reset(status="Accepted")

    @on("UnlockConnector")
    async def _unlock(self, **kw: Any) -> Any:
        await self._got("UnlockConnector", kw)
        return result16.UnlockConnector(status="Unlocked")

    @on("SetChargingProfile")
    async def _profile(self, **kw: Any) -> Any:
        await self._got("SetChargingProfile", kw)
        return result16.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    async def _clear_profile(self, **kw: Any) -> Any:
        await self._got("ClearChargingProfile", kw)
        return result16.ClearChargingProfile(status="Accepted")

    @on("GetConfiguration")
    async def _get_config(self, **kw: Any) -> Any:
        await self._got("GetConfiguration", kw)
        keys = kw.get("key")
        known = [k for k in (keys or self.configuration) if k in self.configuration]
        return result16.GetConfiguration(
            configuration_key=[{"key": k, "readonly": False, "value": self.configuration[k]} for k in known],
            unknown_key=[k for k in keys or () if k not in self.configuration] or None,
        )

    @on("ChangeConfiguration")
    async def _change_config(self, **kw: Any) -> Any:
        await self._got("ChangeConfiguration", kw)
        if kw["key"] not in self.configuration:
            return result16.ChangeConfiguration(status="NotSupported")
        self.configuration[kw["key"]] = kw["value"]
        return result16.ChangeConfiguration(status="Accepted")

    @on("UpdateFirmware")
    async def _firmware(self, **kw: Any) -> Any:
        await self._got("UpdateFirmware", kw)
        return result16.UpdateFirmware()

    @on("SendLocalList")
    async def _local_list(self, **kw: Any) -> Any:
        await self._got("SendLocalList", kw)
        return result16.SendLocalList(status="Accepted")

    @on("TriggerMessage")
    async def _trigger(self, **kw: Any) -> Any:
        await self._got("TriggerMessage", kw)
        return result16.TriggerMessage(status="Accepted")

    @on("ChangeAvailability")
    async def _availability(self, **kw: Any) -> Any:
        await self._got("ChangeAvailability", kw)
        return result16.ChangeAvailability(status="Accepted")

    @on("GetCompositeSchedule")
    async def _composite(self, **kw: Any) -> Any:
        await self._got("GetCompositeSchedule", kw)
        return result16.GetCompositeSchedule(
            status="Accepted",
            connector_id=kw["connector_id"],
            schedule_start=ts(),
            charging_schedule={
                "duration": kw["duration"],
                "charging_rate_unit": kw.get("charging_rate_unit") or "A",
                "charging_schedule_period": [{"start_period": 0, "limit": 16.1}],
            },
        )

    @on("ReserveNow")
    async def _reserve(self, **kw: Any) -> Any:
        await self._got("ReserveNow", kw)
        return result16.ReserveNow(status="Accepted")

    @on("CancelReservation")
    async def _cancel(self, **kw: Any) -> Any:
        await self._got("CancelReservation", kw)
        return result16.CancelReservation(status="Accepted")


class Station201(_Recording, CP201):  # type: ignore[misc]
    """Answers what the central system asks, and remembers it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received = []
        self.stall = set()
        # Component.Variable -> value
        self.variables = {"OCPPCommCtrlr.HeartbeatInterval": "300", "AlignedDataCtrlr.Interval": "900"}

    @on("RequestStartTransaction")
    async def _start(self, **kw: Any) -> Any:
        await self._got("RequestStartTransaction", kw)
        return result201.RequestStartTransaction(status="Accepted")

    @on("RequestStopTransaction")
    async def _stop(self, **kw: Any) -> Any:
        await self._got("RequestStopTransaction", kw)
        return result201.RequestStopTransaction(status="Accepted")

    @on("SetVariables")
    async def _set(self, set_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        await self._got("SetVariables", {"set_variable_data": set_variable_data})
        results = []
        for d in set_variable_data:
            key = f"{d['component']['name']}.{d['variable']['name']}"
            known = key in self.variables
            if known:
                self.variables[key] = d["attribute_value"]
            results.append(
                {
                    "attribute_status": "Accepted" if known else "UnknownVariable",
                    "component": d["component"],
                    "variable": d["variable"],
                }
            )
        return result201.SetVariables(set_variable_result=results)

    @on("GetVariables")
    async def _get(self, get_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        await self._got("GetVariables", {"get_variable_data": get_variable_data})
        results = []
        for d in get_variable_data:
            key = f"{d['component']['name']}.{d['variable']['name']}"
            item: dict[str, Any] = {"component": d["component"], "variable": d["variable"]}
            if key in self.variables:
                item.update(attribute_status="Accepted", attribute_value=self.variables[key])
            else:
                item.update(attribute_status="UnknownVariable")
            results.append(item)
        return result201.GetVariables(get_variable_result=results)

    @on("GetBaseReport")
    async def _base_report(self, **kw: Any) -> Any:
        await self._got("GetBaseReport", kw)
        return result201.GetBaseReport(status="Accepted")

    @after("GetBaseReport")
    async def _send_report(self, request_id: int, **kw: Any) -> None:
        """The report comes in two NotifyReport parts, as a station with many variables sends it."""
        items = [
            {
                "component": {"name": key.split(".")[0]},
                "variable": {"name": key.split(".")[1]},
                "variable_attribute": [{"type": "Actual", "value": value, "mutability": "ReadWrite"}],
            }
            for key, value in self.variables.items()
        ]
        for seq, part in enumerate((items[:1], items[1:])):
            await self.call(
                call201.NotifyReport(
                    request_id=request_id,
                    generated_at=ts(),
                    seq_no=seq,
                    report_data=part,
                    tbc=seq == 0,
                )
            )

    @on("SetChargingProfile")
    async def _profile(self, **kw: Any) -> Any:
        await self._got("SetChargingProfile", kw)
        return result201.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    async def _clear_profile(self, **kw: Any) -> Any:
        await self._got("ClearChargingProfile", kw)
        return result201.ClearChargingProfile(status="Accepted")

    @on("Reset")
    async def _reset(self, **kw: Any) -> Any:
        await self._got("Reset", kw)
        return result201.Reset(status="Accepted")

    @on("UnlockConnector")
    async def _unlock(self, **kw: Any) -> Any:
        await self._got("UnlockConnector", kw)
        return result201.UnlockConnector(status="Unlocked")

    @on("UpdateFirmware")
    async def _firmware(self, **kw: Any) -> Any:
        await self._got("UpdateFirmware", kw)
        return result201.UpdateFirmware(status="Accepted")

    @on("SendLocalList")
    async def _local_list(self, **kw: Any) -> Any:
        await self._got("SendLocalList", kw)
        return result201.SendLocalList(status="Accepted")

    @on("TriggerMessage")
    async def _trigger(self, **kw: Any) -> Any:
        await self._got("TriggerMessage", kw)
        return result201.TriggerMessage(status="Accepted")

    @on("ChangeAvailability")
    async def _availability(self, **kw: Any) -> Any:
        await self._got("ChangeAvailability", kw)
        return result201.ChangeAvailability(status="Accepted")

    @on("GetCompositeSchedule")
    async def _composite(self, **kw: Any) -> Any:
        await self._got("GetCompositeSchedule", kw)
        return result201.GetCompositeSchedule(
            status="Accepted",
            schedule={
                "evse_id": kw["evse_id"],
                "duration": kw["duration"],
                "schedule_start": ts(),
                "charging_rate_unit": kw.get("charging_rate_unit") or "A",
                "charging_schedule_period": [{"start_period": 0, "limit": 16.1}],
            },
        )

    @on("ReserveNow")
    async def _reserve(self, **kw: Any) -> Any:
        await self._got("ReserveNow", kw)
        return result201.ReserveNow(status="Accepted")

    @on("CancelReservation")
    async def _cancel(self, **kw: Any) -> Any:
        await self._got("CancelReservation", kw)
        return result201.CancelReservation(status="Accepted")


class Transaction:
    """One charging transaction as a scripted station runs it, in its OCPP version.

    `start`, `meter` and `stop` send StartTransaction / MeterValues / StopTransaction (1.6) or the Started,
    Updated and Ended TransactionEvents (2.0.1) with the energy register in Wh; `start` returns the status
    the central system gave the id tag.
    """

    def __init__(self, cp: Station16 | Station201, id_tag: str | None, evse_id: int = 1) -> None:
        self.cp, self.id_tag, self.evse_id = cp, id_tag, evse_id
        self.v16 = isinstance(cp, Station16)
        self.id = str(uuid.uuid4())
        self._seq = 0

    def _event(self, kind: str, trigger: str, at: datetime, wh: float, **extra: Any) -> Any:
        self._seq += 1
        return call201.TransactionEvent(
            event_type=kind,
            timestamp=ts(at),
            trigger_reason=trigger,
            seq_no=self._seq - 1,
            transaction_info={"transaction_id": self.id, **extra.pop("info", {})},
            evse={"id": self.evse_id, "connector_id": 1},
            meter_value=[
                {
                    "timestamp": ts(at),
                    "sampled_value": [{"value": wh, "measurand": "Energy.Active.Import.Register"}],
                }
            ],
            **extra,
        )

    async def start(self, at: datetime, wh: float = 0.0) -> str:
        if self.v16:
            r = await self.cp.call(
                call16.StartTransaction(
                    connector_id=self.evse_id, id_tag=self.id_tag or "", meter_start=int(wh), timestamp=ts(at)
                )
            )
            self.id = str(r.transaction_id)
            return str(r.id_tag_info["status"])
        token = {"id_token": self.id_tag, "type": "ISO14443"} if self.id_tag else None
        r = await self.cp.call(self._event("Started", "Authorized", at, wh, id_token=token))
        return str(r.id_token_info["status"]) if r.id_token_info else "Accepted"

    async def meter(self, at: datetime, wh: float) -> None:
        if self.v16:
            await self.cp.call(
                call16.MeterValues(
                    connector_id=self.evse_id,
                    transaction_id=int(self.id),
                    meter_value=[
                        {
                            "timestamp": ts(at),
                            "sampled_value": [
                                {
                                    "value": str(int(wh)),
                                    "measurand": "Energy.Active.Import.Register",
                                    "unit": "Wh",
                                }
                            ],
                        }
                    ],
                )
            )
        else:
            await self.cp.call(self._event("Updated", "MeterValuePeriodic", at, wh))

    async def stop(self, at: datetime, wh: float, reason: str = "EVDisconnected") -> None:
        if self.v16:
            await self.cp.call(
                call16.StopTransaction(
                    meter_stop=int(wh), timestamp=ts(at), transaction_id=int(self.id), reason=reason
                )
            )
        else:
            await self.cp.call(
                self._event("Ended", "EVCommunicationLost", at, wh, info={"stopped_reason": reason})
            )


async def boot(cp: Station16 | Station201) -> None:
    """A BootNotification, as a station sends it first."""
    if isinstance(cp, Station16):
        r = await cp.call(
            call16.BootNotification(charge_point_model="Wallbox 11", charge_point_vendor="Acme")
        )
    else:
        r = await cp.call(
            call201.BootNotification(
                charging_station={"model": "DC 50", "vendor_name": "Acme"}, reason="PowerUp"
            )
        )
    assert r.status == "Accepted"


async def status(cp: Station16 | Station201, connector_status: str, evse_id: int = 1) -> None:
    """A StatusNotification for connector 1 of `evse_id` (1.6 status words: Preparing, Charging, ...)."""
    if isinstance(cp, Station16):
        await cp.call(
            call16.StatusNotification(connector_id=evse_id, error_code="NoError", status=connector_status)
        )
    else:
        await cp.call(
            call201.StatusNotification(
                timestamp=ts(), connector_status=connector_status, evse_id=evse_id, connector_id=1
            )
        )


@asynccontextmanager
async def connected(
    h: Harness, station_id: str, password: str, protocol: str = "ocpp1.6", url: str | None = None
) -> AsyncIterator[Any]:
    """A station connected to the platform's OCPP port (or `url`, the base it was given), its loop running."""
    base = url or f"ws://127.0.0.1:{h.platform.central.port}/ocpp"
    ws: ClientConnection = await websockets.connect(
        f"{base}/{station_id}",
        subprotocols=[protocol],
        additional_headers=basic(station_id, password),  # type: ignore[list-item]
    )
    cls = Station16 if protocol == "ocpp1.6" else Station201
    cp = cls(station_id, ws, response_timeout=10)
    task = asyncio.create_task(cp.start())
    try:
        yield cp
    finally:
        task.cancel()
        await ws.close()


async def register(h: Harness, token: str, station_id: str, **body: Any) -> dict[str, Any]:
    r = await h.http.post("/api/v1/stations", json={"id": station_id, **body}, headers=h.auth(token))
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


__all__ = ["Transaction", "basic", "boot", "call16", "call201", "connected", "register", "status", "ts"]
