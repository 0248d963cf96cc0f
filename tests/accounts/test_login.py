"""Logging in: right credentials get a working token; wrong ones learn nothing about which part was wrong."""

from __future__ import annotations

import time

import pytest

from smartev.accounts.security import TokenSigner, hash_password, verify_password
from smartev.errors import Unauthorized

from conftest import Harness

PASSWORD = "correct horse battery"


async def login(h: Harness, username: str, password: str) -> tuple[int, dict[str, object]]:
    r = await h.http.post("/api/v1/auth/token", data={"username": username, "password": password})
    return r.status_code, r.json()


async def test_the_right_credentials_give_a_token_that_works(quick: Harness) -> None:
    h = quick
    await h.platform.accounts.create_user("Alice@Example.com", PASSWORD, "owner")
    status, body = await login(h, "alice@example.com", PASSWORD)
    assert status == 200
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == h.platform.settings.token_ttl_s
    r = await h.http.get("/api/v1/users/me", headers=h.auth(str(body["access_token"])))
    assert r.status_code == 200
    assert r.json()["email"] == "alice@example.com" and r.json()["role"] == "owner"
    assert set(r.json()) == {"id", "email", "role"}


@pytest.mark.parametrize("written", ["alice@example.com", "ALICE@EXAMPLE.COM", "  Alice@example.com "])
async def test_emails_compare_without_case_or_blanks(quick: Harness, written: str) -> None:
    h = quick
    await h.platform.accounts.create_user("alice@example.com", PASSWORD, "owner")
    assert (await login(h, written, PASSWORD))[0] == 200


@pytest.mark.parametrize(
    ("username", "password", "status"),
    [
        ("alice@example.com", "correct horse batter", 401),
        ("alice@example.com", PASSWORD.upper(), 401),
        ("nobody@example.com", PASSWORD, 401),
        ("alice@example.com", "", 422),  # an empty form field counts as missing
        ("", PASSWORD, 422),
    ],
)
async def test_wrong_credentials_do_not_say_which_part_was_wrong(
    quick: Harness, username: str, password: str, status: int
) -> None:
    h = quick
    await h.platform.accounts.create_user("alice@example.com", PASSWORD, "owner")
    got, body = await login(h, username, password)
    assert got == status
    if status == 401:
        assert body == {"detail": "wrong email or password"}  # the same for an unknown email


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"email": "ALICE@example.com", "password": "another password"}, 409),
        ({"email": "not-an-email", "password": "another password"}, 422),
        ({"email": "bob@example.com", "password": "short"}, 422),
        ({"email": "bob@example.com", "password": "another password", "role": "superuser"}, 422),
    ],
)
async def test_creating_users_checks_what_it_is_given(
    quick: Harness, body: dict[str, str], status: int
) -> None:
    h = quick
    await h.platform.accounts.create_user("alice@example.com", PASSWORD, "owner")
    admin = await h.user("admin@example.com", "admin")
    r = await h.http.post("/api/v1/users", json=body, headers=h.auth(admin))
    assert r.status_code == status, r.text
    assert await h.platform.accounts.by_email("bob@example.com") is None


def test_tokens_expire_and_are_bound_to_the_secret() -> None:
    signer = TokenSigner("s" * 48, ttl_s=60)
    now = int(time.time())
    claims = signer.check(signer.issue(7, "owner", 3, now))
    assert (claims.user_id, claims.role, claims.epoch) == (7, "owner", 3)
    with pytest.raises(Unauthorized):
        signer.check(signer.issue(7, "owner", 3, now - 61))
    with pytest.raises(Unauthorized):
        TokenSigner("t" * 48, ttl_s=60).check(signer.issue(7, "owner", 3, now))


@pytest.mark.parametrize("stored", [None, "", "not a hash", "$argon2id$v=19$broken", hash_password("other")])
def test_password_checks_never_raise(stored: str | None) -> None:
    assert verify_password(PASSWORD, stored) is False


def test_passwords_are_stored_hashed() -> None:
    stored = hash_password(PASSWORD)
    assert PASSWORD not in stored and stored.startswith("$argon2id$")
    assert verify_password(PASSWORD, stored) is True
    assert hash_password(PASSWORD) != stored  # salted
