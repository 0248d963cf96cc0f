"""A scripted charge point on the `ocpp` library, for tests that say exactly what the station sends."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as CP16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as CP201
from ocpp.v201 import call_result as result201
from websockets.asyncio.client import ClientConnection

from conftest import Harness


def ts(at: datetime | None = None, minutes: float = 0) -> str:
    at = (at or datetime.now(UTC)) + timedelta(minutes=minutes)
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def basic(station_id: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Station16(CP16):  # type: ignore[misc]
    """Answers what the central system asks, and remembers it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[tuple[str, dict[str, Any]]] = []

    @on("RemoteStartTransaction")
    def _remote_start(self, **kw: Any) -> Any:
        self.received.append(("RemoteStartTransaction", kw))
        return result16.RemoteStartTransaction(status="Accepted")

    @on("RemoteStopTransaction")
    def _remote_stop(self, **kw: Any) -> Any:
        self.received.append(("RemoteStopTransaction", kw))
        return result16.RemoteStopTransaction(status="Accepted")

    @on("Reset")
    def _reset(self, **kw: Any) -> Any:
        self.received.append(("Reset", kw))
        return result16.Reset(status="Accepted")

    @on("UnlockConnector")
    def _unlock(self, **kw: Any) -> Any:
        self.received.append(("UnlockConnector", kw))
        return result16.UnlockConnector(status="Unlocked")

    @on("SetChargingProfile")
    def _profile(self, **kw: Any) -> Any:
        self.received.append(("SetChargingProfile", kw))
        return result16.SetChargingProfile(status="Accepted")

    @on("GetConfiguration")
    def _get_config(self, **kw: Any) -> Any:
        self.received.append(("GetConfiguration", kw))
        return result16.GetConfiguration(
            configuration_key=[{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
        )

    @on("ChangeConfiguration")
    def _change_config(self, **kw: Any) -> Any:
        self.received.append(("ChangeConfiguration", kw))
        return result16.ChangeConfiguration(status="Accepted")

    @on("UpdateFirmware")
    def _firmware(self, **kw: Any) -> Any:
        self.received.append(("UpdateFirmware", kw))
        return result16.UpdateFirmware()

    @on("SendLocalList")
    def _local_list(self, **kw: Any) -> Any:
        self.received.append(("SendLocalList", kw))
        return result16.SendLocalList(status="Accepted")


class Station201(CP201):  # type: ignore[misc]
    """Answers what the central system asks, and remembers it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[tuple[str, dict[str, Any]]] = []

    @on("RequestStartTransaction")
    def _start(self, **kw: Any) -> Any:
        self.received.append(("RequestStartTransaction", kw))
        return result201.RequestStartTransaction(status="Accepted")

    @on("RequestStopTransaction")
    def _stop(self, **kw: Any) -> Any:
        self.received.append(("RequestStopTransaction", kw))
        return result201.RequestStopTransaction(status="Accepted")

    @on("SetVariables")
    def _set(self, set_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        self.received.append(("SetVariables", {"set_variable_data": set_variable_data}))
        return result201.SetVariables(
            set_variable_result=[
                {"attribute_status": "Accepted", "component": d["component"], "variable": d["variable"]}
                for d in set_variable_data
            ]
        )

    @on("GetVariables")
    def _get(self, get_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        return result201.GetVariables(
            get_variable_result=[
                {
                    "attribute_status": "Accepted",
                    "attribute_value": "300",
                    "component": d["component"],
                    "variable": d["variable"],
                }
                for d in get_variable_data
            ]
        )

    @on("SetChargingProfile")
    def _profile(self, **kw: Any) -> Any:
        self.received.append(("SetChargingProfile", kw))
        return result201.SetChargingProfile(status="Accepted")

    @on("Reset")
    def _reset(self, **kw: Any) -> Any:
        self.received.append(("Reset", kw))
        return result201.Reset(status="Accepted")


@asynccontextmanager
async def connected(
    h: Harness, station_id: str, password: str, protocol: str = "ocpp1.6"
) -> AsyncIterator[Any]:
    """A station connected to the platform's OCPP port, its message loop running."""
    url = f"ws://127.0.0.1:{h.platform.central.port}/ocpp/{station_id}"
    ws: ClientConnection = await websockets.connect(
        url, subprotocols=[protocol], additional_headers=basic(station_id, password)  # type: ignore[list-item]
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


__all__ = ["call16", "connected", "register", "ts", "basic"]
