"""A car publishes telemetry over real MQTT; the platform stores it once, acks after commit, reports rejects."""

from __future__ import annotations

import random
from pathlib import Path

from smartev.vehicles.vin import make_vin

from conftest import Harness, TestCar, eventually, running_platform

SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"


async def setup_car(h: Harness, owner: str = "alice@example.com") -> tuple[str, dict[str, str], str]:
    operator = await h.user(f"op-{random.random()}@example.com", "operator")
    owner_token = await h.user(owner)
    vin = make_vin(random.Random())
    creds = await h.register(operator, vin, owner)
    assert creds["mqtt_username"] == vin and len(creds["mqtt_password"]) >= 32
    return vin, creds, owner_token


async def test_good_and_bad_signals_in_one_message(harness: Harness) -> None:
    h = harness
    vin, creds, token = await setup_car(h)
    host, port = h.mqtt
    async with TestCar(host, port, vin, creds["mqtt_password"] if h.broker == "embedded" else None) as car:
        await car.send(
            1,
            [
                {
                    "ts": "2026-11-21T10:00:00.250Z",
                    "signals": {"Vehicle.Speed": 52.5, SOC: 81.2, "Vehicle.TraveledDistance": 123456},
                },
                {
                    "ts": 1795255201000,
                    "signals": {
                        SOC: 101,
                        "Vehicle.Nope": 1,
                        "Vehicle.Speed": "fast",
                        "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked": True,
                    },
                },
            ],
        )
        await eventually(lambda: 1 in car.acks)
        errors = (await eventually(lambda: car.errors))[0]
        assert errors["seq"] == 1
        reasons = {e["path"]: e["reason"] for e in errors["errors"]}
        assert set(reasons) == {SOC, "Vehicle.Nope", "Vehicle.Speed"}
        assert "maximum" in reasons[SOC] and "unknown signal" in reasons["Vehicle.Nope"]

        r = await h.http.get(f"/api/v1/vehicles/{vin}/state", headers=h.auth(token))
        assert r.status_code == 200
        state = r.json()
        assert state["online"] is True
        assert state["signals"]["Vehicle.Speed"]["value"] == 52.5
        assert state["signals"][SOC]["value"] == 81.2  # the rejected 101 did not overwrite it
        assert state["signals"]["Vehicle.TraveledDistance"]["value"] == 123456
        assert state["signals"]["Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"]["value"] is True

        # the same message again (the car did not see the ack): acknowledged again, stored once
        await car.send(1, [{"ts": "2026-11-21T10:00:00.250Z", "signals": {"Vehicle.Speed": 52.5}}])
        await eventually(lambda: car.acks.count(1) == 2)
        r = await h.http.get(
            f"/api/v1/vehicles/{vin}/history",
            params={"path": "Vehicle.Speed", "start": "2026-11-21T00:00:00Z", "end": "2026-11-22T00:00:00Z"},
            headers=h.auth(token),
        )
        assert r.status_code == 200, r.text
        points = r.json()["points"]
        assert [p["value"] for p in points] == [52.5]
        assert points[0]["ts"].startswith("2026-11-21T10:00:00.25")


async def test_unreadable_messages_get_an_error_and_do_not_stop_ingest(harness: Harness) -> None:
    h = harness
    vin, creds, _token = await setup_car(h)
    host, port = h.mqtt
    async with TestCar(host, port, vin, creds["mqtt_password"] if h.broker == "embedded" else None) as car:
        await car.publish(b"not json at all")
        await car.publish(b'{"seq": "seven", "samples": []}')
        await car.publish(b'{"seq": 3, "samples": []}')
        await car.publish(b"x" * (300 * 1024))
        await car.send(4, [{"ts": "2026-11-21T10:00:01Z", "signals": {"Vehicle.Speed": 10.0}}])
        await eventually(lambda: 4 in car.acks)
        await eventually(lambda: len(car.errors) >= 4)
        reasons = [e["errors"][0]["reason"] for e in car.errors]
        assert any("not valid JSON" in r for r in reasons)
        assert any('"seq"' in r for r in reasons)
        assert any('"samples"' in r for r in reasons)
        assert any("exceeds the limit" in r for r in reasons)
        assert 3 not in car.acks
        health = (await h.http.get("/api/v1/health")).json()
        assert health["ingest"]["counters"]["rejected_not_json"] == 1
        assert health["ingest"]["counters"]["rejected_too_large"] == 1


async def test_unknown_vin_is_counted_and_a_later_registration_is_not_blocked(tmp_path: Path) -> None:
    """On an open broker, strangers' messages are counted and dropped; registering the VIN lets its data in."""
    async with running_platform(tmp_path, "sqlite", "mosquitto") as h:
        vin = make_vin(random.Random())
        host, port = h.mqtt
        async with TestCar(host, port, vin, None) as stranger:
            await stranger.send(1, [{"ts": "2026-11-21T10:00:00Z", "signals": {"Vehicle.Speed": 1.0}}])
            await stranger.send(2, [{"ts": "2026-11-21T10:00:01Z", "signals": {"Vehicle.Speed": 2.0}}])
            await eventually(lambda: h.platform.ingest.counters["unknown_vehicle"] >= 2)
            assert stranger.acks == []
            operator = await h.user("ops-unknown@example.com", "operator")
            await h.user("owner-unknown@example.com")
            await h.register(operator, vin, "owner-unknown@example.com")
            await stranger.send(3, [{"ts": "2026-11-21T10:00:02Z", "signals": {"Vehicle.Speed": 3.0}}])
            await eventually(lambda: 3 in stranger.acks)
