"""Full charging sessions over OCPP 1.6J and 2.0.1 with the `ocpp` library as the charge point, on both
databases: what the station sends is stored, linked to the owner's car and priced."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201

from .helpers import connected, register, ts
from conftest import Harness, eventually, running_platform

VIN = "WSE00000000000001"


@pytest.fixture(params=["sqlite", "postgresql"])
async def h(request: pytest.FixtureRequest, tmp_path) -> Harness:  # type: ignore[no-untyped-def]
    async with running_platform(tmp_path, request.param, "embedded") as harness:
        yield harness


async def _setup(h: Harness) -> tuple[str, str]:
    op = await h.user("op@example.com", "operator")
    owner = await h.user("anna@example.com", "owner")

    r = await h.http.post(
        "/api/v1/tariffs",
        json={"name": "standard", "tariff": {"currency": "EUR", "per_kwh": "0.30", "per_minute": "0"}},
        headers=h.auth(op),
    )
    assert r.status_code == 201, r.text
    return op, owner


async def test_a_16_session_is_stored_linked_to_the_card_owner_and_priced(h: Harness) -> None:
    op, owner = await _setup(h)
    station = await register(h, op, "CP-16-1", owner="anna@example.com", tariff="standard")
    r = await h.http.post(
        "/api/v1/id-tags", json={"tag": "CARD-ANNA", "owner": "anna@example.com"}, headers=h.auth(op)
    )
    assert r.status_code == 201, r.text
    start = datetime.now(UTC)
    async with connected(h, "CP-16-1", station["password"]) as cp:
        boot = await cp.call(
            c16.BootNotification(charge_point_model="Wallbox 11", charge_point_vendor="Acme")
        )
        assert boot.status == "Accepted"
        await cp.call(c16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        auth = await cp.call(c16.Authorize(id_tag="CARD-ANNA"))
        assert auth.id_tag_info["status"] == "Accepted"
        started = await cp.call(
            c16.StartTransaction(connector_id=1, id_tag="CARD-ANNA", meter_start=120_000, timestamp=ts(start))
        )
        assert started.id_tag_info["status"] == "Accepted"
        tx = started.transaction_id
        for i, energy in enumerate((122_000, 125_000)):
            await cp.call(
                c16.MeterValues(
                    connector_id=1,
                    transaction_id=tx,
                    meter_value=[
                        {
                            "timestamp": ts(start, minutes=10 * (i + 1)),
                            "sampledValue": [
                                {
                                    "value": str(energy),
                                    "measurand": "Energy.Active.Import.Register",
                                    "unit": "Wh",
                                },
                                {"value": "11.0", "measurand": "Power.Active.Import", "unit": "kW"},
                                {"value": str(40 + 10 * i), "measurand": "SoC", "unit": "Percent"},
                            ],
                        }
                    ],
                )
            )
        stopped = await cp.call(
            c16.StopTransaction(
                meter_stop=130_000,
                timestamp=ts(start, minutes=30),
                transaction_id=tx,
                reason="EVDisconnected",
            )
        )
        assert stopped is not None
        r = await h.http.get("/api/v1/stations/CP-16-1", headers=h.auth(owner))
        assert r.status_code == 200
        body = r.json()
        assert body["online"] is True and body["vendor"] == "Acme"
        assert body["connectors"][0]["status"] == "Preparing"
    r = await h.http.get("/api/v1/charging-sessions", params={"station": "CP-16-1"}, headers=h.auth(owner))
    assert r.status_code == 200, r.text
    (session,) = r.json()
    assert session["transaction_id"] == str(tx)
    assert session["energy_wh"] == 10_000
    assert session["status"] == "ended" and session["stop_reason"] == "EVDisconnected"
    assert session["duration_s"] == pytest.approx(1800, abs=1)
    assert session["cost"] == "3.00" and session["currency"] == "EUR"
    assert session["soc_start"] == 40 and session["soc_stop"] == 50
    offline = await eventually(lambda: _offline(h, "CP-16-1"), timeout=5)
    assert offline


async def _offline(h: Harness, station_id: str) -> bool:
    return not h.platform.central.online(station_id)


async def test_a_201_session_applies_events_once_and_in_order(h: Harness) -> None:
    op, _ = await _setup(h)
    station = await register(h, op, "CP-201-1", tariff="standard")
    r = await h.http.post(
        "/api/v1/id-tags", json={"tag": "CARD-B", "owner": "anna@example.com"}, headers=h.auth(op)
    )
    start = datetime.now(UTC)
    tx = str(uuid.uuid4())

    def event(kind: str, seq: int, minutes: float, energy: float, **extra: object) -> c201.TransactionEvent:
        return c201.TransactionEvent(
            event_type=kind,
            timestamp=ts(start, minutes=minutes),
            trigger_reason=extra.pop("trigger", "MeterValuePeriodic"),
            seq_no=seq,
            transaction_info={"transaction_id": tx, **extra.pop("info", {})},
            evse={"id": 1, "connector_id": 1},
            meter_value=[
                {
                    "timestamp": ts(start, minutes=minutes),
                    "sampled_value": [{"value": energy, "measurand": "Energy.Active.Import.Register"}],
                }
            ],
            **extra,
        )

    async with connected(h, "CP-201-1", station["password"], "ocpp2.0.1") as cp:
        boot = await cp.call(
            c201.BootNotification(
                charging_station={"model": "DC 50", "vendor_name": "Acme"}, reason="PowerUp"
            )
        )
        assert boot.status == "Accepted"
        res = await cp.call(
            event(
                "Started",
                0,
                0,
                5_000,
                trigger="Authorized",
                id_token={"id_token": "CARD-B", "type": "ISO14443"},
            )
        )
        assert res.id_token_info["status"] == "Accepted"
        await cp.call(event("Updated", 1, 10, 9_000))
        await cp.call(event("Updated", 1, 10, 9_000))  # a replay: applied once
        await cp.call(event("Updated", 2, 20, 13_000, offline=True))
        await cp.call(
            event(
                "Ended",
                3,
                30,
                15_000,
                trigger="EVCommunicationLost",
                info={"stopped_reason": "EVDisconnected"},
            )
        )
        # an ended transaction is never reopened
        await cp.call(event("Updated", 4, 40, 99_000))
    r = await h.http.get("/api/v1/charging-sessions", params={"station": "CP-201-1"}, headers=h.auth(op))
    (session,) = r.json()
    assert session["transaction_id"] == tx
    assert session["status"] == "ended"
    assert session["energy_wh"] == 10_000
    assert session["offline"] is True
    assert session["stop_reason"] == "EVDisconnected"
    assert session["cost"] == "3.00"


async def test_a_nan_meter_value_is_ignored_and_the_session_still_ends(h: Harness) -> None:
    op, _ = await _setup(h)
    station = await register(h, op, "CP-NAN")
    await h.http.post(
        "/api/v1/id-tags", json={"tag": "CARD-N", "owner": "anna@example.com"}, headers=h.auth(op)
    )
    start = datetime.now(UTC)
    async with connected(h, "CP-NAN", station["password"]) as cp:
        started = await cp.call(
            c16.StartTransaction(connector_id=1, id_tag="CARD-N", meter_start=1_000, timestamp=ts(start))
        )
        bad = [{"timestamp": ts(start, minutes=5), "sampledValue": [{"value": "NaN"}, {"value": "inf"}]}]
        tx = started.transaction_id
        assert await cp.call(c16.MeterValues(connector_id=1, transaction_id=tx, meter_value=bad)) is not None
        await cp.call(
            c16.StopTransaction(
                meter_stop=4_000, timestamp=ts(start, minutes=10), transaction_id=tx, transaction_data=bad
            )
        )
    r = await h.http.get("/api/v1/charging-sessions", params={"station": "CP-NAN"}, headers=h.auth(op))
    (session,) = r.json()
    assert session["status"] == "ended" and session["energy_wh"] == 3_000
