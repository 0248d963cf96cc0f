"""The charging HTTP API as operators and owners use it, against real stations (the `ocpp` library's charge
point over real websockets) in both OCPP versions: stations, sessions and their CSV export, remote start and
stop, configuration, charging profiles and the other commands, id tags, and costs."""

from __future__ import annotations

import csv
import io
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from smartev.vehicles.vin import make_vin

from .helpers import Transaction, boot, call16, call201, connected, register, status
from conftest import Harness, eventually, running_platform

BOTH = pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])


@dataclass
class World:
    """An operator and two owners, Anna and Bob, each with a registered car."""

    h: Harness
    op: str
    anna: str
    bob: str
    anna_vin: str
    bob_vin: str

    async def tag(self, tag: str, **body: Any) -> None:
        r = await self.h.http.post("/api/v1/id-tags", json={"tag": tag, **body}, headers=self.h.auth(self.op))
        assert r.status_code == 201, r.text

    async def get(self, path: str, token: str, **params: Any) -> Any:
        r = await self.h.http.get(f"/api/v1{path}", params=params, headers=self.h.auth(token))
        assert r.status_code == 200, r.text
        return r.json()

    async def post(self, path: str, token: str, body: dict[str, Any] | None = None) -> Any:
        return await self.h.http.post(f"/api/v1{path}", json=body or {}, headers=self.h.auth(token))


async def world(h: Harness) -> World:
    op = await h.user("op@example.com", "operator")
    anna = await h.user("anna@example.com")
    bob = await h.user("bob@example.com")
    anna_vin, bob_vin = make_vin(random.Random(1)), make_vin(random.Random(2))
    await h.register(op, anna_vin, "anna@example.com")
    await h.register(op, bob_vin, "bob@example.com")
    return World(h, op, anna, bob, anna_vin, bob_vin)


# --- stations ---


