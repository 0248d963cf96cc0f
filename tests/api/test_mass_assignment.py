"""Clients set only the fields they own, and only a valid, current token opens the API."""

from __future__ import annotations

import itertools
import random
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
import pytest_asyncio

from smartev.vehicles.vin import make_vin

from conftest import Harness, running_platform

OWNER = "alice@example.com"
in_module_loop = pytest.mark.asyncio(loop_scope="module")
_vins = (make_vin(random.Random(f"mass-assignment-{n}")) for n in itertools.count())
_emails = (f"user{n}@example.com" for n in itertools.count())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    """One platform (SQLite, embedded broker) with an operator, an admin and the owner Alice; each test uses
    its own cars and users, so that argon2 hashing of the same accounts is paid once."""
    async with running_platform(tmp_path_factory.mktemp("mass-assignment"), "sqlite", "embedded") as h:
        await h.user("operator@example.com", "operator")
        await h.user("admin@example.com", "admin")
        await h.user(OWNER)
        yield h


def tokens(h: Harness) -> tuple[str, str]:
    return h.tokens["operator@example.com"], h.tokens[OWNER]


def refused_field(body: dict[str, Any], field: str) -> bool:
    """True when a 422 answer names `field` as the one not permitted."""
    return any(e.get("loc", [None])[-1] == field for e in body.get("detail", []))


@in_module_loop
@pytest.mark.parametrize(
    "extra",
    [
        {"id": 1},
        {"owner_id": 1},
        {"mqtt_secret_hash": "$argon2id$v=19$m=65536,t=3,p=4$chosen$chosen"},
        {"mqtt_password": "a-password-the-client-chose"},
        {"online": True},
        {"created_ms": 0},
        {"last_seen": "2026-11-21T10:00:00Z"},
    ],
    ids=lambda extra: next(iter(extra)),
)
async def test_registering_a_car_refuses_fields_the_platform_owns(
    world: Harness, extra: dict[str, Any]
) -> None:
    h = world
    operator, _ = tokens(h)
    vin = next(_vins)
    body = {"vin": vin, "model": "smartev S1", "owner": OWNER}
    r = await h.http.post("/api/v1/vehicles", json={**body, **extra}, headers=h.auth(operator))
    assert r.status_code == 422, r.text
    field = next(iter(extra))
    assert refused_field(r.json(), field), r.text
    assert h.platform.registry.by_vin(vin) is None
    r = await h.http.get("/api/v1/vehicles", headers=h.auth(operator))
    assert vin not in {v["vin"] for v in r.json()}

    # the control: the same request without the extra field registers the car, with values the platform chose
    r = await h.http.post("/api/v1/vehicles", json=body, headers=h.auth(operator))
    assert r.status_code == 201, r.text
    car = r.json()
    assert set(car) == {
        "vin",
        "model",
        "owner",
        "online",
        "last_seen",
        "mqtt_url",
        "mqtt_username",
        "mqtt_password",
    }
    assert car["online"] is False and car["last_seen"] is None and car["owner"] == OWNER
    assert car["mqtt_password"] != extra.get("mqtt_password")


@in_module_loop
@pytest.mark.parametrize("who", ["owner", "anonymous"])
async def test_only_staff_register_cars(world: Harness, who: str) -> None:
    h = world
    _, owner = tokens(h)
    vin = next(_vins)
    headers = h.auth(owner) if who == "owner" else {}
    r = await h.http.post(
        "/api/v1/vehicles", json={"vin": vin, "model": "smartev S1", "owner": OWNER}, headers=headers
    )
    assert r.status_code == (403 if who == "owner" else 401), r.text
    assert h.platform.registry.by_vin(vin) is None


@in_module_loop
@pytest.mark.parametrize(
    "extra",
    [
        {"id": "0" * 32},
        {"status": "succeeded"},
        {"detail": "done"},
        {"vin": "1M8GDM9AXKP042788"},
        {"vehicle_id": 2},
        {"created_by": 1},
        {"expires_at": "2099-01-01T00:00:00Z"},
        {"created_at": "2020-01-01T00:00:00Z"},
    ],
    ids=lambda extra: next(iter(extra)),
)
async def test_a_command_refuses_fields_the_platform_owns(world: Harness, extra: dict[str, Any]) -> None:
    h = world
    operator, owner = tokens(h)
    vin = next(_vins)
    await h.register(operator, vin, OWNER)
    url = f"/api/v1/vehicles/{vin}/commands"
    r = await h.http.post(url, json={"name": "lock", **extra}, headers=h.auth(owner))
    assert r.status_code == 422, r.text
    assert refused_field(r.json(), next(iter(extra))), r.text
    r = await h.http.get(url, headers=h.auth(owner))
    assert r.json() == []  # nothing was stored

    r = await h.http.post(url, json={"name": "lock"}, headers=h.auth(owner))  # the control
    assert r.status_code == 202, r.text
    command = r.json()
    assert command["status"] in ("queued", "delivered") and command["vin"] == vin
    assert len(command["id"]) == 32 and command["id"] != "0" * 32


