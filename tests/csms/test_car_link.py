"""Which car charged: a session started with an owner's RFID card is linked to the owner's car whose own
telemetry (sent over MQTT, through the platform's real ingest) says it is plugged in at the station then; the
car's charge history shows the charger's meter next to the car's battery counter."""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from smartev.vehicles.vin import make_vin

from .helpers import Transaction, connected, register
from conftest import Harness, TestCar, eventually

LAT = "Vehicle.CurrentLocation.Latitude"
LON = "Vehicle.CurrentLocation.Longitude"
CABLE = "Vehicle.Powertrain.TractionBattery.Charging.ChargingPort.AnyPosition.IsChargingCableConnected"
CHARGING = "Vehicle.Powertrain.TractionBattery.Charging.IsCharging"
CHARGED = "Vehicle.Powertrain.TractionBattery.AccumulatedChargedEnergy"
HOME = (52.5200, 13.4050)
MALL = (48.1370, 11.5750)
M = 1 / 111_000  # about a metre, in degrees of latitude


@dataclass
class Car:
    """A registered car and the MQTT client it reports with."""

    h: Harness
    vin: str
    owner_token: str
    client: TestCar
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def report(self, **signals: Any) -> None:
        """Send telemetry now and wait until the twin holds it."""
        paths = {
            {"lat": LAT, "lon": LON, "cable": CABLE, "charging": CHARGING, "charged": CHARGED}[k]: v
            for k, v in signals.items()
        }
        await self.client.send(next(self.seq), [{"ts": int(time.time() * 1000), "signals": paths}])

        async def arrived() -> bool:
            r = await self.h.http.get(
                f"/api/v1/vehicles/{self.vin}/state", headers=self.h.auth(self.owner_token)
            )
            state = r.json()["signals"]
            return all(path in state and state[path]["value"] == value for path, value in paths.items())

        await eventually(arrived, timeout=5)


