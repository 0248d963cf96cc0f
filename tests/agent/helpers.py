"""Running agents against a test platform, and the senders' ledger to compare the history with."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from smartev.agent.config import AgentConfig, parse_config
from smartev.agent.runtime import Agent
from smartev.agent.sampling import Batch
from smartev.agent.simsource import SimulatorSource
from smartev.agent.spool import Spooled
from smartev.app import Platform
from smartev.sim.model import CarModel
from smartev.vehicles.models import SignalPath, telemetry_history
from smartev.vehicles.signals import decode
from smartev.vehicles.telemetry import parse_ts
from smartev.vehicles.vin import make_vin
from smartev.vss.catalog import default_catalog

from conftest import Harness


@dataclass
class Ledger:
    """Every signal value an agent put in its spool, as (path, ts_ms) → value."""

    values: dict[tuple[str, int], Any] = field(default_factory=dict)
    seqs: list[int] = field(default_factory=list)
    keys_of: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)
    duplicates: int = 0

    def record(self, spooled: Spooled, batch: Batch) -> None:
        self.seqs.append(spooled.seq)
        keys = self.keys_of[spooled.seq] = []
        for sample in batch.samples:
            ts_ms = parse_ts(sample["ts"])
            for path, value in sample["signals"].items():
                keys.append((path, ts_ms))
                if (path, ts_ms) in self.values:
                    self.duplicates += 1
                self.values[(path, ts_ms)] = value


def watch(agent: Agent) -> Ledger:
    """A ledger of what this agent spools and what the platform acknowledges."""
    ledger = Ledger()
    agent.on_spooled.append(ledger.record)
    agent.on_acked.append(ledger.acked.add)
    return ledger


def agent_config(tmp_path: Path, vin: str, mqtt_url: str, **sections: dict[str, Any]) -> AgentConfig:
    raw: dict[str, Any] = {
        "vin": vin,
        "platform": {"mqtt_url": mqtt_url, "ack_timeout_s": 3.0},
        "spool": {"path": f"spool-{vin}.db"},
        "sampling": {"batch_ms": 200, "heartbeat_s": 30},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return parse_config(raw, tmp_path)


def simulated_source(
    vin: str, *, rate_hz: float = 10.0, speed: float = 1.0, driving: bool = True
) -> SimulatorSource:
    """A simulated car stamped in simulated time; `driving` starts it at its latest departure in the last days,
    far enough back that, even run `speed` times faster than real time, its samples stay in the past."""
    now = datetime.now(UTC)
    model = CarModel(vin, now - timedelta(minutes=30))
    if driving:
        model = _driving(vin, now - timedelta(minutes=30))
    return SimulatorSource(model, rate_hz=rate_hz, speed=speed)


def _driving(seed: str, before: datetime) -> CarModel:
    probe = CarModel(seed, before - timedelta(days=4))
    departures: list[float] = []
    while probe.time < before.timestamp():
        departures += [t.depart_at for t in probe.upcoming_trips if t.depart_at < before.timestamp()]
        probe.step(6 * 3600.0)
    for depart_at in sorted(set(departures), reverse=True):
        model = CarModel(seed, datetime.fromtimestamp(depart_at - 1.0, UTC))
        model.step(2.0)
        if model.state.value == "driving":
            return model
    raise AssertionError("the simulated car never set off")


async def enrol(h: Harness, operator: str, seed: int) -> tuple[str, str]:
    """Register a car; returns (vin, mqtt password)."""
    vin = make_vin(random.Random(seed))
    if "owner@example.com" not in h.tokens:
        await h.user("owner@example.com")
    creds = await h.register(operator, vin, "owner@example.com")
    return vin, str(creds["mqtt_password"])


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[Agent]:
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def history(platform: Platform, vin: str) -> list[tuple[str, int, Any]]:
    """(path, ts_ms, value) rows of a car's history, with duplicates kept."""
    record = platform.registry.by_vin(vin)
    assert record is not None
    h, p = telemetry_history, SignalPath.__table__
    async with platform.engine.connect() as conn:
        rows = await conn.execute(
            select(p.c.path, h.c.ts, h.c.value_num, h.c.value_text)
            .join(p, p.c.id == h.c.signal_id)
            .where(h.c.vehicle_id == record.id)
        )
        catalog = default_catalog()
        return [(path, int(ts), decode(catalog.get(path), num, text)) for path, ts, num, text in rows]


class PausableSource:
    """Wraps a source; while `paused`, its readings are not passed on (the car stops talking, the agent runs)."""

    def __init__(self, inner: SimulatorSource) -> None:
        self.inner = inner
        self.paused = False

    async def run(self, emit: Any) -> None:
        def gate(ts: float, readings: Any) -> None:
            if not self.paused:
                emit(ts, readings)

        await self.inner.run(gate)

    async def actuate(self, name: str, args: Any) -> Any:
        return await self.inner.actuate(name, args)


async def drained(agent: Agent, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until everything the agent spooled is acknowledged; returns its status."""
    from conftest import eventually

    async def empty() -> dict[str, Any] | None:
        status = await agent.status()
        return status if status["spool"]["depth"] == 0 and agent.connected else None

    await asyncio.sleep(0.5)  # let the last open batch close and reach the spool
    result: dict[str, Any] = await eventually(empty, timeout=timeout, interval=0.2)
    return result


def compare(ledger: Ledger, rows: list[tuple[str, int, Any]]) -> tuple[set[tuple[str, int]], int]:
    """(keys the ledger has and the history lacks, duplicates in history); raises if history has extra."""
    stored = Counter((path, ts) for path, ts, _ in rows)
    duplicates = sum(n - 1 for n in stored.values() if n > 1)
    extra = set(stored) - set(ledger.values)
    assert not extra, f"history holds samples the car never sent, e.g. {sorted(extra)[:3]}"
    return set(ledger.values) - set(stored), duplicates


@dataclass
class Car:
    """An agent on a pausable simulated car at 10 Hz, with its ledger."""

    agent: Agent
    source: PausableSource
    ledger: Ledger


def car(
    tmp_path: Path, vin: str, password: str, mqtt_url: str, *, speed: float, **sections: dict[str, Any]
) -> Car:
    source = PausableSource(simulated_source(vin, rate_hz=10, speed=speed))
    sections.setdefault("platform", {"ack_timeout_s": 3.0, "reconnect_max_s": 1.0})
    agent = Agent(agent_config(tmp_path, vin, mqtt_url, **sections), source, password=password)
    return Car(agent, source, watch(agent))


@contextlib.asynccontextmanager
async def all_running(cars: list[Car]) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for c in cars:
            await stack.enter_async_context(running(c.agent))
        yield


def agents_of(cars: list[Car]) -> list[Agent]:
    return [c.agent for c in cars]


async def settle(
    cars: list[Car], *, more_acks: int, within: float, drain_within: float
) -> list[dict[str, Any]]:
    """After a failure: wait until every car has `more_acks` new acks (ingest is back), stop the sources and wait
    until every spool is empty; returns the agents' statuses."""
    from conftest import eventually

    acked = {c.agent.vin: c.agent.counts["acked"] for c in cars}
    await eventually(
        lambda: all(c.agent.counts["acked"] >= acked[c.agent.vin] + more_acks for c in cars), within
    )
    for c in cars:
        c.source.paused = True
    return [await drained(c.agent, timeout=drain_within) for c in cars]