@in_module_loop
@pytest.mark.parametrize(
    ("name", "args", "words"),
    [
        ("lock", {"force": True}, "force"),
        ("unlock", {"pin": "0000"}, "pin"),
        ("climate", {"on": True, "vin": "1M8GDM9AXKP042788"}, "vin"),
        ("charge", {"action": "start", "owner_id": 1}, "owner_id"),
        ("climate", {"on": True, "target_temperature": 99}, "target_temperature"),
        ("self_destruct", {}, "unknown command"),
    ],
)
async def test_command_arguments_are_checked_against_the_command(
    world: Harness, name: str, args: dict[str, Any], words: str
) -> None:
    h = world
    operator, owner = tokens(h)
    vin = next(_vins)
    await h.register(operator, vin, OWNER)
    url = f"/api/v1/vehicles/{vin}/commands"
    r = await h.http.post(url, json={"name": name, "args": args}, headers=h.auth(owner))
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"][0]["msg"]
    assert (await h.http.get(url, headers=h.auth(owner))).json() == []


@in_module_loop
@pytest.mark.parametrize(
    "extra",
    [{"id": 1}, {"password_hash": "x"}, {"token_epoch": 5}, {"created_ms": 0}],
    ids=lambda e: next(iter(e)),
)
async def test_creating_a_user_refuses_fields_the_platform_owns(
    world: Harness, extra: dict[str, Any]
) -> None:
    h = world
    admin = h.tokens["admin@example.com"]
    email = next(_emails)
    body = {"email": email, "password": "a long enough password", "role": "owner"}
    r = await h.http.post("/api/v1/users", json={**body, **extra}, headers=h.auth(admin))
    assert r.status_code == 422, r.text
    assert refused_field(r.json(), next(iter(extra)))
    assert await h.platform.accounts.by_email(email) is None
    r = await h.http.post("/api/v1/users", json=body, headers=h.auth(admin))  # the control
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"id", "email", "role"}


@in_module_loop
@pytest.mark.parametrize("role", ["owner", "operator"])
async def test_only_admins_create_users(world: Harness, role: str) -> None:
    """No one promotes themselves: an owner or operator cannot create an admin (or anyone)."""
    h = world
    token = h.tokens[OWNER if role == "owner" else "operator@example.com"]
    email = next(_emails)
    body = {"email": email, "password": "a long enough password", "role": "admin"}
    r = await h.http.post("/api/v1/users", json=body, headers=h.auth(token))
    assert r.status_code == 403, r.text
    assert await h.platform.accounts.by_email(email) is None


# -- tokens ---------------------------------------------------------------------------------------------


async def get_me(h: Harness, token: str) -> int:
    return (await h.http.get("/api/v1/users/me", headers=h.auth(token))).status_code


