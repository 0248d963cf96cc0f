"""Nothing acknowledged is lost: database outages and platform restarts during ingest."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from smartev.app import Platform
from smartev.errors import Unstorable
from smartev.vehicles.history import HistoryWriter, PendingMessage
from smartev.vehicles.models import telemetry_history

from conftest import TestCar, eventually, fresh_database, make_settings, serve
from netproxy import Proxy
from test_telemetry_e2e import setup_car

SPEED = "Vehicle.Speed"


async def history_count(platform: Platform, vehicle_id: int) -> int:
    async with platform.engine.connect() as conn:
        q = (
            select(func.count())
            .select_from(telemetry_history)
            .where(telemetry_history.c.vehicle_id == vehicle_id)
        )
        return int((await conn.execute(q)).scalar() or 0)


async def test_database_outage_turns_health_red_and_loses_nothing(tmp_path: Path) -> None:
    """Cut the link to PostgreSQL during steady ingest; afterwards every acked sample is there exactly once."""
    async with fresh_database("postgresql", tmp_path) as url:
        u = make_url(url)
        proxy = await Proxy(u.host or "127.0.0.1", u.port or 5432).start()
        proxied = u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        settings = make_settings(tmp_path, proxied, "embedded")
        settings.ingest.stall_after_s = 2
        platform = Platform(settings)
        try:
            async with serve(platform) as h:
                http = h.http
                vin, creds, _ = await setup_car(h)
                host, port = h.mqtt
                sent = 0
                async with TestCar(host, port, vin, creds["mqtt_password"]) as car:
                    base = 1_795_000_000_000
                    for seq in range(1, 301):
                        if seq == 100:
                            proxy.cut()
                        if seq == 100 + 5:
                            red = await eventually(lambda: _health(http, "failing"), timeout=15)
                            assert "database" in str(red["ingest"]["reason"]) or not red["database"]["ok"]
                        if seq == 200:
                            proxy.restore()
                        await car.send(seq, [{"ts": base + seq * 100, "signals": {SPEED: float(seq % 200)}}])
                        sent += 1
                        await asyncio.sleep(0.01)
                    await eventually(lambda: len(set(car.acks)) == 300, timeout=30)
                rec = platform.registry.by_vin(vin)
                assert rec is not None
                assert await history_count(platform, rec.id) == sent
                await eventually(lambda: _health(http, "ok"), timeout=15)
        finally:
            await proxy.close()


async def _health(http: httpx.AsyncClient, status: str) -> dict[str, object] | None:
    r = await http.get("/api/v1/health")
    body: dict[str, object] = r.json()
    return body if body["status"] == status else None


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
async def test_twin_survives_a_restart(tmp_path: Path, db: str) -> None:
    """Stop the platform right after ingest (before a twin flush); on start the twin is rebuilt from history."""
    async with fresh_database(db, tmp_path) as url:
        settings = make_settings(tmp_path, url, "embedded")
        settings.ingest.twin_flush_s = 3600  # no write-behind flush during the run
        platform = Platform(settings)
        async with serve(platform) as h:
            vin, creds, _ = await setup_car(h)
            host, port = h.mqtt
            async with TestCar(host, port, vin, creds["mqtt_password"]) as car:
                await car.send(1, [{"ts": 1_795_000_000_000, "signals": {SPEED: 10.0}}])
                await car.send(
                    2,
                    [{"ts": 1_795_000_001_000, "signals": {SPEED: 20.0, "Vehicle.TraveledDistance": 5}}],
                )
                # an older sample arriving late must not roll the twin back
                await car.send(3, [{"ts": 1_794_000_000_000, "signals": {SPEED: 99.0}}])
                await eventually(lambda: {1, 2, 3} <= set(car.acks))
            # simulate a crash: nothing flushed (stop() flushes, so drop the dirty set first)
            platform.twin._dirty.clear()
            platform.twin._dirty_connectivity.clear()

        restarted = Platform(make_settings(tmp_path, url, "embedded"))
        async with restarted.running():
            rec = restarted.registry.by_vin(vin)
            assert rec is not None
            signals = restarted.twin.get(rec.id).signals
            assert signals[SPEED] == (20.0, 1_795_000_001_000)
            assert signals["Vehicle.TraveledDistance"] == (5, 1_795_000_001_000)


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
async def test_flushed_twin_is_what_a_restart_loads(tmp_path: Path, db: str) -> None:
    """The write-behind flush stores every newest value and the connectivity; a restart reads them back."""
    async with fresh_database(db, tmp_path) as url:
        platform = Platform(make_settings(tmp_path, url, "embedded"))
        async with serve(platform) as h:
            vin, creds, _ = await setup_car(h)
            host, port = h.mqtt
            async with TestCar(host, port, vin, creds["mqtt_password"]) as car:
                await car.send(
                    1,
                    [
                        {
                            "ts": 1_795_000_000_000,
                            "signals": {
                                SPEED: 10.0,
                                "Vehicle.IsMoving": True,
                                "Vehicle.Diagnostics.DTCList": ["P0A80"],
                            },
                        }
                    ],
                )
                await eventually(lambda: 1 in car.acks)
                written = await platform.twin.flush(platform.engine, platform.clock.now_ms())
                assert written == 3
                # nothing newer arrived: a second flush writes nothing
                assert await platform.twin.flush(platform.engine, platform.clock.now_ms()) == 0
                rec = platform.registry.by_vin(vin)
                assert rec is not None
                before = dict(platform.twin.get(rec.id).signals)
                # forget everything a crash would lose, then restart from the database
                platform.twin._dirty.clear()
                platform.twin._dirty_connectivity.clear()
        restarted = Platform(make_settings(tmp_path, url, "embedded"))
        async with restarted.running():
            assert restarted.twin.get(rec.id).signals == before
            assert restarted.twin.get(rec.id).last_seen_ms is not None


class RefusingWriter:
    """The real history writer, except that the database 'refuses' any batch holding one poisoned seq.

    No real input is known to trigger a data error any more (NUL in text is rejected per signal), so the refusal
    is simulated at this boundary; everything else is the real SQLite/PostgreSQL write.
    """

    def __init__(self, inner: HistoryWriter, poisoned_seq: int) -> None:
        self.inner, self.poisoned_seq, self.refusals = inner, poisoned_seq, 0

    async def write(self, batch: list[PendingMessage], now_ms: int) -> set[tuple[int, int]]:
        if any(m.seq == self.poisoned_seq for m in batch):
            self.refusals += 1
            raise Unstorable("DataError: simulated refusal")
        return await self.inner.write(batch, now_ms)

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
async def test_a_message_the_database_refuses_is_isolated_and_the_rest_stored(
    tmp_path: Path, db: str
) -> None:
    async with fresh_database(db, tmp_path) as url:
        settings = make_settings(tmp_path, url, "embedded")
        settings.ingest.batch_wait_ms = 300  # let the messages share one batch
        platform = Platform(settings)
        writer = platform.writer = RefusingWriter(platform.writer, poisoned_seq=13)
        async with serve(platform) as h:
            http = h.http
            vin, creds, _ = await setup_car(h)
            host, port = h.mqtt
            async with TestCar(host, port, vin, creds["mqtt_password"]) as car:
                for seq in range(10, 20):
                    await car.send(seq, [{"ts": 1_795_000_000_000 + seq, "signals": {SPEED: float(seq)}}])
                await eventually(lambda: set(range(10, 20)) - {13} <= set(car.acks))
                error = await eventually(lambda: [e for e in car.errors if e["seq"] == 13])
                assert "refused" in error[0]["errors"][0]["reason"]
                assert 13 not in car.acks
            rec = platform.registry.by_vin(vin)
            assert rec is not None
            assert await history_count(platform, rec.id) == 9
            assert writer.refusals >= 1
            health = (await http.get("/api/v1/health")).json()
            assert health["status"] == "ok"
            assert health["ingest"]["counters"]["rejected_unstorable"] == 1
