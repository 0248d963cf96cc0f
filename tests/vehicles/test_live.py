"""Live updates over server-sent events, through a real HTTP server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from smartev.app import Platform

from conftest import TestCar, eventually, fresh_database, make_settings, read_events, serve_http
from test_telemetry_e2e import setup_car


async def test_owner_sees_signals_and_command_status_live(tmp_path: Path) -> None:
    async with fresh_database("sqlite", tmp_path) as url:
        async with serve_http(Platform(make_settings(tmp_path, url, "embedded"))) as h:
            http = h.http
            vin, creds, token = await setup_car(h)
            events: list[tuple[str, dict[str, Any]]] = []
            listener = asyncio.create_task(read_events(h, f"/api/v1/vehicles/{vin}/live", token, events))
            await asyncio.sleep(0.3)
            host, mqtt_port = h.mqtt
            async with TestCar(host, mqtt_port, vin, creds["mqtt_password"]) as car:
                await car.send(1, [{"ts": "2026-11-21T10:00:00Z", "signals": {"Vehicle.Speed": 42.0}}])
                await eventually(lambda: any(k == "signals" for k, _ in events))
                r = await http.post(
                    f"/api/v1/vehicles/{vin}/commands", json={"name": "lock"}, headers=h.auth(token)
                )
                command_id = r.json()["id"]
                await eventually(
                    lambda: any(k == "command" and d["status"] == "succeeded" for k, d in events)
                )
            listener.cancel()
            signals = next(d for k, d in events if k == "signals")["signals"]
            assert signals["Vehicle.Speed"]["value"] == 42.0  # type: ignore[index]
            assert any(k == "connectivity" and d["online"] is True for k, d in events)
            assert [d["status"] for k, d in events if k == "command" and d["id"] == command_id][
                -1
            ] == "succeeded"
