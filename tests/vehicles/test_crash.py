"""kill -9 the platform during steady ingest: compared with the cars' ledgers, nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import aiomqtt
import httpx
import pytest
from sqlalchemy import select

from smartev.db.engine import create_engine
from smartev.sim.car import SimulatedCar
from smartev.sim.fleet import CarIdentity
from smartev.vehicles.models import SignalPath, Vehicle, telemetry_history
from smartev.vehicles.telemetry import parse_ts
from smartev.vehicles.vin import make_vin

from conftest import eventually, fresh_database, mosquitto_url
from processes import Server, create_user, free_port

OPERATOR = ("crash-ops@example.com", "crash-operator-pw")


@pytest.mark.parametrize(("db", "broker"), [("sqlite", "embedded"), ("postgresql", "mosquitto")])
async def test_kill_9_during_ingest_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, db: str, broker: str
) -> None:
    async with fresh_database(db, tmp_path) as url:
        client_id = f"smartev-crash-{random.randrange(10**9)}"
        env = {
            "SMARTEV_DATABASE_URL": url,
            "SMARTEV_DATA_DIR": str(tmp_path),
            "SMARTEV_HTTP_PORT": str(free_port()),
            "SMARTEV_SECRET_KEY": "crash-test-secret-" + "x" * 32,
            "SMARTEV_MQTT_CLIENT_ID": client_id,
        }
        if broker == "embedded":
            env["SMARTEV_MQTT_PORT"] = str(free_port())
        else:
            env["SMARTEV_MQTT_URL"] = mosquitto_url()
        create_user(env, OPERATOR[0], OPERATOR[1], "operator")
        create_user(env, "crash-owner@example.com", "crash-owner-pw")
        server = Server(env)
        await server.start()
        cars: list[SimulatedCar] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            async with httpx.AsyncClient(base_url=server.http) as http:
                token = (
                    await http.post(
                        "/api/v1/auth/token", data={"username": OPERATOR[0], "password": OPERATOR[1]}
                    )
                ).json()
                headers = {"Authorization": f"Bearer {token['access_token']}"}
                rng = random.Random(42)
                for _ in range(4):
                    vin = make_vin(rng)
                    reg = await http.post(
                        "/api/v1/vehicles",
                        headers=headers,
                        json={"vin": vin, "model": "smartev S1", "owner": "crash-owner@example.com"},
                    )
                    assert reg.status_code == 201, reg.text
                    body = reg.json()
                    host, port = body["mqtt_url"].removeprefix("mqtt://").split(":")
                    car = SimulatedCar(
                        CarIdentity(vin, body["mqtt_password"]),
                        mqtt_host=host,
                        mqtt_port=int(port),
                        report_interval_s=0.05,
                        full_state_every_s=0.0,
                        resend_after_s=1.0,
                        speed=30,
                        wall_clock_ts=True,
                        ledger_size=100_000,
                    )
                    cars.append(car)
            tasks = [asyncio.create_task(c.run()) for c in cars]
            await eventually(lambda: all(len(c.ledger.acked) >= 20 for c in cars), timeout=30)
            server.kill()  # mid-stream: the queue, the twin and the broker (if embedded) die with it
            await asyncio.sleep(2)
            await server.start()
            before = {c.vin: len(c.ledger.acked) for c in cars}
            # steady ingest again after the restart (cars reconnect with backoff)
            await eventually(lambda: all(len(c.ledger.acked) >= before[c.vin] + 20 for c in cars), timeout=60)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            sent_before_stop = {c.vin: dict(c.ledger.sent) for c in cars}
            # the platform had time to commit whatever the cars resent; every ack it sent is for stored data
            engine = create_engine(url)
            try:
                async with engine.connect() as conn:
                    ids = {v: i for v, i in (await conn.execute(select(Vehicle.vin, Vehicle.id))).all()}
                    paths = {
                        i: p for i, p in (await conn.execute(select(SignalPath.id, SignalPath.path))).all()
                    }
                    h = telemetry_history.c
                    stored: dict[str, Counter[tuple[str, int]]] = {}
                    for vin, vid in ids.items():
                        rows = (
                            await conn.execute(select(h.signal_id, h.ts).where(h.vehicle_id == vid))
                        ).all()
                        stored[vin] = Counter((paths[s], ts) for s, ts in rows)
            finally:
                await engine.dispose()
            for car in cars:
                acked = car.ledger.acked
                # a car may send the same values at the same instant in two messages: count per message
                sent_signals: Counter[tuple[str, int]] = Counter()
                acked_signals: Counter[tuple[str, int]] = Counter()
                for seq, samples in sent_before_stop[car.vin].items():
                    for sample in samples:
                        for path in sample["signals"]:
                            key = (path, parse_ts(sample["ts"]))
                            sent_signals[key] += 1
                            if seq in acked:
                                acked_signals[key] += 1
                got = stored[car.vin]
                extra = got - sent_signals
                assert not extra, f"stored more often than sent: {list(extra)[:5]}"
                missing = acked_signals - got
                assert not missing, (
                    f"{sum(missing.values())} acknowledged samples lost, e.g. {list(missing)[:5]}"
                )
                assert len(acked) >= 40, "the car should have been acknowledged before and after the crash"
        finally:
            for t in tasks:
                t.cancel()
            server.stop()
            if broker == "mosquitto":
                await _drop_session(client_id)


async def _drop_session(client_id: str) -> None:
    host, port = mosquitto_url().removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port), identifier=client_id, clean_session=True):
        pass