@BOTH
async def test_operators_register_stations_and_owners_see_only_their_own(
    quick: Harness, protocol: str
) -> None:
    w = await world(quick)
    r = await w.post("/stations", w.anna, {"id": "HOME-X"})
    assert r.status_code == 403
    assert (await w.h.http.get("/api/v1/stations/HOME-X", headers=w.h.auth(w.op))).status_code == 404

    r = await w.post("/stations", w.op, {"id": "HOME-ANNA", "owner": "anna@example.com"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert len(created["password"]) >= 16 and created["owner"] == "anna@example.com"
    assert created["online"] is False and created["status"] == "offline" and created["connectors"] == []
    assert created["ocpp_url"] == f"ws://127.0.0.1:{w.h.platform.central.port}/ocpp"
    assert (await w.post("/stations", w.op, {"id": "HOME-ANNA"})).status_code == 409
    await register(w.h, w.op, "HOME-BOB", owner="bob@example.com")

    # the station is set up with exactly what the operator was given: the URL and the password
    async with connected(w.h, "HOME-ANNA", created["password"], protocol, url=created["ocpp_url"]) as cp:
        await boot(cp)
        await status(cp, "Available")
        station = await w.get("/stations/HOME-ANNA", w.anna)
        assert "password" not in station
        assert station["online"] is True and station["status"] == "online"
        assert station["protocol"] == protocol and station["vendor"] == "Acme"
        assert [(c["evse_id"], c["connector_id"], c["status"]) for c in station["connectors"]] == [
            (1, 1, "Available")
        ]
        await status(cp, "Charging" if protocol == "ocpp1.6" else "Occupied")
        station = await w.get("/stations/HOME-ANNA", w.anna)
        assert station["connectors"][0]["status"] == ("Charging" if protocol == "ocpp1.6" else "Occupied")
        if protocol == "ocpp1.6":
            await cp.call(
                call16.StatusNotification(connector_id=1, error_code="GroundFailure", status="Faulted")
            )
            station = await w.get("/stations/HOME-ANNA", w.op)
            assert station["status"] == "faulted"
            assert station["connectors"][0]["error_code"] == "GroundFailure"

        r = await w.h.http.get("/api/v1/stations/HOME-ANNA", headers=w.h.auth(w.bob))
        assert r.status_code == 404
        assert [s["id"] for s in await w.get("/stations", w.anna)] == ["HOME-ANNA"]
        assert [s["id"] for s in await w.get("/stations", w.bob)] == ["HOME-BOB"]
        assert [s["id"] for s in await w.get("/stations", w.op)] == ["HOME-ANNA", "HOME-BOB"]

    async def offline() -> bool:
        return (await w.get("/stations/HOME-ANNA", w.anna))["status"] == "offline"

    await eventually(offline, timeout=5)


# --- sessions: the list, its filters and the CSV export ---


async def test_sessions_list_filters_and_csv_on_postgresql(tmp_path: Path) -> None:
    async with running_platform(tmp_path, "postgresql", "embedded") as h:
        w = await world(h)
        r = await w.post("/tariffs", w.op, {"name": "std", "tariff": {"currency": "EUR", "per_kwh": "0.30"}})
        assert r.status_code == 201, r.text
        s16 = await register(h, w.op, "PUBLIC-16", tariff="std")
        s201 = await register(h, w.op, "PUBLIC-201", tariff="std")
        await w.tag("CARD-ANNA", owner="anna@example.com", vin=w.anna_vin)
        start = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
        async with connected(h, "PUBLIC-16", s16["password"]) as cp:
            tx = Transaction(cp, "CARD-ANNA")
            assert await tx.start(start, 1_000) == "Accepted"
            await tx.meter(start + timedelta(minutes=20), 5_000)
            await tx.stop(start + timedelta(minutes=40), 11_000)
        async with connected(h, "PUBLIC-201", s201["password"], "ocpp2.0.1") as cp:
            tx = Transaction(cp, w.bob_vin.lower())  # autocharge: the car's VIN is its id tag
            assert await tx.start(start + timedelta(hours=1), 0) == "Accepted"
            await tx.stop(start + timedelta(hours=2), 20_000)

        (anna,) = await w.get("/charging-sessions", w.op, station="PUBLIC-16")
        assert anna["vin"] == w.anna_vin and anna["linked_by"] == "id_tag" and anna["id_tag"] == "CARD-ANNA"
        assert anna["energy_wh"] == 10_000 and anna["cost"] == "3.00" and anna["currency"] == "EUR"
        assert anna["start"] == "2025-03-03T08:00:00Z" and anna["stop"] == "2025-03-03T08:40:00Z"
        assert anna["status"] == "ended" and anna["stop_reason"] == "EVDisconnected"
        (bob,) = await w.get("/charging-sessions", w.op, vin=w.bob_vin)
        assert bob["station"] == "PUBLIC-201" and bob["energy_wh"] == 20_000 and bob["cost"] == "6.00"
        assert bob["linked_by"] == "id_tag"
        assert await w.get("/charging-sessions", w.op, station="PUBLIC-16", vin=w.bob_vin) == []
        # owners see the sessions of their cards and cars only, whatever they filter on
        assert [s["id"] for s in await w.get("/charging-sessions", w.anna)] == [anna["id"]]
        assert [s["id"] for s in await w.get("/charging-sessions", w.bob)] == [bob["id"]]
        assert await w.get("/charging-sessions", w.anna, station="PUBLIC-201") == []
        r = await h.http.get(f"/api/v1/charging-sessions/{bob['id']}", headers=h.auth(w.anna))
        assert r.status_code == 404

        r = await h.http.get("/api/v1/charging-sessions", params={"format": "csv"}, headers=h.auth(w.op))
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        assert "attachment" in r.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(r.text)))
        header, body = rows[0], rows[1:]
        assert {"station", "vin", "start", "stop", "energy_wh", "cost", "currency"} <= set(header)
        assert len(body) == 2 and all(len(row) == len(header) for row in body)
        by_station = {row[header.index("station")]: dict(zip(header, row, strict=True)) for row in body}
        assert by_station["PUBLIC-16"]["energy_wh"] == "10000.0"
        assert by_station["PUBLIC-16"]["cost"] == "3.00"
        assert by_station["PUBLIC-16"]["vin"] == w.anna_vin
        assert by_station["PUBLIC-201"]["start"].startswith("2025-03-03T09:00:00")
        # the owner's export holds their own sessions only
        r = await h.http.get("/api/v1/charging-sessions", params={"format": "csv"}, headers=h.auth(w.bob))
        assert len(list(csv.reader(io.StringIO(r.text)))) == 2


