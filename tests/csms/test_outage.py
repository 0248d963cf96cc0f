"""The database goes away for 30 s while 200 simulated stations charge cars: afterwards every transaction
is stored once, and its energy equals what the stations metered (their ledgers)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from smartev.app import Platform
from smartev.csms.models import ChargeSession
from smartev.sim.chargers import SimulatedStation

from conftest import eventually, fresh_database, make_settings, serve
from netproxy import Proxy

STATIONS = 200
OUTAGE_S = 30
PASSWORD = "outage-test-password-0123"


async def test_database_down_30s_during_200_stations_transactions(tmp_path: Path) -> None:
    async with fresh_database("postgresql", tmp_path) as url:
        u = make_url(url)
        proxy = await Proxy(u.host or "127.0.0.1", u.port or 5432).start()
        proxied = u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        settings = make_settings(tmp_path, proxied, "embedded")
        platform = Platform(settings)
        try:
            async with serve(platform) as h:
                await platform.accounts.create_user("fleet@example.com", "fleet password 1", "owner")
                await platform.charging.add_tag("FLEET-CARD", owner_email="fleet@example.com")
                for i in range(STATIONS):
                    await platform.stations.register(f"OUT-{i:03d}", password=PASSWORD)
                stations = [
                    SimulatedStation(
                        f"OUT-{i:03d}",
                        platform.central.url,
                        PASSWORD,
                        version="1.6" if i % 2 else "2.0.1",
                        connectors=2,
                        max_power_w=11_000,
                        seed=i,
                        speed=60,  # a meter sample every real second
                        meter_interval_s=60,
                    )
                    for i in range(STATIONS)
                ]
                tasks = [asyncio.create_task(s.run(start_delay_s=i * 0.01)) for i, s in enumerate(stations)]
                try:
                    await eventually(lambda: all(s.online for s in stations), timeout=60, interval=0.5)
                    for s in stations:
                        await s.plug_in(1, "FLEET-CARD", soc=10, capacity_kwh=80, leave_when_full=False)
                    await eventually(lambda: all(s.pending == 0 for s in stations), timeout=60, interval=0.5)
                    await asyncio.sleep(3)

                    proxy.cut()
                    cut_at = time.monotonic()
                    # while the database is away: some cars leave, others arrive and start charging
                    for i, s in enumerate(stations):
                        if i % 4 == 0:
                            s.unplug(1)
                        if i % 3 == 0:
                            await s.plug_in(2, "FLEET-CARD", soc=30, capacity_kwh=60, leave_when_full=False)
                    red = await eventually(lambda: _failing(h), timeout=20, interval=0.5)
                    assert red
                    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
                    proxy.restore()

                    await asyncio.sleep(5)
                    for s in stations:
                        s.unplug(1)
                        s.unplug(2)
                    # the stations resend what was refused or unanswered; wait until all of it is answered
                    await eventually(lambda: all(s.pending == 0 for s in stations), timeout=180, interval=1)
                finally:
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)

                ledger = {
                    (s.station_id, str(tx.transaction_id)): tx
                    for s in stations
                    for tx in s.ledger.values()
                    if tx.transaction_id is not None
                }
                assert len(ledger) == sum(len(s.ledger) for s in stations), "a transaction never got its id"
                assert len(ledger) >= STATIONS + STATIONS // 3
                async with platform.engine.connect() as conn:
                    rows = (
                        await conn.execute(
                            select(
                                ChargeSession.station_id,
                                ChargeSession.transaction_id,
                                ChargeSession.energy_wh,
                                ChargeSession.status,
                            )
                        )
                    ).all()
                    count = (await conn.execute(select(func.count()).select_from(ChargeSession))).scalar()
                stored = {(r.station_id, r.transaction_id): r for r in rows}
                assert count == len(stored) == len(ledger), "every transaction stored once"
                assert set(stored) == set(ledger)
                wrong = [
                    (key, stored[key].energy_wh, tx.energy_wh)
                    for key, tx in ledger.items()
                    if stored[key].energy_wh != tx.energy_wh or stored[key].status != "ended"
                ]
                assert not wrong, f"{len(wrong)} sessions differ from the ledger, e.g. {wrong[:5]}"
                assert sum(r.energy_wh for r in rows) == sum(s.ledger_total_wh for s in stations)
        finally:
            await proxy.close()


async def _failing(h: object) -> bool:
    r = await h.http.get("/api/v1/health")  # type: ignore[attr-defined]
    return bool(r.json()["status"] != "ok")
