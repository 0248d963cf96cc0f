"""The operator console's live station feed (server-sent events) over a real HTTP server and OCPP port."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from csms.helpers import Transaction, boot, connected, register, status
from smartev.app import Platform

from conftest import eventually, fresh_database, make_settings, read_events, serve_http


async def test_operator_sees_stations_connect_and_charge_owner_only_theirs(tmp_path: Path) -> None:
    async with fresh_database("sqlite", tmp_path) as url:
        async with serve_http(Platform(make_settings(tmp_path, url, "embedded"))) as h:
            op = await h.user("op@example.com", "operator")
            bob = await h.user("bob@example.com")
            alice = await h.user("alice@example.com")
            home = await register(h, op, "CP-ALICE", owner="alice@example.com")
            r = await h.http.post(
                "/api/v1/id-tags", json={"tag": "CARD-1", "owner": "alice@example.com"}, headers=h.auth(op)
            )
            assert r.status_code == 201, r.text
            seen_by_op: list[tuple[str, dict[str, Any]]] = []
            seen_by_bob: list[tuple[str, dict[str, Any]]] = []
            seen_by_alice: list[tuple[str, dict[str, Any]]] = []
            listeners = [
                asyncio.create_task(read_events(h, "/api/v1/stations/live", token, seen))
                for token, seen in ((op, seen_by_op), (bob, seen_by_bob), (alice, seen_by_alice))
            ]
            await asyncio.sleep(0.3)
            try:
                async with connected(h, "CP-ALICE", home["password"]) as cp:
                    await boot(cp)
                    await status(cp, "Preparing")
                    tx = Transaction(cp, "CARD-1")
                    now = datetime.now(UTC)
                    assert await tx.start(now, 1000) == "Accepted"
                    await tx.meter(now + timedelta(minutes=5), 2500)
                    await tx.stop(now + timedelta(minutes=10), 4000)
                    await eventually(lambda: any(d.get("status") == "ended" for _, d in seen_by_op))
                await eventually(lambda: any(k == "station" and not d["online"] for k, d in seen_by_op))
                await eventually(lambda: len(seen_by_alice) == len(seen_by_op))
                assert not any(t.done() for t in listeners), "every stream stayed open (none was refused)"
            finally:
                for t in listeners:
                    t.cancel()
            kinds = [k for k, _ in seen_by_op]
            assert kinds[0] == "station" and seen_by_op[0][1]["online"] is True
            assert (
                "connector",
                {"station_id": "CP-ALICE", "evse_id": 1, "connector_id": 1, "status": "Preparing"},
            ) in seen_by_op
            sessions = [d for k, d in seen_by_op if k == "session"]
            assert [s["status"] for s in sessions] == ["started", "updated", "ended"]
            assert sessions[-1]["energy_wh"] == 3000
            assert seen_by_alice == seen_by_op, "the owner follows her own charger like an operator"
            assert seen_by_bob == [], "another owner hears nothing of alice's charger"