async def test_csv_cells_never_start_a_formula(quick: Harness) -> None:
    """A spreadsheet runs a cell starting with = + - @ as a formula: such text is quoted with a '."""
    w = await world(quick)
    s = await register(quick, w.op, "=1+2")
    await w.tag("@SUM(1)")
    async with connected(quick, "=1+2", s["password"]) as cp:
        tx = Transaction(cp, "@SUM(1)")
        await tx.start(datetime(2025, 3, 3, 8, 0, tzinfo=UTC), 0)
        await tx.stop(datetime(2025, 3, 3, 9, 0, tzinfo=UTC), 1_000)
    r = await quick.http.get("/api/v1/charging-sessions", params={"format": "csv"}, headers=quick.auth(w.op))
    (row,) = list(csv.DictReader(io.StringIO(r.text)))
    assert row["station"] == "'=1+2" and row["id_tag"] == "'@SUM(1)"
    assert row["energy_wh"] == "1000.0"  # numbers stay numbers


# --- remote start and stop ---


@BOTH
async def test_remote_start_and_stop(quick: Harness, protocol: str) -> None:
    w = await world(quick)
    home = await register(quick, w.op, "HOME-ANNA", owner="anna@example.com")
    bobs = await register(quick, w.op, "HOME-BOB", owner="bob@example.com")
    await w.tag("CARD-ANNA", owner="anna@example.com")
    start_action = "RemoteStartTransaction" if protocol == "ocpp1.6" else "RequestStartTransaction"
    stop_action = "RemoteStopTransaction" if protocol == "ocpp1.6" else "RequestStopTransaction"
    async with (
        connected(quick, "HOME-ANNA", home["password"], protocol) as cp,
        connected(quick, "HOME-BOB", bobs["password"], protocol) as bob_cp,
    ):
        # Anna starts her own charger for her own car: the car's VIN is the id tag
        r = await w.post("/stations/HOME-ANNA/remote-start", w.anna, {"vin": w.anna_vin.lower()})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Accepted"
        (sent,) = cp.requests(start_action)
        if protocol == "ocpp1.6":
            assert sent["id_tag"] == w.anna_vin
        else:
            assert sent["id_token"] == {"id_token": w.anna_vin, "type": "Central"}
            assert isinstance(sent["remote_start_id"], int)

        # not Bob's charger, not Bob's car on her charger, not by an id tag that is not hers
        r = await w.post("/stations/HOME-BOB/remote-start", w.anna, {"vin": w.anna_vin})
        assert r.status_code == 404
        r = await w.post("/stations/HOME-ANNA/remote-start", w.anna, {"vin": w.bob_vin})
        assert r.status_code == 404
        r = await w.post("/stations/HOME-ANNA/remote-start", w.bob, {"vin": w.bob_vin})
        assert r.status_code == 404
        r = await w.post("/stations/HOME-ANNA/remote-start", w.anna, {})
        assert r.status_code == 422
        # a card that may not charge is refused here, not by the station after it started
        await w.tag("CARD-LOST", owner="anna@example.com")
        await w.post("/id-tags/CARD-LOST/block", w.op)
        r = await w.post("/stations/HOME-ANNA/remote-start", w.anna, {"id_tag": "CARD-LOST"})
        assert r.status_code == 409 and r.json()["detail"] == "id tag CARD-LOST may not charge: Blocked"
        r = await w.post("/stations/HOME-ANNA/remote-start", w.op, {"id_tag": "CARD-NOBODY"})
        assert r.status_code == 409
        assert len(cp.requests(start_action)) == 1 and bob_cp.received == []
        # OCPP 1.6 carries id tags of 20 characters, 2.0.1 of 36
        await w.tag("CARD-" + "X" * 20)
        r = await w.post("/stations/HOME-ANNA/remote-start", w.op, {"id_tag": "CARD-" + "X" * 20})
        assert r.status_code == (422 if protocol == "ocpp1.6" else 200), r.text
        if protocol == "ocpp2.0.1":
            assert cp.requests(start_action)[-1]["id_token"]["type"] == "ISO14443"  # a card, not a car

        # the operator starts any station, for any card
        r = await w.post("/stations/HOME-BOB/remote-start", w.op, {"id_tag": "CARD-ANNA", "evse_id": 1})
        assert r.status_code == 200, r.text
        (sent,) = bob_cp.requests(start_action)
        assert (sent.get("id_tag") or sent["id_token"]["id_token"]) == "CARD-ANNA"
        assert sent.get("connector_id", sent.get("evse_id")) == 1

        # nothing to stop yet
        r = await w.post("/stations/HOME-ANNA/remote-stop", w.anna)
        assert r.status_code == 404 and "no active session" in r.json()["detail"]

        # the station starts the transaction it was asked for; stopping finds it
        tx = Transaction(cp, w.anna_vin)
        assert await tx.start(datetime.now(UTC), 500) == "Accepted"
        (session,) = await w.get("/charging-sessions", w.anna, status="active")
        assert session["vin"] == w.anna_vin and session["linked_by"] == "id_tag"
        r = await w.post("/stations/HOME-ANNA/remote-stop", w.bob)
        assert r.status_code == 404
        r = await w.post("/stations/HOME-ANNA/remote-stop", w.anna)
        assert r.status_code == 200, r.text
        assert r.json()["detail"] == {"transaction_id": tx.id}
        (sent,) = cp.requests(stop_action)
        assert str(sent["transaction_id"]) == tx.id
        await tx.stop(datetime.now(UTC), 2_500, reason="Remote")
        (session,) = await w.get("/charging-sessions", w.anna, station="HOME-ANNA")
        assert session["status"] == "ended" and session["energy_wh"] == 2_000
        r = await w.post("/stations/HOME-ANNA/remote-stop", w.anna)
        assert r.status_code == 404


