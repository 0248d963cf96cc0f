"""The agent against the real platform: a car at 10 Hz lands in history exactly as spooled; commands obeyed once."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from smartev.agent.runtime import Agent

from .helpers import agent_config, enrol, history, running, simulated_source, watch
from conftest import Harness, eventually

SPEED = "Vehicle.Speed"
LOCKED = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"


def mqtt_url(h: Harness) -> str:
    host, port = h.mqtt
    return f"mqtt://{host}:{port}"


async def test_a_driving_car_at_10_hz_lands_in_history_as_spooled(harness: Harness, tmp_path: Path) -> None:
    h = harness
    operator = await h.user("op@example.com", "operator")
    vin, password = await enrol(h, operator, 1)
    source = simulated_source(vin, rate_hz=10)
    agent = Agent(agent_config(tmp_path, vin, mqtt_url(h)), source, password=password)
    ledger = watch(agent)
    async with running(agent):
        await eventually(lambda: source.readings >= 30, timeout=20)
        await eventually(lambda: agent.counts["acked"] >= len(ledger.seqs) >= 10, timeout=20)
        status = await agent.status()
    assert status["spool"]["dropped_messages"] == 0
    rows = await history(h.platform, vin)
    keys = Counter((path, ts) for path, ts, _ in rows)
    assert max(keys.values()) == 1, "a sample was stored twice"
    stored = {(path, ts): value for path, ts, value in rows}
    # Every value the agent spooled and had acknowledged is in the history with its own timestamp.
    acked_ts = {k: v for k, v in ledger.values.items() if k in stored}
    assert len(acked_ts) >= len(ledger.values) - 200  # the last batch may still be in flight at shutdown
    speeds = sorted(
        (ts, v) for (path, ts), v in ledger.values.items() if path == SPEED and (path, ts) in stored
    )
    assert len(speeds) >= 20, "a car driving at 10 Hz reports its speed many times a second"
    for ts, value in speeds:
        assert stored[(SPEED, ts)] == pytest.approx(value)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(speeds)]
    assert min(gaps) >= 100, "the default rule sends a changed speed at most at the source's 10 Hz"


async def test_command_sent_twice_is_executed_once_and_expired_is_refused(
    quick: Harness, tmp_path: Path
) -> None:
    h = quick
    operator = await h.user("op@example.com", "operator")
    vin, password = await enrol(h, operator, 2)
    source = simulated_source(vin, rate_hz=2, driving=False)
    agent = Agent(agent_config(tmp_path, vin, mqtt_url(h)), source, password=password)
    executed: list[str] = []
    actuate = source.actuate

    async def counting(name: str, args: dict[str, object]) -> object:
        executed.append(name)
        return await actuate(name, args)

    source.actuate = counting  # type: ignore[method-assign]
    async with running(agent):
        await eventually(lambda: agent.connected, timeout=20)
        platform = h.platform
        command = {"id": "cmd-twice-1", "name": "unlock", "args": {}, "expires_at": _in(30)}
        await platform.link.send_command(vin, command)
        await platform.link.send_command(vin, command)  # the platform (or an attacker) sends it again
        expired = {"id": "cmd-expired-1", "name": "unlock", "args": {}, "expires_at": _in(-1)}
        await platform.link.send_command(vin, expired)
        await eventually(lambda: agent.counts["refused"] >= 2, timeout=20)
        await eventually(lambda: not source.model.locked, timeout=5)
        await asyncio.sleep(0.5)
    assert executed == ["unlock"], "the repeated id and the expired command must not act on the car"
    assert agent.counts["commands"] == 1


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


class _FlakySource:
    """Fails on its first run (an unplugged adapter), then reads like the simulator."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.runs = 0

    async def run(self, emit: Any) -> None:
        self.runs += 1
        if self.runs == 1:
            raise OSError("CAN adapter unplugged")
        await self.inner.run(emit)

    async def actuate(self, name: str, args: Any) -> Any:
        return await self.inner.actuate(name, args)


async def test_a_failing_source_is_restarted_and_the_agent_keeps_going(
    quick: Harness, tmp_path: Path
) -> None:
    h = quick
    operator = await h.user("op@example.com", "operator")
    vin, password = await enrol(h, operator, 3)
    source = _FlakySource(simulated_source(vin, rate_hz=5))
    agent = Agent(agent_config(tmp_path, vin, mqtt_url(h)), source, password=password)
    async with running(agent):
        await eventually(lambda: agent.counts["acked"] >= 3, timeout=20)
    assert source.runs == 2 and agent.counts["source_failures"] == 1
