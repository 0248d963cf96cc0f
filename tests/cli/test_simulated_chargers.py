"""Simulated charging stations from the command line: `smartev simulate --chargers` and `smartev demo`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from smartev.sim.city import FAST_CHARGERS

from conftest import eventually
from processes import Server, create_user, free_port

SMARTEV = [sys.executable, "-m", "smartev"]
FAST_CHARGER_PLACES = {
    (round(c.place.latitude, 6), round(c.place.longitude, 6)) for c in FAST_CHARGERS if c.place is not None
}


@contextmanager
def smartev(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """The command in a subprocess, stopped with Ctrl+C (SIGINT) at the end if still running."""
    proc = subprocess.Popen(
        [*SMARTEV, *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def ctrl_c(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Press Ctrl+C; the exit code and everything the command printed."""
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=15)
    return proc.returncode, out


async def login(http: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    r = await http.post("/api/v1/auth/token", data={"username": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def stations_online(http: httpx.AsyncClient, headers: dict[str, str], count: int) -> list[Any]:
    stations: list[Any] = (await http.get("/api/v1/stations", headers=headers)).json()
    return stations if len(stations) == count and all(s["online"] for s in stations) else []


async def test_simulate_registers_chargers_that_come_online_and_store_sessions(tmp_path: Path) -> None:
    env = {
        "SMARTEV_HTTP_PORT": str(free_port()),
        "SMARTEV_MQTT_PORT": str(free_port()),
        "SMARTEV_OCPP__PORT": str(free_port()),
        "SMARTEV_DATA_DIR": str(tmp_path),
    }
    create_user(env, "cpo@example.com", "cpo-operator-pw", "operator")
    server = Server(env)
    await server.start()
    sim_env = {**env, "SMARTEV_USER": "cpo@example.com", "SMARTEV_PASSWORD": "cpo-operator-pw"}
    args = ("simulate", "--api-url", server.http, "--chargers", "5", "--cars", "0", "--speed", "600")
    try:
        async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
            headers = await login(http, "cpo@example.com", "cpo-operator-pw")
            with smartev(*args, "--seed", "3", env=sim_env) as sim:
                stations = await eventually(
                    lambda: stations_online(http, headers, 5), timeout=30, interval=0.3
                )
                assert [s["id"] for s in stations] == [f"SIM-CP-{n:04d}" for n in range(1, 6)]
                assert {s["protocol"] for s in stations} == {"ocpp1.6", "ocpp2.0.1"}
                assert all(s["tariff"] == "standard" and s["latitude"] is not None for s in stations)
                at_fast_chargers = [
                    s for s in stations if (s["latitude"], s["longitude"]) in FAST_CHARGER_PLACES
                ]
                assert len(at_fast_chargers) == 2, stations

                async def ended_sessions() -> list[Any]:
                    r = await http.get(
                        "/api/v1/charging-sessions", headers=headers, params={"status": "ended"}
                    )
                    return [s for s in r.json() if s["energy_wh"] > 0]

                sessions = await eventually(ended_sessions, timeout=40, interval=0.5)
                assert all(s["station"].startswith("SIM-CP-") and s["id_tag"] for s in sessions)
                assert all(s["currency"] == "EUR" and float(s["cost"]) > 0 for s in sessions), sessions
                tariffs = (await http.get("/api/v1/tariffs", headers=headers)).json()
                assert [t["name"] for t in tariffs] == ["standard"]

                code, out = ctrl_c(sim)
                assert code == 0 and "simulation stopped" in out, out
                assert "5 charging stations (2 DC, 3 AC" in out, out

                async def all_offline() -> bool:
                    stations = (await http.get("/api/v1/stations", headers=headers)).json()
                    return not any(s["online"] for s in stations)

                await eventually(all_offline, timeout=10, interval=0.2)

            # the same seed again: the stations are registered already and get fresh passwords
            with smartev(*args, "--seed", "3", env=sim_env) as again:
                stations = await eventually(
                    lambda: stations_online(http, headers, 5), timeout=30, interval=0.3
                )
                code, out = ctrl_c(again)
                assert code == 0 and "simulation stopped" in out, out
    finally:
        server.stop()


async def test_demo_runs_chargers_with_a_home_wallbox_per_owner_and_sessions(tmp_path: Path) -> None:
    http_port, mqtt_port, ocpp_port = free_port(), free_port(), free_port()
    args = (
        "demo",
        "--cars",
        "3",
        "--chargers",
        "6",
        "--speed",
        "300",
        "--http-port",
        str(http_port),
        "--mqtt-port",
        str(mqtt_port),
        "--ocpp-port",
        str(ocpp_port),
        "--data-dir",
        str(tmp_path),
    )
    with smartev(*args) as demo:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as http:

            async def demo_users_exist() -> bool:
                data = {"username": "operator@demo.smartev", "password": "demo-operator-pw"}
                try:
                    return (await http.post("/api/v1/auth/token", data=data)).status_code == 200
                except httpx.HTTPError:
                    return demo.poll() is not None  # it died: fail below with its output

            await eventually(demo_users_exist, timeout=30, interval=0.2)
            assert demo.poll() is None, demo.communicate()[0]
            operator = await login(http, "operator@demo.smartev", "demo-operator-pw")
            stations = await eventually(lambda: stations_online(http, operator, 6), timeout=30, interval=0.3)
            homes = {s["id"]: s["owner"] for s in stations if s["owner"]}
            assert homes == {"DEMO-HOME-1": "owner@demo.smartev", "DEMO-HOME-2": "neighbour@demo.smartev"}
            public = [s for s in stations if not s["owner"]]
            assert len(public) == 4 and all(s["tariff"] == "standard" for s in public)
            assert all((s["latitude"], s["longitude"]) in FAST_CHARGER_PLACES for s in public)

            owner = await login(http, "owner@demo.smartev", "demo-owner-pw")
            assert [s["id"] for s in (await http.get("/api/v1/stations", headers=owner)).json()] == [
                "DEMO-HOME-1"
            ]
            # her wallbox is smart-charged at home: 80 % by 7:00, in the night rate's hours
            (home,) = (await http.get("/api/v1/sites", headers=owner)).json()
            assert [s["station_id"] for s in home["stations"]] == ["DEMO-HOME-1"]
            assert (home["ready_by"], home["target_soc"], home["objective"]) == ("07:00", 80, "cheapest")
            r = await http.get(f"/api/v1/sites/{home['id']}/plan", headers=owner)
            assert r.status_code == 200 and r.json()["limit_a"] == [25, 25, 25], r.text
            tags = (await http.get("/api/v1/id-tags", headers=operator)).json()
            assert {"rfid", "vin"} <= {t["kind"] for t in tags}
            assert any(t["kind"] == "rfid" and t["owner"] == "owner@demo.smartev" for t in tags)

            async def sessions() -> list[Any]:
                found: list[Any] = (await http.get("/api/v1/charging-sessions", headers=operator)).json()
                return found

            stored = await eventually(sessions, timeout=30, interval=0.5)
            assert all(s["station"].startswith("DEMO-") for s in stored)

        code, out = ctrl_c(demo)
    assert code == 0 and "demo stopped" in out, out
    assert f"ws://127.0.0.1:{ocpp_port}/ocpp/{{station}}" in out and "/api/v1/stations" in out, out
