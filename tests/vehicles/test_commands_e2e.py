"""Remote commands over real MQTT: shown as succeeded only when the car confirms; expire otherwise; audited."""

from __future__ import annotations

from conftest import Harness, TestCar, eventually
from test_telemetry_e2e import setup_car


def car_password(h: Harness, creds: dict[str, str]) -> str | None:
    return creds["mqtt_password"] if h.broker == "embedded" else None


async def command_status(h: Harness, token: str, vin: str, command_id: str) -> str:
    r = await h.http.get(f"/api/v1/vehicles/{vin}/commands/{command_id}", headers=h.auth(token))
    assert r.status_code == 200, r.text
    status: str = r.json()["status"]
    return status


async def test_lock_succeeds_only_when_the_car_confirms(harness: Harness) -> None:
    h = harness
    vin, creds, token = await setup_car(h)
    host, port = h.mqtt
    async with TestCar(host, port, vin, car_password(h, creds)) as car:
        car.auto_answer = None  # answer by hand, to see the state before the car confirms
        r = await h.http.post(
            f"/api/v1/vehicles/{vin}/commands", json={"name": "lock"}, headers=h.auth(token)
        )
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["status"] == "queued"
        command = (await eventually(lambda: car.commands))[0]
        assert command["id"] == body["id"] and command["name"] == "lock" and command["args"] == {}
        assert command["expires_at"].endswith("Z")
        assert await command_status(h, token, vin, body["id"]) in ("queued", "delivered")
        await eventually(lambda: _is(h, token, vin, body["id"], "delivered"))
        await car.answer(body["id"], "succeeded", "locked")
        await eventually(lambda: _is(h, token, vin, body["id"], "succeeded"))
        audit = (
            await h.http.get(f"/api/v1/vehicles/{vin}/commands/{body['id']}/audit", headers=h.auth(token))
        ).json()
        assert [a["status"] for a in audit] == ["queued", "delivered", "succeeded"]
        assert audit[0]["actor"] == "alice@example.com"
        # a repeated or late answer does not change the outcome
        await car.answer(body["id"], "failed", "too late")
        await eventually(lambda: _audit_has(h, token, vin, body["id"], "failed"))
        assert await command_status(h, token, vin, body["id"]) == "succeeded"


async def _is(h: Harness, token: str, vin: str, command_id: str, status: str) -> bool:
    return await command_status(h, token, vin, command_id) == status


async def _audit_has(h: Harness, token: str, vin: str, command_id: str, ignored_status: str) -> bool:
    r = await h.http.get(f"/api/v1/vehicles/{vin}/commands/{command_id}/audit", headers=h.auth(token))
    return any(a["status"] == "ignored" and ignored_status in (a["detail"] or "") for a in r.json())


async def test_command_expires_when_the_car_does_not_answer(quick: Harness) -> None:
    h = quick
    vin, creds, token = await setup_car(h)
    host, port = h.mqtt
    async with TestCar(host, port, vin, creds["mqtt_password"]) as car:
        car.auto_answer = None
        r = await h.http.post(
            f"/api/v1/vehicles/{vin}/commands", json={"name": "honk_flash", "ttl_s": 1}, headers=h.auth(token)
        )
        command_id = r.json()["id"]
        await eventually(lambda: _is(h, token, vin, command_id, "expired"), timeout=5)
        # an answer after expiry is audited but ignored
        await car.answer(command_id, "succeeded")
        await eventually(lambda: _audit_has(h, token, vin, command_id, "succeeded"))
        assert await command_status(h, token, vin, command_id) == "expired"


async def test_rejected_and_failed_results_are_shown_with_the_reason(quick: Harness) -> None:
    h = quick
    vin, creds, token = await setup_car(h)
    host, port = h.mqtt
    async with TestCar(host, port, vin, creds["mqtt_password"]) as car:
        car.auto_answer = "failed"
        r = await h.http.post(
            f"/api/v1/vehicles/{vin}/commands",
            json={"name": "charge", "args": {"action": "start"}},
            headers=h.auth(token),
        )
        command_id = r.json()["id"]
        await eventually(lambda: _is(h, token, vin, command_id, "failed"))
        got = (
            await h.http.get(f"/api/v1/vehicles/{vin}/commands/{command_id}", headers=h.auth(token))
        ).json()
        assert got["detail"] == "done by test car"


async def test_a_car_cannot_answer_another_cars_command(quick: Harness) -> None:
    h = quick
    vin_a, creds_a, token_a = await setup_car(h, "a@example.com")
    vin_b, creds_b, _ = await setup_car(h, "b@example.com")
    host, port = h.mqtt
    async with (
        TestCar(host, port, vin_a, creds_a["mqtt_password"]) as car_a,
        TestCar(host, port, vin_b, creds_b["mqtt_password"]) as car_b,
    ):
        car_a.auto_answer = None
        r = await h.http.post(
            f"/api/v1/vehicles/{vin_a}/commands", json={"name": "unlock"}, headers=h.auth(token_a)
        )
        command_id = r.json()["id"]
        await eventually(lambda: car_a.commands)
        assert car_b.commands == []  # B never sees A's command
        await car_b.answer(command_id, "succeeded")  # B answers on its own topic with A's id
        await eventually(lambda: h.platform.commands.counters["result_unknown_command"] >= 1)
        assert await command_status(h, token_a, vin_a, command_id) in ("queued", "delivered")


async def test_bad_commands_are_refused_with_the_problem_named(quick: Harness) -> None:
    h = quick
    vin, _, token = await setup_car(h)
    cases = [
        ({"name": "self_destruct"}, "unknown command"),
        ({"name": "climate", "args": {}}, "on"),
        ({"name": "climate", "args": {"on": True, "target_temperature": 90}}, "target_temperature"),
        ({"name": "charge", "args": {}}, "action"),
        ({"name": "charge", "args": {"limit": 20}}, "limit"),
        ({"name": "lock", "args": {"force": True}}, "force"),
    ]
    for body, needle in cases:
        r = await h.http.post(f"/api/v1/vehicles/{vin}/commands", json=body, headers=h.auth(token))
        assert r.status_code == 422, (body, r.text)
        assert needle in str(r.json()["detail"]), (body, r.json())


async def test_unlock_is_rate_limited(quick: Harness) -> None:
    h = quick
    vin, _, token = await setup_car(h)
    limit = h.platform.settings.unlock_rate_per_min
    codes = []
    for _ in range(limit + 2):
        r = await h.http.post(
            f"/api/v1/vehicles/{vin}/commands", json={"name": "unlock"}, headers=h.auth(token)
        )
        codes.append(r.status_code)
    assert codes[:limit] == [202] * limit
    assert codes[limit:] == [429, 429]
    # locking is not limited
    r = await h.http.post(f"/api/v1/vehicles/{vin}/commands", json={"name": "lock"}, headers=h.auth(token))
    assert r.status_code == 202
