"""Interoperability: full OCPP 1.6 and 2.0.1 sessions driven by the npm `ocpp-rpc` client in strict mode
(every frame both ways validated against the official schemas) — a charge point we did not write."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from .helpers import register
from conftest import Harness, eventually, unavailable

INTEROP = Path(__file__).parent / "interop"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (INTEROP / "node_modules" / "ocpp-rpc").exists():
        unavailable("node with ocpp-rpc (npm ci --prefix tests/csms/interop)")
    assert node is not None
    return node


async def station(
    h: Harness, station_id: str, password: str, protocol: str, *args: str
) -> tuple[int, list[Any]]:
    proc = await asyncio.create_subprocess_exec(
        _node(),
        str(INTEROP / "station.mjs"),
        "--url",
        f"ws://127.0.0.1:{h.platform.central.port}/ocpp",
        "--id",
        station_id,
        f"--password={password}",  # a random password may start with "-"
        "--protocol",
        protocol,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = [orjson.loads(line) for line in out.splitlines() if line.strip()]
    assert proc.returncode is not None
    if proc.returncode not in (0, 2):
        print(out.decode(), err.decode())
    return proc.returncode, lines


def step(lines: list[Any], name: str) -> dict[str, Any]:
    found = [line for line in lines if line.get("step") == name]
    assert found, f"no {name} step in {lines}"
    result: dict[str, Any] = found[-1]
    return result


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_full_session_from_ocpp_rpc_is_stored(quick: Harness, protocol: str) -> None:
    h = quick
    op = await h.user("op@example.com", "operator")
    await h.user("anna@example.com", "owner")
    r = await h.http.post(
        "/api/v1/id-tags", json={"tag": "TAG-ANNA", "owner": "anna@example.com"}, headers=h.auth(op)
    )
    assert r.status_code == 201
    st = await register(h, op, "RPC-1")
    code, lines = await station(
        h, "RPC-1", st["password"], protocol, "--id-tag", "TAG-ANNA", "--scenario", "session"
    )
    assert code == 0, lines
    summary = step(lines, "summary")
    r = await h.http.get("/api/v1/charging-sessions", params={"station": "RPC-1"}, headers=h.auth(op))
    (session,) = r.json()
    assert session["transaction_id"] == str(summary["transactionId"])
    assert session["status"] == "ended"
    assert session["energy_wh"] == summary["energyWh"] == 7500


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_remote_start_and_stop_reach_an_ocpp_rpc_station(quick: Harness, protocol: str) -> None:
    h = quick
    op = await h.user("op@example.com", "operator")
    await h.user("anna@example.com", "owner")
    await h.http.post(
        "/api/v1/id-tags", json={"tag": "TAG-ANNA", "owner": "anna@example.com"}, headers=h.auth(op)
    )
    st = await register(h, op, "RPC-2")
    run = asyncio.create_task(
        station(
            h,
            "RPC-2",
            st["password"],
            protocol,
            "--id-tag",
            "TAG-ANNA",
            "--scenario",
            "remote",
            "--timeout",
            "30",
        )
    )
    await eventually(lambda: _online(h, "RPC-2"), timeout=15)
    # the station's configuration, read and written through the API, answered in strict mode
    key = "HeartbeatInterval" if protocol == "ocpp1.6" else "OCPPCommCtrlr.HeartbeatInterval"
    r = await h.http.put(
        "/api/v1/stations/RPC-2/configuration", json={"values": {key: "120"}}, headers=h.auth(op)
    )
    assert r.status_code == 200, r.text
    r = await h.http.post(
        "/api/v1/stations/RPC-2/charging-profile",
        json={"limit": 7400, "unit": "W", "evse_id": 1},
        headers=h.auth(op),
    )
    assert r.status_code == 200 and r.json()["status"] == "Accepted", r.text
    r = await h.http.post(
        "/api/v1/stations/RPC-2/remote-start", json={"id_tag": "TAG-ANNA", "evse_id": 1}, headers=h.auth(op)
    )
    assert r.status_code == 200 and r.json()["status"] == "Accepted", r.text

    async def active() -> bool:
        r = await h.http.get(
            "/api/v1/charging-sessions", params={"station": "RPC-2", "status": "active"}, headers=h.auth(op)
        )
        return bool(r.json())

    await eventually(active, timeout=15)
    r = await h.http.post("/api/v1/stations/RPC-2/remote-stop", json={}, headers=h.auth(op))
    assert r.status_code == 200 and r.json()["status"] == "Accepted", r.text
    code, lines = await run
    assert code == 0, lines
    r = await h.http.get("/api/v1/charging-sessions", params={"station": "RPC-2"}, headers=h.auth(op))
    (session,) = r.json()
    assert session["status"] == "ended" and session["energy_wh"] == 5000
    assert session["stop_reason"] == "Remote"


async def _online(h: Harness, station_id: str) -> bool:
    return h.platform.central.online(station_id)


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_ocpp_rpc_with_a_wrong_password_gets_401(quick: Harness, protocol: str) -> None:
    h = quick
    op = await h.user("op@example.com", "operator")
    await register(h, op, "RPC-3")
    code, lines = await station(
        h, "RPC-3", "not-the-password-at-all", protocol, "--id-tag", "X", "--scenario", "session"
    )
    assert code == 2
    assert step(lines, "connect")["error"]["code"] == 401
