"""Secrets are hashed at rest and never logged: grep the database file and the logs for them."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from smartev.vehicles.vin import make_vin

from conftest import TestCar, eventually, running_platform


async def test_no_password_or_token_in_the_database_or_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    owner_password = "owner-password-" + "q" * 12
    async with running_platform(tmp_path, "sqlite", "embedded") as h:
        operator = await h.user("ops-secrets@example.com", "operator")
        token = await h.user("owner-secrets@example.com", password=owner_password)
        vin = make_vin(random.Random())
        creds = await h.register(operator, vin, "owner-secrets@example.com")
        mqtt_password = creds["mqtt_password"]
        host, port = h.mqtt
        async with TestCar(host, port, vin, mqtt_password) as car:
            await car.send(1, [{"ts": "2026-11-21T10:00:00Z", "signals": {"Vehicle.Speed": 5.0}}])
            await eventually(lambda: 1 in car.acks)
            r = await h.http.post(
                f"/api/v1/vehicles/{vin}/commands", json={"name": "lock"}, headers=h.auth(token)
            )
            command_id = r.json()["id"]
            await eventually(lambda: any(c["id"] == command_id for c in car.commands))
        # a failed login and a wrong car password are logged as events, without the secret tried
        await h.http.post(
            "/api/v1/auth/token", data={"username": "owner-secrets@example.com", "password": "wrong-pw-x"}
        )
        try:
            async with TestCar(host, port, vin, "not-the-password-123"):
                pass
        except Exception:
            pass
        await h.platform.twin.flush(h.platform.engine, h.platform.clock.now_ms())
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("smartev.db*"))  # noqa: ASYNC240
    logs = caplog.text
    for secret in (owner_password, mqtt_password, token, "wrong-pw-x", "not-the-password-123"):
        assert secret.encode() not in stored, "a secret is stored in clear"
        assert secret not in logs, "a secret was logged"
    assert b"$argon2id$" in stored and b"$7$" in stored  # what is stored are hashes
    # our own log lines shorten VINs (third-party DEBUG logs, e.g. SQL parameters, are the operator's choice)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("smartev"))
    assert "SEV…" in ours or vin[:3] in ours, "the refused login should be logged"
    assert vin not in ours, "full VINs do not belong in smartev's logs"
