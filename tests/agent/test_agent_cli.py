"""`smartev agent run` and `smartev agent status` as a user runs them: killed with -9 and started again, the
spool hands everything it held to the platform; the status tells what waits and what was dropped."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from smartev.vehicles.models import TelemetryMark, telemetry_history

from .helpers import enrol
from conftest import Harness, eventually

SMARTEV = [sys.executable, "-m", "smartev"]


def write_config(tmp_path: Path, vin: str, mqtt_url: str, password: str) -> Path:
    (tmp_path / "secret.txt").write_text(password + "\n")
    start = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
vin = "{vin}"
[platform]
mqtt_url = "{mqtt_url}"
password_file = "secret.txt"
ack_timeout_s = 3
reconnect_max_s = 1
[spool]
path = "spool/car.db"
[sampling]
batch_ms = 200
heartbeat_s = 30
[[sampling.rules]]
match = "Vehicle.Speed"
deadband = 0.5
[source]
kind = "simulator"
rate_hz = 10
speed = 20
start = "{start}"
"""
    )
    return config


def status(config: Path) -> dict[str, Any]:
    r = subprocess.run(
        [*SMARTEV, "agent", "status", "-c", str(config), "--json"], capture_output=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = orjson.loads(r.stdout)
    return result


async def test_agent_killed_and_restarted_hands_over_everything_it_spooled(
    quick: Harness, tmp_path: Path
) -> None:
    h = quick
    operator = await h.user("op@example.com", "operator")
    vin, password = await enrol(h, operator, 70)
    host, port = h.mqtt
    config = write_config(tmp_path, vin, f"mqtt://{host}:{port}", password)
    assert status(config)["running"] is False

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*SMARTEV, "agent", "run", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    agent = start()
    try:
        first = await eventually(lambda: _acked(config, 5), timeout=30, interval=0.3)
        assert first["running"] and first["connected"]
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        await asyncio.sleep(0.5)
        after_kill = status(config)
        assert after_kill["running"] is False
        left_by_first_run = _waiting(tmp_path / "spool" / "car.db")
        agent = start()
        await eventually(
            lambda: _acked(config, first["spool"]["acked_messages"] + 5), timeout=30, interval=0.3
        )
        agent.send_signal(signal.SIGINT)  # Ctrl+C: the open batch goes into the spool, the file is closed
        _, stderr = agent.communicate(timeout=20)
        assert agent.returncode == 0, stderr.decode()
    finally:
        if agent.poll() is None:
            agent.kill()
    final = status(config)
    spool = final["spool"]
    assert spool["dropped_messages"] == 0
    # What the agent spooled over both runs is in the history, less what still waits in the spool and the
    # platform has not stored (a message stored just before Ctrl+C may wait for an ack that came too late:
    # it is resent on the next start and stored once).
    still_waiting = _waiting(tmp_path / "spool" / "car.db")
    assert not set(left_by_first_run) & set(still_waiting), "what the killed run left was replayed"

    async def accounted() -> tuple[int, int]:
        # the platform may still be committing what arrived just before Ctrl+C: read marks and history in
        # the same moment, once it is done (a message committed between two reads was counted in one only)
        marked = await _stored_seqs(h, vin)
        unsent = sum(n for seq, n in still_waiting.items() if seq not in marked)
        return await _history_count(h, vin), spool["appended_signals"] - unsent

    async def balanced() -> bool:
        stored, expected = await accounted()
        return stored == expected and h.platform.ingest.queue_depth == 0

    await eventually(balanced, timeout=15, interval=0.2)
    stored, expected = await accounted()
    assert stored == expected
    assert stored > 100


def _acked(config: Path, at_least: int) -> dict[str, Any] | None:
    s = status(config)
    return s if s["running"] and s["spool"].get("acked_messages", 0) >= at_least else None


async def _history_count(h: Harness, vin: str) -> int:
    record = h.platform.registry.by_vin(vin)
    assert record is not None
    async with h.platform.engine.connect() as conn:
        q = (
            select(func.count())
            .select_from(telemetry_history)
            .where(telemetry_history.c.vehicle_id == record.id)
        )
        return int((await conn.execute(q)).scalar() or 0)


async def _stored_seqs(h: Harness, vin: str) -> set[int]:
    record = h.platform.registry.by_vin(vin)
    assert record is not None
    async with h.platform.engine.connect() as conn:
        q = select(TelemetryMark.seq).where(TelemetryMark.vehicle_id == record.id)
        return {int(seq) for seq in (await conn.execute(q)).scalars()}


def _waiting(path: Path) -> dict[int, int]:
    """seq → signals of the messages in the spool file."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return {int(seq): int(n) for seq, n in db.execute("SELECT seq, signals FROM messages")}
    finally:
        db.close()


def test_status_explains_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('vin = "NOT-A-VIN"\n[spool]\nmax_mb = -1\n[source]\nkind = "toaster"\n')
    r = subprocess.run(
        [*SMARTEV, "agent", "status", "-c", str(config)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2
    out = r.stdout + r.stderr
    assert "vin" in out and "spool.max_mb" in out and "source" in out, out


def test_run_without_a_password_says_where_to_put_it(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('vin = "1M8GDM9AXKP042788"\n')
    env = {k: v for k, v in os.environ.items() if k != "SMARTEV_AGENT_PASSWORD"}
    r = subprocess.run(
        [*SMARTEV, "agent", "run", "-c", str(config)], capture_output=True, text=True, timeout=30, env=env
    )
    assert r.returncode == 2
    assert "password" in (r.stdout + r.stderr).lower()


@pytest.mark.parametrize("missing", ["nowhere.toml"])
def test_a_missing_config_is_named(tmp_path: Path, missing: str) -> None:
    r = subprocess.run(
        [*SMARTEV, "agent", "status", "-c", str(tmp_path / missing)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and missing in r.stdout + r.stderr