async def test_a_station_that_is_not_connected_gets_a_clear_409(quick: Harness) -> None:
    w = await world(quick)
    await register(quick, w.op, "CP-OFF", owner="anna@example.com")
    for path, body in [
        ("/stations/CP-OFF/remote-start", {"vin": w.anna_vin}),
        ("/stations/CP-OFF/reset", {}),
        ("/stations/CP-OFF/charging-profile", {"limit": 3_700}),
    ]:
        r = await w.post(path, w.op, body)
        assert r.status_code == 409, (path, r.text)
        assert r.json()["detail"] == "station CP-OFF is not connected"
    r = await quick.http.get("/api/v1/stations/CP-OFF/configuration", headers=quick.auth(w.op))
    assert r.status_code == 409 and "not connected" in r.json()["detail"]
    r = await w.post("/stations/CP-NOPE/reset", w.op)
    assert r.status_code == 404


@BOTH
async def test_a_station_that_does_not_answer_gets_a_clear_504(tmp_path: Path, protocol: str) -> None:
    async with running_platform(
        tmp_path, "sqlite", "embedded", ocpp={"port": 0, "response_timeout_s": 0.5}
    ) as h:
        w = await world(h)
        s = await register(h, w.op, "CP-SLOW")
        async with connected(h, "CP-SLOW", s["password"], protocol) as cp:
            cp.stall.add("Reset")
            began = time.monotonic()
            r = await w.post("/stations/CP-SLOW/reset", w.op, {"type": "hard"})
            assert r.status_code == 504, r.text
            assert r.json()["detail"] == "station CP-SLOW did not answer the reset in time"
            assert time.monotonic() - began < 3
            (sent,) = cp.requests("Reset")
            assert sent["type"] == ("Hard" if protocol == "ocpp1.6" else "Immediate")


# --- configuration, charging profiles and the other commands ---


@BOTH
async def test_configuration_is_read_and_written_through_the_api(quick: Harness, protocol: str) -> None:
    w = await world(quick)
    s = await register(quick, w.op, "CP-CFG", owner="anna@example.com")
    heartbeat = "HeartbeatInterval" if protocol == "ocpp1.6" else "OCPPCommCtrlr.HeartbeatInterval"
    other = "MeterValueSampleInterval" if protocol == "ocpp1.6" else "AlignedDataCtrlr.Interval"
    unknown = "NoSuchKey" if protocol == "ocpp1.6" else "NoSuch.Variable"
    url = "/api/v1/stations/CP-CFG/configuration"
    async with connected(quick, "CP-CFG", s["password"], protocol) as cp:
        got = await w.get("/stations/CP-CFG/configuration", w.op, key=[heartbeat, unknown])
        assert got["values"] == {
            heartbeat: {"value": "300", "readonly": got["values"][heartbeat]["readonly"]}
        }
        assert got["unknown"] == [unknown]

        r = await quick.http.put(
            url, json={"values": {heartbeat: "60", unknown: "1"}}, headers=quick.auth(w.op)
        )
        assert r.status_code == 200, r.text
        assert r.json() == {
            heartbeat: "Accepted",
            unknown: "NotSupported" if protocol == "ocpp1.6" else "UnknownVariable",
        }
        got = await w.get("/stations/CP-CFG/configuration", w.op)  # every key (2.0.1: a base report)
        assert {k: v["value"] for k, v in got["values"].items()} == {
            heartbeat: "60",
            other: "900" if protocol != "ocpp1.6" else "60",
        }
        if protocol == "ocpp1.6":
            assert cp.requests("ChangeConfiguration")[0] == {"key": heartbeat, "value": "60"}
        else:
            (report,) = cp.requests("GetBaseReport")
            assert report["report_base"] == "ConfigurationInventory"
            sent = cp.requests("SetVariables")[0]["set_variable_data"][0]
            assert sent == {
                "attribute_value": "60",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
            }
            # a 2.0.1 setting is Component.Variable: anything else is the caller's mistake, not the station's
            for bad in (
                "HeartbeatInterval",
                ".HeartbeatInterval",
                "OCPPCommCtrlr.",
                "A.B.C",
                "x" * 51 + ".Y",
            ):
                r = await quick.http.get(url, params={"key": bad}, headers=quick.auth(w.op))
                assert r.status_code == 422, (bad, r.text)
                r = await quick.http.put(url, json={"values": {bad: "1"}}, headers=quick.auth(w.op))
                assert r.status_code == 422, (bad, r.text)
                assert r.json()["detail"][0]["loc"] == ["body", "values", bad]
            # one bad key among good ones: none is written
            r = await quick.http.put(
                url, json={"values": {heartbeat: "30", "HeartbeatInterval": "30"}}, headers=quick.auth(w.op)
            )
            assert r.status_code == 422
            assert len(cp.requests("SetVariables")) == 2 and len(cp.requests("GetVariables")) == 1
        # owners may not reconfigure even their own charger
        r = await quick.http.put(url, json={"values": {heartbeat: "10"}}, headers=quick.auth(w.anna))
        assert r.status_code == 403


