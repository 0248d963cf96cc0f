"""A CAN frame sequence on a (virtual) bus reaches the platform's twin as VSS values in VSS units, and a lock
command from the API goes out as a CAN request the car confirms."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import can
import cantools
import pytest

from smartev.agent.can import DEMO_DBC, DEMO_MAPPING, CanSource, DemoEcu
from smartev.agent.runtime import Agent

from .helpers import agent_config, enrol, running
from conftest import Harness, eventually

SPEED = "Vehicle.Speed"
ODOMETER = "Vehicle.TraveledDistance"
OUTSIDE = "Vehicle.Exterior.AirTemperature"
SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
CURRENT = "Vehicle.Powertrain.TractionBattery.CurrentCurrent"
LOCKED = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"


async def test_can_frames_arrive_in_the_twin_in_vss_units(harness: Harness, tmp_path: Path) -> None:
    h = harness
    operator = await h.user("op@example.com", "operator")
    vin, password = await enrol(h, operator, 60)
    channel = f"smartev-e2e-{uuid.uuid4().hex}"
    db = cantools.database.load_file(str(DEMO_DBC))
    host, port = h.mqtt
    config = agent_config(tmp_path, vin, f"mqtt://{host}:{port}", source={"kind": "can"})
    source = CanSource(DEMO_MAPPING, "virtual", channel)  # the shipped demo mapping
    agent = Agent(config, source, password=password)
    car_bus = can.Bus(interface="virtual", channel=channel)
    try:
        async with running(agent):
            await eventually(lambda: agent.connected and source.opened.is_set(), timeout=20)
            frames: list[tuple[str, dict[str, Any]]] = [
                ("VCU_Status", {"VehicleSpeed": 20.0, "Odometer": 1000.0, "OutsideTemp": 50}),
                ("BMS_Status", {"SoC": 55.5, "PackVoltage": 380.0, "PackCurrent": 25.0, "PackTemp": 77}),
                ("VCU_Status", {"VehicleSpeed": 62.14, "Odometer": 1000.5, "OutsideTemp": 59}),
                ("BCM_Status", {"DoorLockState": "Locked", "HornActive": 0, "HazardActive": 0}),
            ]
            for name, values in frames:
                message = db.get_message_by_name(name)
                car_bus.send(
                    can.Message(
                        arbitration_id=message.frame_id,
                        is_extended_id=message.is_extended_frame,
                        data=message.encode(values),
                    )
                )
                await asyncio.sleep(0.05)

            async def twin() -> dict[str, Any] | None:
                r = await h.http.get(f"/api/v1/vehicles/{vin}/state", headers=h.auth(operator))
                signals = {k: v["value"] for k, v in r.json()["signals"].items()}
                return signals if signals.get(SPEED, 0) > 90 and LOCKED in signals else None

            signals = await eventually(twin, timeout=20)
    finally:
        car_bus.shutdown()
    assert signals[SPEED] == pytest.approx(100.0, abs=0.05)  # 62.14 mph
    assert signals[ODOMETER] == pytest.approx(1000.5 * 1609.344, abs=1)  # miles → metres (uint32)
    assert signals[OUTSIDE] == pytest.approx(15.0, abs=0.01)  # 59 °F
    assert signals[SOC] == pytest.approx(55.5, abs=0.01)
    assert signals[CURRENT] == pytest.approx(-25.0, abs=0.01), "discharging is negative in VSS"
    assert signals[LOCKED] is True


async def test_a_lock_command_from_the_api_is_confirmed_by_the_car_over_can(
    quick: Harness, tmp_path: Path
) -> None:
    h = quick
    operator = await h.user("op@example.com", "operator")
    vin, password = await enrol(h, operator, 61)
    channel = f"smartev-e2e-{uuid.uuid4().hex}"
    host, port = h.mqtt
    config = agent_config(tmp_path, vin, f"mqtt://{host}:{port}", source={"kind": "can"})
    source = CanSource(DEMO_MAPPING, "virtual", channel)
    agent = Agent(config, source, password=password)
    ecu_bus = can.Bus(interface="virtual", channel=channel)
    ecu = DemoEcu(ecu_bus)
    ecu_task = asyncio.create_task(ecu.run())
    try:
        async with running(agent):
            await eventually(lambda: agent.connected and source.opened.is_set(), timeout=20)
            r = await h.http.post(
                f"/api/v1/vehicles/{vin}/commands",
                json={"name": "unlock", "args": {}},
                headers=h.auth(operator),
            )
            assert r.status_code == 202, r.text
            command_id = r.json()["id"]

            async def done() -> dict[str, Any] | None:
                got = await h.http.get(
                    f"/api/v1/vehicles/{vin}/commands/{command_id}", headers=h.auth(operator)
                )
                body: dict[str, Any] = got.json()
                return body if body["status"] not in ("queued", "delivered") else None

            result = await eventually(done, timeout=20)
    finally:
        ecu_task.cancel()
        await asyncio.gather(ecu_task, return_exceptions=True)
        ecu_bus.shutdown()
    assert result["status"] == "succeeded", result
