"""The fleet at a glance: counts by state, the searchable table, map positions, the telemetry error log.

Cars report through the real broker; what the operator console shows must follow from what they sent.
"""

from __future__ import annotations

import random

from smartev.vehicles.vin import make_vin

from conftest import Harness, TestCar, eventually

SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
CHARGING = "Vehicle.Powertrain.TractionBattery.Charging.IsCharging"


async def _fleet(h: Harness) -> tuple[str, str, dict[str, str], dict[str, dict[str, str]]]:
    """An operator, two owners; alice has a driving car and a charging one, bob a car that never reported."""
    op = await h.user("op@example.com", "operator")
    alice = await h.user("alice@example.com")
    await h.user("bob@example.com")
    rng = random.Random(7)
    vins = {"driving": make_vin(rng), "charging": make_vin(rng), "silent": make_vin(rng)}
    creds = {
        "driving": await h.register(op, vins["driving"], "alice@example.com"),
        "charging": await h.register(op, vins["charging"], "alice@example.com", model="smartev X1"),
        "silent": await h.register(op, vins["silent"], "bob@example.com"),
    }
    host, port = h.mqtt
    samples = {
        "driving": {
            "Vehicle.Speed": 63.0,
            SOC: 55.5,
            "Vehicle.CurrentLocation.Latitude": 52.5,
            "Vehicle.CurrentLocation.Longitude": 13.4,
            "Vehicle.Powertrain.Range": 201_500,
        },
        "charging": {"Vehicle.Speed": 0.0, SOC: 21.0, CHARGING: True},
    }
    for kind, signals in samples.items():
        async with TestCar(host, port, vins[kind], creds[kind]["mqtt_password"]) as car:
            await car.send(1, [{"ts": "2026-11-21T10:00:00Z", "signals": signals}])
            await eventually(lambda car=car: 1 in car.acks)
    return op, alice, vins, creds


async def test_counts_table_and_positions_follow_what_cars_sent(quick: Harness) -> None:
    h = quick
    op, alice, vins, _ = await _fleet(h)
    r = await h.http.get("/api/v1/fleet/summary", headers=h.auth(op))
    assert r.json() == {"total": 3, "online": 2, "offline": 1, "driving": 1, "charging": 1, "parked": 0}
    r = await h.http.get("/api/v1/fleet/summary", headers=h.auth(alice))
    assert r.json()["total"] == 2, "an owner counts only their own cars"

    r = await h.http.get(
        "/api/v1/fleet/vehicles", params={"sort": "soc", "order": "desc"}, headers=h.auth(op)
    )
    page = r.json()
    assert page["total"] == 3
    assert [c["vin"] for c in page["items"]] == [vins["driving"], vins["charging"], vins["silent"]]
    driving = page["items"][0]
    assert driving["state"] == "driving" and driving["speed"] == 63.0 and driving["range_km"] == 201.5
    assert driving["owner"] == "alice@example.com" and driving["online"] is True
    assert page["items"][2]["state"] == "offline" and page["items"][2]["soc"] is None

    search = {"q": "BOB@"}
    r = await h.http.get("/api/v1/fleet/vehicles", params=search, headers=h.auth(op))
    assert [c["vin"] for c in r.json()["items"]] == [vins["silent"]], "search matches the owner's email"
    r = await h.http.get("/api/v1/fleet/vehicles", params={"q": "x1"}, headers=h.auth(op))
    assert [c["vin"] for c in r.json()["items"]] == [vins["charging"]], "and the model"
    r = await h.http.get("/api/v1/fleet/vehicles", params={"state": "charging"}, headers=h.auth(op))
    assert [c["vin"] for c in r.json()["items"]] == [vins["charging"]]
    r = await h.http.get("/api/v1/fleet/vehicles", params={"limit": 1, "offset": 1}, headers=h.auth(op))
    assert r.json()["total"] == 3 and [c["vin"] for c in r.json()["items"]] == [sorted(vins.values())[1]]
    r = await h.http.get("/api/v1/fleet/vehicles", headers=h.auth(alice))
    assert vins["silent"] not in {c["vin"] for c in r.json()["items"]}, "an owner never sees others' cars"

    r = await h.http.get("/api/v1/fleet/positions", headers=h.auth(op))
    assert r.json() == {"rows": [[vins["driving"], 52.5, 13.4, "driving"]]}


async def test_bad_table_requests_say_what_is_wrong(quick: Harness) -> None:
    op = await quick.user("op@example.com", "operator")
    for params, where in (
        ({"sort": "price"}, "sort"),
        ({"order": "up"}, "order"),
        ({"state": "flying"}, "state"),
        ({"limit": 501}, "limit"),
    ):
        r = await quick.http.get("/api/v1/fleet/vehicles", params=params, headers=quick.auth(op))
        assert r.status_code == 422, params
        assert r.json()["detail"][0]["loc"][-1] == where
    r = await quick.http.get("/api/v1/fleet/summary")
    assert r.status_code == 401


async def test_the_operator_sees_why_a_cars_signals_were_refused(quick: Harness) -> None:
    h = quick
    op, alice, vins, creds = await _fleet(h)
    host, port = h.mqtt
    async with TestCar(host, port, vins["driving"], creds["driving"]["mqtt_password"]) as car:
        await car.send(
            2,
            [
                {
                    "ts": "2026-11-21T10:00:01Z",
                    "signals": {"Vehicle.Speed": 50.0, "Vehicle.Warp.Factor": 9, SOC: 250},
                }
            ],
        )
        await car.publish(b"{not json")
        await eventually(lambda: len(car.errors) >= 2)
    r = await h.http.get(f"/api/v1/vehicles/{vins['driving']}/telemetry-errors", headers=h.auth(op))
    assert r.status_code == 200
    errors = r.json()
    by_path = {e["path"]: e for e in errors}
    assert set(by_path) == {"Vehicle.Warp.Factor", SOC, ""}
    assert "unknown signal" in by_path["Vehicle.Warp.Factor"]["reason"]
    assert by_path[SOC]["seq"] == 2 and "250" in by_path[SOC]["reason"]
    assert errors[0]["path"] == "", "newest first: the unreadable message came last"
    r = await h.http.get(f"/api/v1/vehicles/{vins['driving']}/telemetry-errors", headers=h.auth(alice))
    assert r.status_code == 403, "the error log is for operators"
    r = await h.http.get(f"/api/v1/vehicles/{vins['silent']}/telemetry-errors", headers=h.auth(op))
    assert r.json() == []