@in_module_loop
async def test_changing_the_password_revokes_every_earlier_token(world: Harness) -> None:
    h = world
    operator, _ = tokens(h)
    owner = next(_emails)
    first = await h.user(owner)
    vin = next(_vins)
    await h.register(operator, vin, owner)
    r = await h.http.post("/api/v1/auth/token", data={"username": owner, "password": "correct horse battery"})
    second = r.json()["access_token"]
    assert await get_me(h, first) == 200 and await get_me(h, second) == 200

    r = await h.http.post(
        "/api/v1/users/me/password",
        json={"current_password": "correct horse battery", "new_password": "a brand new password"},
        headers=h.auth(first),
    )
    assert r.status_code == 204, r.text

    for token in (first, second):
        for url in (
            "/api/v1/users/me",
            "/api/v1/vehicles",
            f"/api/v1/vehicles/{vin}",
            f"/api/v1/vehicles/{vin}/state",
        ):
            r = await h.http.get(url, headers=h.auth(token))
            assert r.status_code == 401, (url, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
    r = await h.http.post("/api/v1/auth/token", data={"username": owner, "password": "correct horse battery"})
    assert r.status_code == 401
    r = await h.http.post("/api/v1/auth/token", data={"username": owner, "password": "a brand new password"})
    assert r.status_code == 200
    fresh = r.json()["access_token"]
    assert await get_me(h, fresh) == 200
    assert (await h.http.get(f"/api/v1/vehicles/{vin}", headers=h.auth(fresh))).status_code == 200


@in_module_loop
async def test_a_wrong_current_password_changes_nothing(world: Harness) -> None:
    h = world
    email = next(_emails)
    token = await h.user(email)
    r = await h.http.post(
        "/api/v1/users/me/password",
        json={"current_password": "a guess at it", "new_password": "a brand new password"},
        headers=h.auth(token),
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "current_password"]
    assert await get_me(h, token) == 200
    r = await h.http.post("/api/v1/auth/token", data={"username": email, "password": "a brand new password"})
    assert r.status_code == 401


def forge(kind: str, secret: str, user_id: int) -> str:
    """A token that must not be accepted, built the way an attacker (or a stale client) would."""
    now = int(time.time())
    claims = {"sub": str(user_id), "role": "owner", "ep": 0, "iat": now, "exp": now + 3600}
    if kind == "other secret":
        return jwt.encode(claims, "not-the-platform-secret-" + "y" * 40, algorithm="HS256")
    if kind == "alg none":
        return jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    if kind == "HS512":
        with warnings.catch_warnings():  # PyJWT warns that the platform's key is short for SHA-512
            warnings.simplefilter("ignore")
            return jwt.encode(claims, secret, algorithm="HS512")
    if kind == "expired":
        return jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, secret, algorithm="HS256")
    if kind == "no expiry":
        return jwt.encode({k: v for k, v in claims.items() if k != "exp"}, secret, algorithm="HS256")
    if kind == "unknown user":
        return jwt.encode({**claims, "sub": "999999"}, secret, algorithm="HS256")
    if kind == "sub not a number":
        return jwt.encode({**claims, "sub": "alice@example.com"}, secret, algorithm="HS256")
    if kind == "old epoch":
        return jwt.encode({**claims, "ep": -1}, secret, algorithm="HS256")
    if kind == "tampered payload":
        good = jwt.encode(claims, secret, algorithm="HS256")
        head, _, sig = good.split(".")
        payload = jwt.utils.base64url_encode(
            jwt.utils.force_bytes(f'{{"sub":"{user_id}","role":"admin","ep":0,"exp":{now + 3600}}}')
        ).decode()
        return f"{head}.{payload}.{sig}"
    if kind == "garbage":
        return "not-a-jwt"
    raise AssertionError(kind)


FORGERIES = [
    "other secret", "alg none", "HS512", "expired", "no expiry", "unknown user", "sub not a number",
    "old epoch", "tampered payload", "garbage",
]  # fmt: skip


@in_module_loop
@pytest.mark.parametrize("kind", FORGERIES)
async def test_forged_or_expired_tokens_are_refused(world: Harness, kind: str) -> None:
    h = world
    token = h.tokens[OWNER]
    user = await h.platform.accounts.by_email(OWNER)
    assert user is not None
    secret = h.platform.settings.secret_key.get_secret_value()
    assert await get_me(h, token) == 200  # the control: the real token works
    r = await h.http.get("/api/v1/users/me", headers=h.auth(forge(kind, secret, user.id)))
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert OWNER not in r.text


@in_module_loop
@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic YWxpY2U6cGFzcw==", "bearer"])
async def test_missing_or_malformed_authorization_is_refused(world: Harness, header: str) -> None:
    h = world
    r = await h.http.get("/api/v1/users/me", headers={"Authorization": header} if header else {})
    assert r.status_code == 401, r.text


@in_module_loop
async def test_the_role_in_a_token_is_not_trusted(world: Harness) -> None:
    """A signed token claiming admin for an owner gives owner rights only: the role comes from the user."""
    h = world
    user = await h.platform.accounts.by_email(OWNER)
    assert user is not None
    secret = h.platform.settings.secret_key.get_secret_value()
    now = int(time.time())
    claims = {"sub": str(user.id), "role": "admin", "ep": 0, "iat": now, "exp": now + 3600}
    token = jwt.encode(claims, secret, algorithm="HS256")
    r = await h.http.get("/api/v1/users/me", headers=h.auth(token))
    assert r.status_code == 200 and r.json()["role"] == "owner"
    body = {"email": "mallory@example.com", "password": "a long enough password", "role": "admin"}
    r = await h.http.post("/api/v1/users", json=body, headers=h.auth(token))
    assert r.status_code == 403
