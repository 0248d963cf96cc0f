"""The `smartev` command as a user runs it: migrations, users, serve on busy ports, broker files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import fresh_database

SMARTEV = [sys.executable, "-m", "smartev"]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SMARTEV, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
async def test_db_upgrade_and_users_create(tmp_path: Path, db: str) -> None:
    async with fresh_database(db, tmp_path) as url:
        plain = url.replace("+asyncpg", "").replace("+aiosqlite", "")
        r = run("db", "upgrade", "--database-url", plain)
        assert r.returncode == 0, r.stderr + r.stdout
        assert "up to date" in r.stdout
        r = run(
            "users",
            "create",
            "Ops@Example.com",
            "--password",
            "s3cret-pass",
            "--role",
            "operator",
            "--database-url",
            plain,
        )
        assert r.returncode == 0, r.stderr + r.stdout
        assert "created operator ops@example.com" in r.stdout
        again = run(
            "users", "create", "ops@example.com", "--password", "s3cret-pass", "--database-url", plain
        )
        assert again.returncode == 1 and "exists already" in again.stdout
        bad = run(
            "users",
            "create",
            "x@example.com",
            "--password",
            "s3cret-pass",
            "--role",
            "king",
            "--database-url",
            plain,
        )
        assert bad.returncode == 2 and "owner, operator, admin" in bad.stdout


def test_serve_refuses_a_busy_mqtt_port_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run(
            "serve", "--mqtt-port", str(port), "--http-port", str(free_port()), "--data-dir", str(tmp_path)
        )
    assert r.returncode == 1
    assert f"MQTT port {port} is in use" in r.stdout and "--mqtt-port" in r.stdout


def test_serve_runs_and_answers_health(tmp_path: Path) -> None:
    http_port, mqtt_port = free_port(), free_port()
    env = {
        "SMARTEV_HTTP_PORT": str(http_port),
        "SMARTEV_MQTT_PORT": str(mqtt_port),
        "SMARTEV_DATA_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [*SMARTEV, "serve"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        body = None
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{http_port}/api/v1/health", timeout=1)
                body = r.json()
                if body["status"] == "ok":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert body is not None and body["status"] == "ok", body
        assert body["broker"]["url"] == f"mqtt://127.0.0.1:{mqtt_port}"
        assert (tmp_path / "smartev.db").exists()
        page = httpx.get(f"http://127.0.0.1:{http_port}/", timeout=2, follow_redirects=True)
        assert page.status_code == 200 and "smartev" in page.text
    finally:
        proc.terminate()
        proc.wait(10)


async def test_mqtt_acl_writes_mosquitto_files(tmp_path: Path) -> None:
    db = tmp_path / "acl.db"
    url = f"sqlite:///{db}"
    assert (
        run(
            "users", "create", "o@example.com", "--password", "owner-pass-1", "--database-url", url
        ).returncode
        == 0
    )
    # register a car through the service (the API needs a running server; the CLI reads the database)
    from smartev.accounts.security import TokenSigner
    from smartev.accounts.service import Accounts
    from smartev.db.engine import create_engine, session_factory
    from smartev.vehicles.service import Registry
    from smartev.vss import default_catalog

    engine = create_engine(url)
    accounts = Accounts(session_factory(engine), TokenSigner("k" * 40, 60))
    registry = Registry(engine, session_factory(engine), accounts)
    await registry.load(default_catalog())
    await registry.register("1M8GDM9AXKP042788", "S1", "o@example.com")
    await engine.dispose()
    out = tmp_path / "mosq"
    r = run(
        "mqtt", "acl", "--out", str(out), "--service-password", "platform-pass-123456", "--database-url", url
    )
    assert r.returncode == 0, r.stderr + r.stdout
    files = {p.name: p.read_text() for p in out.iterdir()}
    passwd = next(v for k, v in files.items() if "passw" in k)
    acl = next(v for k, v in files.items() if "acl" in k)
    assert "1M8GDM9AXKP042788:$7$" in passwd and "smartev-platform:$7$" in passwd
    assert "%u" in acl


def test_simulate_registers_cars_through_the_api_and_drives_them(tmp_path: Path) -> None:
    http_port, mqtt_port = free_port(), free_port()
    env = {
        "SMARTEV_HTTP_PORT": str(http_port),
        "SMARTEV_MQTT_PORT": str(mqtt_port),
        "SMARTEV_DATA_DIR": str(tmp_path),
    }
    assert (
        run(
            "users",
            "create",
            "sim-ops@example.com",
            "--password",
            "sim-operator-pw",
            "--role",
            "operator",
            env=env,
        ).returncode
        == 0
    )
    server = subprocess.Popen(
        [*SMARTEV, "serve"], env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    sim = None
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        sim_env = {
            **os.environ,
            **env,
            "SMARTEV_USER": "sim-ops@example.com",
            "SMARTEV_PASSWORD": "sim-operator-pw",
        }
        sim = subprocess.Popen(
            [*SMARTEV, "simulate", "--api-url", base, "--cars", "3", "--seed", "5"],
            env=sim_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        token = httpx.post(
            f"{base}/api/v1/auth/token",
            data={"username": "sim-ops@example.com", "password": "sim-operator-pw"},
        ).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        deadline = time.monotonic() + 40
        cars: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            cars = httpx.get(f"{base}/api/v1/vehicles", headers=headers).json()
            if len(cars) == 3 and all(c["online"] for c in cars):
                break
            time.sleep(0.3)
        assert len(cars) == 3 and all(c["online"] for c in cars), cars
        state = httpx.get(f"{base}/api/v1/vehicles/{cars[0]['vin']}/state", headers=headers).json()
        assert "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current" in state["signals"]
        # a second run with the same seed finds its cars registered and gets fresh credentials
        sim.terminate()
        sim.wait(10)
        again = subprocess.Popen(
            [*SMARTEV, "simulate", "--api-url", base, "--cars", "3", "--seed", "5"],
            env=sim_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        sim = again
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline and again.stdout is not None:
            line = again.stdout.readline()
            if "cars driving" in line or again.poll() is not None:
                break
        assert "3 cars driving" in line, line
        assert len(httpx.get(f"{base}/api/v1/vehicles", headers=headers).json()) == 3
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait(10)
        server.terminate()
        server.wait(10)
