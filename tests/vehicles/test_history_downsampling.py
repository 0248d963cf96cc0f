"""Long ranges come downsampled: one point per interval, the mean of that bucket, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TestCar, eventually, running_platform
from test_telemetry_e2e import setup_car


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
async def test_one_mean_point_per_bucket(tmp_path: Path, db: str) -> None:
    async with running_platform(tmp_path, db, "embedded") as h:
        vin, creds, token = await setup_car(h)
        host, port = h.mqtt
        # 10:00:00 … 10:09:50, a sample every 10 s: speed = minute * 10 + (seconds / 10)
        samples = [
            {"ts": f"2026-11-21T10:{m:02d}:{s:02d}Z", "signals": {"Vehicle.Speed": float(m * 10 + s // 10)}}
            for m in range(10)
            for s in range(0, 60, 10)
        ]
        async with TestCar(host, port, vin, creds["mqtt_password"]) as car:
            await car.send(1, samples)
            await eventually(lambda: 1 in car.acks)
        window = {"path": "Vehicle.Speed", "start": "2026-11-21T10:00:00Z", "end": "2026-11-21T10:10:00Z"}

        r = await h.http.get(f"/api/v1/vehicles/{vin}/history", params=window, headers=h.auth(token))
        assert len(r.json()["points"]) == 60, "no interval: every sample"

        r = await h.http.get(
            f"/api/v1/vehicles/{vin}/history", params={**window, "interval": "2m"}, headers=h.auth(token)
        )
        body = r.json()
        assert body["aggregate"] == "mean" and body["interval"] == 120
        points = [(p["ts"][11:19], p["value"]) for p in body["points"]]
        # each 2-minute bucket holds minutes m and m+1: mean = ((10m + 2.5) + (10(m+1) + 2.5)) / 2
        assert points == [(f"10:{m:02d}:00", 10 * m + 7.5) for m in range(0, 10, 2)]
