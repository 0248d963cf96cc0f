"""A simulated car against the real platform: telemetry stored without a rejection, commands answered."""

from __future__ import annotations

import random

from smartev.sim.car import SimulatedCar
from smartev.sim.fleet import CarIdentity
from smartev.vehicles.vin import make_vin

from .test_car import running
from conftest import Harness, eventually

LOCKED = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"
SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"


async def test_simulated_car_feeds_the_twin_and_answers_commands(quick: Harness) -> None:
    h = quick
    operator = await h.user("op@example.com", "operator")
    token = await h.user("alice@example.com")
    vin = make_vin(random.Random(9))
    creds = await h.register(operator, vin, "alice@example.com")
    host, port = h.mqtt
    identity = CarIdentity(vin, creds["mqtt_password"])
    car = SimulatedCar(identity, mqtt_host=host, mqtt_port=port, report_interval_s=0.2)
    async with running(car):
        await eventually(lambda: car.ledger.acked and car.pending == 0)

        async def twin() -> dict[str, object]:
            r = await h.http.get(f"/api/v1/vehicles/{vin}/state", headers=h.auth(token))
            assert r.status_code == 200, r.text
            body: dict[str, object] = r.json()
            return body

        state = await eventually(twin)
        assert state["online"] is True
        signals = state["signals"]
        assert isinstance(signals, dict)
        assert set(signals) == set(car.model.signals())
        assert signals[SOC]["value"] == car.ledger.sent[min(car.ledger.sent)][0]["signals"][SOC]

        wanted = not car.model.locked
        name = "lock" if wanted else "unlock"
        r = await h.http.post(f"/api/v1/vehicles/{vin}/commands", json={"name": name}, headers=h.auth(token))
        assert r.status_code == 202, r.text
        command_id = r.json()["id"]

        async def command_succeeded() -> bool:
            r = await h.http.get(f"/api/v1/vehicles/{vin}/commands/{command_id}", headers=h.auth(token))
            return bool(r.json()["status"] == "succeeded")

        async def twin_shows_the_lock() -> bool:
            signals = (await twin())["signals"]
            assert isinstance(signals, dict)
            return bool(signals[LOCKED]["value"] == wanted)

        await eventually(command_succeeded)
        await eventually(twin_shows_the_lock)
        assert [c.id for c in car.ledger.commands] == [command_id]
        assert car.stats().errors == 0, car.ledger.errors