@BOTH
async def test_a_charging_profile_reaches_the_station_schema_valid(quick: Harness, protocol: str) -> None:
    w = await world(quick)
    s = await register(quick, w.op, "CP-LIM")
    async with connected(quick, "CP-LIM", s["password"], protocol) as cp:
        # the station's own library validated it against the official schema before recording it
        r = await w.post(
            "/stations/CP-LIM/charging-profile", w.op, {"limit": 16.1, "unit": "A", "evse_id": 1}
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Accepted"
        r = await w.post(
            "/stations/CP-LIM/charging-profile",
            w.op,
            {"limit": 7_400, "evse_id": 0, "duration_s": 3_600, "purpose": "ChargePointMaxProfile"},
        )
        assert r.status_code == 200, r.text
        first, second = cp.requests("SetChargingProfile")
        if protocol == "ocpp1.6":
            assert first["connector_id"] == 1
            schedule = first["cs_charging_profiles"]["charging_schedule"]
            assert first["cs_charging_profiles"]["charging_profile_purpose"] == "TxDefaultProfile"
            second_schedule = second["cs_charging_profiles"]["charging_schedule"]
            assert second["cs_charging_profiles"]["charging_profile_purpose"] == "ChargePointMaxProfile"
            assert second["cs_charging_profiles"]["charging_profile_kind"] == "Relative"
        else:
            assert first["evse_id"] == 1
            (schedule,) = first["charging_profile"]["charging_schedule"]
            (second_schedule,) = second["charging_profile"]["charging_schedule"]
            assert second["charging_profile"]["charging_profile_purpose"] == "ChargingStationMaxProfile"
        assert schedule["charging_rate_unit"] == "A"
        # (the library reads 1.6 limits as Decimal to check their one decimal place)
        assert [(p["start_period"], float(p["limit"])) for p in schedule["charging_schedule_period"]] == [
            (0, 16.1)
        ]
        assert second_schedule["charging_rate_unit"] == "W" and second_schedule["duration"] == 3_600
        assert float(second_schedule["charging_schedule_period"][0]["limit"]) == 7_400

        r = await quick.http.delete("/api/v1/stations/CP-LIM/charging-profile", headers=quick.auth(w.op))
        assert r.status_code == 200 and len(cp.requests("ClearChargingProfile")) == 1
        # what the station will apply, as numbers (the 1.6 library reads them as Decimal)
        got = await w.get("/stations/CP-LIM/composite-schedule", w.op, evse_id=1, duration_s=600)
        assert got["status"] == "Accepted"
        assert got["schedule"]["charging_schedule_period"] == [{"start_period": 0, "limit": 16.1}]


@BOTH
async def test_reset_unlock_firmware_trigger_and_availability(quick: Harness, protocol: str) -> None:
    w = await world(quick)
    s = await register(quick, w.op, "CP-OPS", owner="anna@example.com")
    v16 = protocol == "ocpp1.6"
    async with connected(quick, "CP-OPS", s["password"], protocol) as cp:
        r = await w.post("/stations/CP-OPS/reset", w.op, {"type": "soft"})
        assert r.status_code == 200 and r.json()["status"] == "Accepted"
        assert cp.requests("Reset") == [{"type": "Soft" if v16 else "OnIdle"}]
        assert (await w.post("/stations/CP-OPS/reset", w.anna)).status_code == 403

        # an owner may release a stuck cable on their own charger
        r = await w.post("/stations/CP-OPS/unlock", w.anna, {"evse_id": 1, "connector_id": 1})
        assert r.status_code == 200 and r.json()["status"] == "Unlocked"
        assert cp.requests("UnlockConnector") == [
            {"connector_id": 1} if v16 else {"evse_id": 1, "connector_id": 1}
        ]
        assert (await w.post("/stations/CP-OPS/unlock", w.bob)).status_code == 404

        at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
        r = await w.post(
            "/stations/CP-OPS/firmware",
            w.op,
            {"location": "https://fw.example.com/v2.bin", "retrieve_at": at.isoformat()},
        )
        assert r.status_code == 200 and r.json()["status"] == "Accepted"
        (fw,) = cp.requests("UpdateFirmware")
        if v16:
            assert fw["location"] == "https://fw.example.com/v2.bin"
            assert fw["retrieve_date"] == "2030-01-02T03:04:05.000Z"
        else:
            assert fw["firmware"] == {
                "location": "https://fw.example.com/v2.bin",
                "retrieve_date_time": "2030-01-02T03:04:05.000Z",
            }
        # the station tells how the update goes; the station page shows it
        if v16:
            await cp.call(call16.FirmwareStatusNotification(status="Downloading"))
        else:
            await cp.call(
                call201.FirmwareStatusNotification(status="Downloading", request_id=fw["request_id"])
            )
        assert (await w.get("/stations/CP-OPS", w.op))["firmware_status"] == "Downloading"

        r = await w.post("/stations/CP-OPS/trigger", w.op, {"message": "StatusNotification", "evse_id": 1})
        assert r.status_code == 200 and r.json()["status"] == "Accepted"
        (trigger,) = cp.requests("TriggerMessage")
        assert trigger["requested_message"] == "StatusNotification"
        assert trigger.get("connector_id") == 1 if v16 else trigger["evse"] == {"id": 1}
        r = await w.post("/stations/CP-OPS/trigger", w.op, {"message": "MakeCoffee"})
        assert r.status_code == 422, r.text
        assert len(cp.requests("TriggerMessage")) == 1

        until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        r = await w.post(
            "/stations/CP-OPS/reservations", w.op, {"evse_id": 1, "id_tag": "CARD-1", "expires_at": until}
        )
        assert r.status_code == 200 and r.json()["status"] == "Accepted", r.text
        reservation = r.json()["detail"]["reservation_id"]
        (sent,) = cp.requests("ReserveNow")
        assert sent.get("reservation_id", sent.get("id")) == reservation
        assert (sent.get("id_tag") or sent["id_token"]["id_token"]) == "CARD-1"
        r = await quick.http.delete(
            f"/api/v1/stations/CP-OPS/reservations/{reservation}", headers=quick.auth(w.op)
        )
        assert r.status_code == 200 and cp.requests("CancelReservation") == [{"reservation_id": reservation}]

        r = await w.post("/stations/CP-OPS/availability", w.op, {"evse_id": 0, "operative": False})
        assert r.status_code == 200 and r.json()["status"] == "Accepted"
        (change,) = cp.requests("ChangeAvailability")
        assert change == (
            {"connector_id": 0, "type": "Inoperative"} if v16 else {"operational_status": "Inoperative"}
        )


@BOTH
async def test_the_local_list_holds_every_id_tag_with_its_status(quick: Harness, protocol: str) -> None:
    w = await world(quick)
    s = await register(quick, w.op, "CP-LIST")
    await w.tag("CARD-OK", owner="anna@example.com")
    await w.tag("CARD-LOST", owner="anna@example.com")
    await w.tag("CARD-OLD", owner="bob@example.com", expires_at="2020-01-01T00:00:00Z")
    await w.tag("00:1A:2B:3C:4D:5E", kind="evccid", vin=w.bob_vin)
    assert (await w.post("/id-tags/CARD-LOST/block", w.op)).status_code == 200
    async with connected(quick, "CP-LIST", s["password"], protocol) as cp:
        r = await w.post("/stations/CP-LIST/local-list", w.op)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Accepted" and r.json()["detail"]["entries"] == 4
        (sent,) = cp.requests("SendLocalList")
        assert sent["update_type"] == "Full"
        if protocol == "ocpp1.6":
            entries = {e["id_tag"]: e["id_tag_info"]["status"] for e in sent["local_authorization_list"]}
        else:
            entries = {
                e["id_token"]["id_token"]: e["id_token_info"]["status"]
                for e in sent["local_authorization_list"]
            }
            types = {
                e["id_token"]["id_token"]: e["id_token"]["type"] for e in sent["local_authorization_list"]
            }
            assert types["CARD-OK"] == "ISO14443" and types["00:1A:2B:3C:4D:5E"] == "MacAddress"
        assert entries == {
            "CARD-OK": "Accepted",
            "CARD-LOST": "Blocked",
            "CARD-OLD": "Expired",
            "00:1A:2B:3C:4D:5E": "Accepted",
        }


# --- id tags ---


@BOTH
async def test_blocked_and_expired_cards_are_refused_and_a_vin_is_accepted(
    quick: Harness, protocol: str
) -> None:
    w = await world(quick)
    s = await register(quick, w.op, "CP-TAGS")
    await w.tag("CARD-LOST", owner="anna@example.com")
    await w.tag("CARD-OLD", owner="anna@example.com", expires_at="2020-01-01T00:00:00Z")
    assert (await w.post("/id-tags/CARD-LOST/block", w.op)).json()["blocked"] is True
    now = datetime.now(UTC)
    async with connected(quick, "CP-TAGS", s["password"], protocol) as cp:
        for tag, expected in [("CARD-LOST", "Blocked"), ("CARD-OLD", "Expired"), ("CARD-NOBODY", "Invalid")]:
            if protocol == "ocpp1.6":
                answer = (await cp.call(call16.Authorize(id_tag=tag))).id_tag_info
            else:
                answer = (
                    await cp.call(call201.Authorize(id_token={"id_token": tag, "type": "ISO14443"}))
                ).id_token_info
            assert answer["status"] == expected, tag
        # a card valid until a date: the station may cache it until then, not longer
        await w.tag("CARD-TEMP", owner="anna@example.com", expires_at="2099-01-01T00:00:00Z")
        if protocol == "ocpp1.6":
            answer = (await cp.call(call16.Authorize(id_tag="CARD-TEMP"))).id_tag_info
            assert answer == {"status": "Accepted", "expiry_date": "2099-01-01T00:00:00.000Z"}
        else:
            token = {"id_token": "CARD-TEMP", "type": "ISO14443"}
            answer = (await cp.call(call201.Authorize(id_token=token))).id_token_info
            assert answer == {"status": "Accepted", "cache_expiry_date_time": "2099-01-01T00:00:00.000Z"}

        # The station starts charging before it hears back (offline, or it trusted its cache); told the
        # card is blocked it stops the transaction (DeAuthorized). The session keeps what really happened.
        refused = Transaction(cp, "CARD-LOST")
        assert await refused.start(now, 1_000) == "Blocked"
        (session,) = await w.get("/charging-sessions", w.op, status="active")
        assert session["id_tag"] == "CARD-LOST" and session["stop_reason"] == "DeAuthorized (Blocked)"
        # the operator can still stop it, in case the station does not
        r = await w.post("/stations/CP-TAGS/remote-stop", w.op)
        assert r.status_code == 200, r.text
        await refused.meter(now + timedelta(seconds=5), 1_020)
        await refused.stop(now + timedelta(seconds=10), 1_030, reason="DeAuthorized")
        (session,) = await w.get("/charging-sessions", w.op, station="CP-TAGS")
        assert session["status"] == "ended" and session["stop_reason"] == "DeAuthorized (Blocked)"
        assert session["energy_wh"] == 30 and session["duration_s"] == 10
        assert session["vin"] is None

        expired = Transaction(cp, "CARD-OLD")
        assert await expired.start(now, 0) == "Expired"
        await expired.stop(now + timedelta(seconds=1), 0, reason="DeAuthorized")

        # autocharge: the car's VIN is accepted as its tag and links the session to the car
        car = Transaction(cp, w.bob_vin)
        assert await car.start(now, 2_000) == "Accepted"
        await car.stop(now + timedelta(minutes=30), 9_000)
    sessions = {s["id_tag"]: s for s in await w.get("/charging-sessions", w.op, station="CP-TAGS")}
    assert sessions["CARD-OLD"]["stop_reason"] == "DeAuthorized (Expired)"
    assert sessions[w.bob_vin]["vin"] == w.bob_vin and sessions[w.bob_vin]["linked_by"] == "id_tag"
    assert sessions[w.bob_vin]["stop_reason"] == "EVDisconnected"
    (bobs,) = await w.get(f"/vehicles/{w.bob_vin}/charging-sessions", w.bob)
    assert bobs["energy_wh"] == 7_000
    r = await quick.http.get(f"/api/v1/vehicles/{w.bob_vin}/charging-sessions", headers=quick.auth(w.anna))
    assert r.status_code == 404


# --- costs ---


@BOTH
async def test_a_time_of_use_session_is_priced_by_the_period_of_each_kwh(
    quick: Harness, protocol: str
) -> None:
    w = await world(quick)
    tariff = {
        "currency": "EUR",
        "per_kwh": "0.40",
        "timezone": "Europe/Berlin",
        "periods": [{"start": "22:00", "end": "06:00", "per_kwh": "0.20"}],
    }
    assert (await w.post("/tariffs", w.op, {"name": "night", "tariff": tariff})).status_code == 201
    priced = await register(quick, w.op, "CP-TOU", tariff="night")
    free = await register(quick, w.op, "CP-FREE")
    await w.tag("CARD", owner="anna@example.com")
    start = datetime(2025, 6, 1, 19, 30, tzinfo=UTC)  # 21:30 in Berlin (summer time)
    async with connected(quick, "CP-TOU", priced["password"], protocol) as cp:
        tx = Transaction(cp, "CARD")
        await tx.start(start, 100_000)
        await tx.meter(start + timedelta(minutes=20), 106_000)  # 6 kWh by 21:50, all at the day rate
        await tx.stop(start + timedelta(minutes=60), 110_000)  # 4 kWh more: 1 by 22:00, 3 at night
    async with connected(quick, "CP-FREE", free["password"], protocol) as cp:
        tx = Transaction(cp, "CARD")
        await tx.start(start, 0)
        await tx.stop(start + timedelta(minutes=60), 10_000)
    (session,) = await w.get("/charging-sessions", w.anna, station="CP-TOU")
    assert session["energy_wh"] == 10_000
    # 7 kWh × 0.40 + 3 kWh × 0.20
    assert session["cost"] == "3.40" and session["currency"] == "EUR"
    assert session["cost_breakdown"]["energy"] == "3.40"
    (session,) = await w.get("/charging-sessions", w.anna, station="CP-FREE")
    assert session["energy_wh"] == 10_000 and session["cost"] is None and session["currency"] is None


# --- the OpenAPI schema ---


async def test_the_openapi_schema_lists_every_charging_route(quick: Harness) -> None:
    r = await quick.http.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    expected = {
        "/api/v1/stations": {"get", "post"},
        "/api/v1/stations/{station_id}": {"get"},
        "/api/v1/stations/{station_id}/password": {"post"},
        "/api/v1/stations/{station_id}/configuration": {"get", "put"},
        "/api/v1/stations/{station_id}/remote-start": {"post"},
        "/api/v1/stations/{station_id}/remote-stop": {"post"},
        "/api/v1/stations/{station_id}/reset": {"post"},
        "/api/v1/stations/{station_id}/unlock": {"post"},
        "/api/v1/stations/{station_id}/availability": {"post"},
        "/api/v1/stations/{station_id}/trigger": {"post"},
        "/api/v1/stations/{station_id}/charging-profile": {"post", "delete"},
        "/api/v1/stations/{station_id}/composite-schedule": {"get"},
        "/api/v1/stations/{station_id}/firmware": {"post"},
        "/api/v1/stations/{station_id}/reservations": {"post"},
        "/api/v1/stations/{station_id}/reservations/{reservation_id}": {"delete"},
        "/api/v1/stations/{station_id}/local-list": {"post"},
        "/api/v1/id-tags": {"get", "post"},
        "/api/v1/id-tags/{tag}/block": {"post"},
        "/api/v1/tariffs": {"get", "post"},
        "/api/v1/charging-sessions": {"get"},
        "/api/v1/charging-sessions/{session_id}": {"get"},
        "/api/v1/vehicles/{vin}/charging-sessions": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    # clients can tell an offline station (409) from one that did not answer (504)
    assert {"404", "409", "504"} <= set(
        paths["/api/v1/stations/{station_id}/remote-start"]["post"]["responses"]
    )
    csv_answer = paths["/api/v1/charging-sessions"]["get"]["responses"]["200"]["content"]
    assert "text/csv" in csv_answer and "application/json" in csv_answer
