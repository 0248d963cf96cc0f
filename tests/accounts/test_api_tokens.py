"""API tokens: an owner makes a named token for a script, sees it listed, and revokes it — on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartev.accounts.service import MAX_API_TOKENS

from conftest import running_platform


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
async def test_create_use_list_revoke(tmp_path: Path, db: str) -> None:
    async with running_platform(tmp_path, db, "embedded") as h:
        alice = await h.user("alice@example.com")
        bob = await h.user("bob@example.com")
        r = await h.http.post(
            "/api/v1/users/me/api-tokens", json={"name": "home dashboard"}, headers=h.auth(alice)
        )
        assert r.status_code == 201, r.text
        made = r.json()
        secret = made["token"]
        assert secret.startswith(made["prefix"]) and len(secret) > 40

        r = await h.http.get("/api/v1/users/me", headers=h.auth(secret))
        assert r.status_code == 200 and r.json()["email"] == "alice@example.com", (
            "the token acts as its owner"
        )

        r = await h.http.get("/api/v1/users/me/api-tokens", headers=h.auth(alice))
        [listed] = r.json()
        assert listed["name"] == "home dashboard" and listed["last_used_at"] is not None
        assert "token" not in listed and secret not in r.text, "the secret is shown once, never listed"

        r = await h.http.get("/api/v1/users/me/api-tokens", headers=h.auth(bob))
        assert r.json() == [], "tokens are private"
        r = await h.http.delete(f"/api/v1/users/me/api-tokens/{made['id']}", headers=h.auth(bob))
        assert r.status_code == 404, "bob cannot revoke alice's token"

        r = await h.http.delete(f"/api/v1/users/me/api-tokens/{made['id']}", headers=h.auth(alice))
        assert r.status_code == 204
        r = await h.http.get("/api/v1/users/me", headers=h.auth(secret))
        assert r.status_code == 401 and "API token" in r.json()["detail"]


async def test_bad_requests_and_the_limit(tmp_path: Path) -> None:
    async with running_platform(tmp_path, "sqlite", "embedded") as h:
        alice = await h.user("alice@example.com")
        for body in ({}, {"name": ""}, {"name": "x" * 101}, {"name": "ok", "role": "admin"}):
            r = await h.http.post("/api/v1/users/me/api-tokens", json=body, headers=h.auth(alice))
            assert r.status_code == 422, body
        r = await h.http.post("/api/v1/users/me/api-tokens", json={"name": "   "}, headers=h.auth(alice))
        assert r.status_code == 422 and "name" in r.text
        for i in range(MAX_API_TOKENS):
            r = await h.http.post(
                "/api/v1/users/me/api-tokens", json={"name": f"t{i}"}, headers=h.auth(alice)
            )
            assert r.status_code == 201
        r = await h.http.post("/api/v1/users/me/api-tokens", json={"name": "one more"}, headers=h.auth(alice))
        assert r.status_code == 409 and "revoke" in r.json()["detail"]
        r = await h.http.get("/api/v1/users/me", headers=h.auth("sev_" + "A" * 43))
        assert r.status_code == 401
        r = await h.http.delete("/api/v1/users/me/api-tokens/99999999999", headers=h.auth(alice))
        assert r.status_code == 422


async def test_a_token_cannot_outlive_its_revocation(tmp_path: Path) -> None:
    """A leaked token cannot mint a successor or change the password; a password change revokes every token."""
    async with running_platform(tmp_path, "sqlite", "embedded") as h:
        alice = await h.user("alice@example.com")
        r = await h.http.post("/api/v1/users/me/api-tokens", json={"name": "script"}, headers=h.auth(alice))
        secret = r.json()["token"]
        r = await h.http.post(
            "/api/v1/users/me/api-tokens", json={"name": "successor"}, headers=h.auth(secret)
        )
        assert r.status_code == 403 and "log in with your password" in r.json()["detail"]
        r = await h.http.get("/api/v1/users/me/api-tokens", headers=h.auth(secret))
        assert r.status_code == 403
        r = await h.http.post(
            "/api/v1/users/me/password",
            json={"current_password": "correct horse battery", "new_password": "another password 2"},
            headers=h.auth(secret),
        )
        assert r.status_code == 403
        r = await h.http.get("/api/v1/vehicles", headers=h.auth(secret))
        assert r.status_code == 200, "everything else works with the token"

        r = await h.http.post(
            "/api/v1/users/me/password",
            json={"current_password": "correct horse battery", "new_password": "another password 2"},
            headers=h.auth(alice),
        )
        assert r.status_code == 204
        r = await h.http.get("/api/v1/vehicles", headers=h.auth(secret))
        assert r.status_code == 401, "a new password revokes the API tokens too"