async def test_a_card_session_is_linked_to_the_owners_car_plugged_in_there(quick: Harness) -> None:
    h = quick
    op = await h.user("op@example.com", "operator")
    anna = await h.user("anna@example.com")
    bob = await h.user("bob@example.com")
    rng = random.Random(7)
    vins = {name: make_vin(rng) for name in ("anna1", "anna2", "anna3", "bob")}
    passwords = {
        name: (await h.register(op, vin, "bob@example.com" if name == "bob" else "anna@example.com"))[
            "mqtt_password"
        ]
        for name, vin in vins.items()
    }
    for tag, owner in (("CARD-ANNA", "anna@example.com"), ("CARD-BOB", "bob@example.com")):
        r = await h.http.post("/api/v1/id-tags", json={"tag": tag, "owner": owner}, headers=h.auth(op))
        assert r.status_code == 201, r.text
    home = await register(h, op, "HOME-ANNA", owner="anna@example.com", latitude=HOME[0], longitude=HOME[1])
    mall = await register(h, op, "MALL-1", latitude=MALL[0], longitude=MALL[1])
    host, port = h.mqtt

    async def sessions(station: str) -> list[dict[str, Any]]:
        r = await h.http.get("/api/v1/charging-sessions", params={"station": station}, headers=h.auth(op))
        assert r.status_code == 200, r.text
        result: list[dict[str, Any]] = r.json()
        return result

    async with (
        TestCar(host, port, vins["anna1"], passwords["anna1"]) as c1,
        TestCar(host, port, vins["anna2"], passwords["anna2"]) as c2,
        TestCar(host, port, vins["anna3"], passwords["anna3"]) as c3,
        TestCar(host, port, vins["bob"], passwords["bob"]) as cb,
    ):
        anna1, anna2, anna3 = (
            Car(h, vins[n], anna, c) for n, c in (("anna1", c1), ("anna2", c2), ("anna3", c3))
        )
        bobs = Car(h, vins["bob"], bob, cb)
        # at Anna's home: her first car plugged in 20 m from the charger, her second plugged in 300 m away,
        # her third parked beside it without a cable, Bob's car plugged in next door
        await anna1.report(lat=HOME[0] + 20 * M, lon=HOME[1], cable=True, charged=1_000.0)
        await anna2.report(lat=HOME[0] + 300 * M, lon=HOME[1], cable=True, charging=True)
        await anna3.report(lat=HOME[0], lon=HOME[1] + 10 * M, cable=False)
        await bobs.report(lat=HOME[0] - 30 * M, lon=HOME[1], charging=True)

        now = datetime.now(UTC)
        async with connected(h, "HOME-ANNA", home["password"]) as cp:
            tx = Transaction(cp, "CARD-ANNA")
            assert await tx.start(now, 40_000) == "Accepted"
            (session,) = await sessions("HOME-ANNA")
            assert session["vin"] == anna1.vin and session["linked_by"] == "telemetry"
            await anna1.report(charged=1_007.5)  # the car's battery took 7.5 kWh of the charger's 7.8
            await tx.stop(now + timedelta(minutes=50), 47_800)

            # a start replayed from an hour ago: what the cars say now says nothing about then
            old = Transaction(cp, "CARD-ANNA")
            await old.start(now - timedelta(hours=1), 30_000)
            await old.stop(now - timedelta(minutes=50), 31_000)

            # Anna's third car is plugged in too: two of her cars at the charger, which one is it?
            await anna3.report(cable=True)
            both = Transaction(cp, "CARD-ANNA")
            await both.start(datetime.now(UTC), 47_800)
            await both.stop(datetime.now(UTC) + timedelta(minutes=1), 48_000)

        by_tx = {s["transaction_id"]: s for s in await sessions("HOME-ANNA")}
        linked, replayed, ambiguous = by_tx[tx.id], by_tx[old.id], by_tx[both.id]
        assert linked["car_energy_wh"] == 7_500 and linked["energy_wh"] == 7_800
        assert replayed["vin"] is None and ambiguous["vin"] is None

        # the car's charge history: the charger's meter next to the battery's own count
        r = await h.http.get(f"/api/v1/vehicles/{anna1.vin}/charging-sessions", headers=h.auth(anna))
        assert r.status_code == 200, r.text
        (history,) = r.json()
        assert history["station"] == "HOME-ANNA" and history["energy_wh"] == 7_800
        assert history["car_energy_wh"] == 7_500 and history["linked_by"] == "telemetry"
        r = await h.http.get(f"/api/v1/vehicles/{anna1.vin}/charging-sessions", headers=h.auth(bob))
        assert r.status_code == 404
        r = await h.http.get(f"/api/v1/vehicles/{bobs.vin}/charging-sessions", headers=h.auth(bob))
        assert r.json() == []  # Bob's car next door was not given Anna's session

        # Bob charges at the mall on a 2.0.1 charger with his card: his car, plugged in there, is linked
        await bobs.report(lat=MALL[0] + 40 * M, lon=MALL[1] + 40 * M, cable=True, charged=500.0)
        async with connected(h, "MALL-1", mall["password"], "ocpp2.0.1") as cp:
            tx = Transaction(cp, "CARD-BOB")
            assert await tx.start(datetime.now(UTC), 0) == "Accepted"
            await bobs.report(charged=520.25)
            await tx.stop(datetime.now(UTC) + timedelta(minutes=30), 22_000)
        r = await h.http.get(f"/api/v1/vehicles/{bobs.vin}/charging-sessions", headers=h.auth(bob))
        (history,) = r.json()
        assert history["station"] == "MALL-1" and history["linked_by"] == "telemetry"
        assert history["energy_wh"] == 22_000 and history["car_energy_wh"] == 20_250
        # and Anna sees none of it
        r = await h.http.get("/api/v1/charging-sessions", params={"station": "MALL-1"}, headers=h.auth(anna))
        assert r.json() == []
