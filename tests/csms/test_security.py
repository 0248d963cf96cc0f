"""Who may connect to the OCPP endpoint, as a station installer or an operator sees it: Basic auth before the
websocket upgrade, the failed-login limit, subprotocol negotiation, a reconnecting station replacing its old
connection, station passwords, TLS (security profile 2), and transactions bound to the station that opened
them."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import os
import shutil
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201
from pydantic import ValidationError
from sqlalchemy import text
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidMessage, InvalidStatus
from websockets.http11 import Response

from smartev.app import Platform
from smartev.clock import SystemClock

from .helpers import basic, connected, register, ts
from conftest import Harness, eventually, fresh_database, make_settings, serve

PASSWORD_A = "station-a-password-0001"
PASSWORD_B = "station-b-password-0002"


def ocpp_url(h: Harness, path: str, scheme: str = "ws") -> str:
    """The OCPP URL of `path` (a station id as it appears in the URL, encoded or not)."""
    return f"{scheme}://127.0.0.1:{h.platform.central.port}/ocpp/{path}"


async def refusal(url: str, headers: Any, subprotocols: list[str] | None = None, **kw: Any) -> Response:
    """The HTTP answer of a websocket handshake that must be refused."""
    offered = ["ocpp1.6"] if subprotocols is None else subprotocols
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(
            url,
            additional_headers=headers,
            subprotocols=offered or None,  # type: ignore[arg-type]
            open_timeout=5,
            **kw,
        ):
            pass
    return refused.value.response


@asynccontextmanager
async def raw_station(
    h: Harness, station_id: str, password: str, protocol: str = "ocpp1.6", path: str | None = None, **kw: Any
) -> AsyncIterator[ClientConnection]:
    """A websocket to the OCPP endpoint whose frames the test writes and reads itself."""
    async with websockets.connect(
        ocpp_url(h, path or station_id),
        additional_headers=basic(station_id, password),
        subprotocols=[protocol],  # type: ignore[list-item]
        open_timeout=5,
        **kw,
    ) as ws:
        yield ws


async def exchange(ws: ClientConnection, action: str, payload: dict[str, Any]) -> list[Any]:
    """Send one CALL and return the frame that answers it."""
    unique_id = uuid.uuid4().hex[:12]
    await ws.send(json.dumps([2, unique_id, action, payload]))
    answer: list[Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert answer[1] == unique_id, answer
    return answer


async def heartbeat_answered(ws: ClientConnection) -> bool:
    answer = await exchange(ws, "Heartbeat", {})
    return answer[0] == 3 and "currentTime" in answer[2]


BOOT = {
    "ocpp1.6": ("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "Wallbox 11"}),
    "ocpp2.0.1": (
        "BootNotification",
        {"chargingStation": {"vendorName": "Acme", "model": "Wallbox 11"}, "reason": "PowerUp"},
    ),
}


async def boot(ws: ClientConnection, protocol: str) -> None:
    answer = await exchange(ws, *BOOT[protocol])
    assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer


async def station_rows(h: Harness) -> dict[str, str]:
    async with h.platform.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, password_hash FROM stations"))).all()
    return {r[0]: r[1] for r in rows}


async def station_ids_in_api(h: Harness, token: str) -> set[str]:
    r = await h.http.get("/api/v1/stations", headers=h.auth(token))
    assert r.status_code == 200, r.text
    return {s["id"] for s in r.json()}


async def health_ocpp(h: Harness) -> dict[str, Any]:
    body: dict[str, Any] = (await h.http.get("/api/v1/health")).json()
    return body["ocpp"]


async def two_stations(h: Harness) -> str:
    op = await h.user("op@example.com", "operator")
    await register(h, op, "CP-A", password=PASSWORD_A)
    await register(h, op, "CP-B", password=PASSWORD_B)
    return op


# --- 1. Basic auth before the upgrade ---

FAILED_LOGINS = {
    "no credentials": ("CP-A", None),
    "wrong password": ("CP-A", basic("CP-A", "not-the-password-at-all")),
    "unknown station": ("CP-GHOST", basic("CP-GHOST", PASSWORD_A)),
    "another station's credentials": ("CP-A", basic("CP-B", PASSWORD_B)),
    "user name is not the id in the path": ("CP-A", basic("cp-a", PASSWORD_A)),
    "bearer instead of basic": ("CP-A", {"Authorization": f"Bearer {PASSWORD_A}"}),
    "basic without a colon": ("CP-A", {"Authorization": "Basic " + base64.b64encode(b"CP-A").decode()}),
    "basic that is not base64": ("CP-A", {"Authorization": "Basic CP-A:" + PASSWORD_A}),
    "two authorization headers": (
        "CP-A",
        [("Authorization", basic("CP-A", PASSWORD_A)["Authorization"]), ("Authorization", "Basic eA==")],
    ),
}


@pytest.mark.parametrize("case", FAILED_LOGINS, ids=list(FAILED_LOGINS))
async def test_a_station_without_valid_credentials_gets_401_and_nothing_is_created(
    quick: Harness, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    op = await two_stations(quick)
    path, headers = FAILED_LOGINS[case]

    response = await refusal(ocpp_url(quick, path), headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert not quick.platform.central.online("CP-A") and not quick.platform.central.online(path)
    assert await station_ids_in_api(quick, op) == {"CP-A", "CP-B"}
    assert set(await station_rows(quick)) == {"CP-A", "CP-B"}
    r = await quick.http.get("/api/v1/stations/CP-A", headers=quick.auth(op))
    assert r.json()["online"] is False and r.json()["protocol"] is None
    counters = await health_ocpp(quick)
    if headers is None:  # a client may send credentials only when challenged: no guess, nothing counted
        assert counters["auth_missing"] == 1 and "auth_failed" not in counters
    else:
        assert counters["auth_failed"] == 1
    # the passwords tried are not written to the log
    assert PASSWORD_A not in caplog.text and PASSWORD_B not in caplog.text
    assert "not-the-password-at-all" not in caplog.text


@pytest.mark.parametrize(
    "path", ["/", "/ocpp", "/ocpp/", "/OCPP/CP-A", "/ocpp/CP-A/extra", "/ocpp/CP%2FA", "/api/v1/stations"]
)
async def test_a_path_that_is_not_ocpp_station_id_gets_404(quick: Harness, path: str) -> None:
    await two_stations(quick)
    url = f"ws://127.0.0.1:{quick.platform.central.port}{path}"
    response = await refusal(url, basic("CP-A", PASSWORD_A))
    assert response.status_code == 404
    assert not quick.platform.central.online("CP-A")


async def test_a_percent_encoded_identity_is_decoded_before_it_is_compared(quick: Harness) -> None:
    # ocpp-rpc and other clients put encodeURIComponent(identity) in the URL, but the identity itself in the
    # Basic-auth user name
    op = await quick.user("op@example.com", "operator")
    await register(quick, op, "CP@HOME+1", password=PASSWORD_A)

    async with raw_station(quick, "CP@HOME+1", PASSWORD_A, path="CP%40HOME%2B1") as ws:
        await boot(ws, "ocpp1.6")
        r = await quick.http.get("/api/v1/stations/CP@HOME+1", headers=quick.auth(op))
        assert r.json()["online"] is True and r.json()["vendor"] == "Acme"

    # the encoded form is not the station's user name
    response = await refusal(ocpp_url(quick, "CP%40HOME%2B1"), basic("CP%40HOME%2B1", PASSWORD_A))
    assert response.status_code == 401


async def test_an_identity_with_a_colon_can_log_in(quick: Harness) -> None:
    # station ids may hold ':' (OCPP identifierString), which is also the user/password separator of Basic
    # auth: the user name is known from the path, so the rest after it is the password
    op = await quick.user("op@example.com", "operator")
    await register(quick, op, "site:7", password=PASSWORD_A)

    async with raw_station(quick, "site:7", PASSWORD_A, path="site%3A7") as ws:
        await boot(ws, "ocpp1.6")
        assert quick.platform.central.online("site:7")

    assert (await refusal(ocpp_url(quick, "site%3A7"), basic("site:7", PASSWORD_B))).status_code == 401
    assert (await refusal(ocpp_url(quick, "site%3A7"), basic("site:8", PASSWORD_A))).status_code == 401


# --- 2. The failed-login limit ---


class ShiftedClock(SystemClock):
    """The wall clock, moved forward on demand, so a test needs not wait a minute."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return super().now() + self.offset

    def now_ms(self) -> int:
        return super().now_ms() + int(self.offset.total_seconds() * 1000)


@asynccontextmanager
async def platform(tmp_path: Path, clock: SystemClock | None = None, **ocpp: Any) -> AsyncIterator[Harness]:
    """A platform on SQLite whose OCPP settings are `ocpp` (port 0 unless given)."""
    async with fresh_database("sqlite", tmp_path) as url:
        settings = make_settings(tmp_path, url, "embedded", ocpp={"port": 0, **ocpp})
        async with serve(Platform(settings, clock=clock)) as h:
            yield h


def from_address(ip: str) -> dict[str, Any]:
    """Connect from another loopback address (all of 127.0.0.0/8 is this machine)."""
    return {"local_addr": (ip, 0)}


async def test_after_too_many_failed_logins_the_station_id_and_the_address_get_429(tmp_path: Path) -> None:
    clock = ShiftedClock()
    async with platform(tmp_path, clock, auth_failures_per_min=3, auth_failures_per_address_per_min=3) as h:
        op = await two_stations(h)
        await register(h, op, "CP-C", password=PASSWORD_A)
        async with raw_station(h, "CP-C", PASSWORD_A) as already_connected:
            await boot(already_connected, "ocpp1.6")

            # an attacker at 127.0.0.2 guesses CP-A's password
            for _ in range(3):
                response = await refusal(
                    ocpp_url(h, "CP-A"), basic("CP-A", "guess-guess-guess-1"), **from_address("127.0.0.2")
                )
                assert response.status_code == 401

            # the real CP-A, from another address, is held off too, with the right password ...
            response = await refusal(
                ocpp_url(h, "CP-A"), basic("CP-A", PASSWORD_A), **from_address("127.0.0.3")
            )
            assert response.status_code == 429
            retry_after = int(response.headers["Retry-After"])
            assert 1 <= retry_after <= 60
            # ... and so is every station behind the attacker's address (one NAT, one proxy: one address)
            response = await refusal(
                ocpp_url(h, "CP-B"), basic("CP-B", PASSWORD_B), **from_address("127.0.0.2")
            )
            assert response.status_code == 429 and "Retry-After" in response.headers
            # another station from another address is not
            async with raw_station(h, "CP-B", PASSWORD_B, **from_address("127.0.0.3")) as ws:
                await boot(ws, "ocpp1.6")
            # the station that was connected already is not touched
            assert await heartbeat_answered(already_connected)
            assert h.platform.central.online("CP-C")

            stats = await health_ocpp(h)
            assert stats["auth_failed"] == 3 and stats["auth_rate_limited"] == 2

            # once Retry-After has passed, the right password works again
            clock.offset += timedelta(seconds=retry_after)
            async with raw_station(h, "CP-A", PASSWORD_A, **from_address("127.0.0.3")) as ws:
                await boot(ws, "ocpp1.6")
            async with raw_station(h, "CP-B", PASSWORD_B, **from_address("127.0.0.2")) as ws:
                await boot(ws, "ocpp1.6")


async def test_asking_without_credentials_is_not_a_failed_login(tmp_path: Path) -> None:
    async with platform(tmp_path, auth_failures_per_min=3) as h:
        await two_stations(h)
        for _ in range(5):
            assert (await refusal(ocpp_url(h, "CP-A"), None)).status_code == 401
        async with raw_station(h, "CP-A", PASSWORD_A) as ws:
            await boot(ws, "ocpp1.6")


async def test_stations_behind_one_address_share_its_higher_limit(tmp_path: Path) -> None:
    """What a user sees when all stations come from one address (NAT; as all tests do: 127.0.0.1)."""
    async with platform(tmp_path, auth_failures_per_min=3, auth_failures_per_address_per_min=6) as h:
        await two_stations(h)
        for _ in range(3):
            response = await refusal(ocpp_url(h, "CP-A"), basic("CP-A", "wrong-wrong-wrong-wrong"))
            assert response.status_code == 401
        # one misconfigured station is held off; its neighbours behind the same address are not ...
        assert (await refusal(ocpp_url(h, "CP-A"), basic("CP-A", PASSWORD_A))).status_code == 429
        async with raw_station(h, "CP-B", PASSWORD_B) as ws:
            await boot(ws, "ocpp1.6")
        # ... until the address itself has failed too often (someone guessing many stations' ids)
        for i in range(3):
            response = await refusal(ocpp_url(h, f"CP-X{i}"), basic(f"CP-X{i}", "wrong-wrong-wrong-wrong"))
            assert response.status_code == 401
        response = await refusal(ocpp_url(h, "CP-B"), basic("CP-B", PASSWORD_B))
        assert response.status_code == 429
        assert b"too many failed logins" in response.body


# --- 3. Subprotocol negotiation ---


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["ocpp2.0.1"], "ocpp2.0.1"),
        (["ocpp1.6"], "ocpp1.6"),
        (["ocpp1.6", "ocpp2.0.1"], "ocpp1.6"),
        (["ocpp2.0.1", "ocpp1.6"], "ocpp2.0.1"),
        (["ocpp1.5", "ocpp2.0.1"], "ocpp2.0.1"),
    ],
)
async def test_the_stations_first_supported_subprotocol_is_chosen(
    quick: Harness, offered: list[str], chosen: str
) -> None:
    op = await two_stations(quick)
    async with websockets.connect(
        ocpp_url(quick, "CP-A"),
        additional_headers=basic("CP-A", PASSWORD_A),
        subprotocols=offered,  # type: ignore[arg-type]
    ) as ws:
        assert ws.subprotocol == chosen
        await boot(ws, chosen)  # the station is answered in the version it chose
        r = await quick.http.get("/api/v1/stations/CP-A", headers=quick.auth(op))
        assert r.json()["protocol"] == chosen


@pytest.mark.parametrize(
    "offered", [["ocpp1.5"], ["ocpp2.1", "ocpp1.2"], []], ids=["1.5", "2.1 and 1.2", "none"]
)
async def test_a_station_offering_no_supported_subprotocol_is_refused_after_auth(
    quick: Harness, offered: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    await two_stations(quick)

    response = await refusal(ocpp_url(quick, "CP-A"), basic("CP-A", PASSWORD_A), offered)
    assert response.status_code == 400
    assert b"ocpp1.6" in response.body and b"ocpp2.0.1" in response.body
    assert not quick.platform.central.online("CP-A")

    # without the right password the station learns nothing about subprotocols
    response = await refusal(ocpp_url(quick, "CP-A"), basic("CP-A", "wrong-wrong-wrong-wrong"), offered)
    assert response.status_code == 401

    # once configured right, it connects; a misconfigured station retries forever, and each refusal is no
    # ERROR with a traceback in the log (the server logs it after answering: look once the station is in)
    async with raw_station(quick, "CP-A", PASSWORD_A) as ws:
        await boot(ws, "ocpp1.6")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert quick.platform.central.stats()["refused_subprotocol"] == 1


# --- 4. A second connection with the same id ---


async def test_a_reconnecting_station_replaces_its_old_connection(
    quick: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    op = await two_stations(quick)
    async with raw_station(quick, "CP-A", PASSWORD_A) as old:
        await boot(old, "ocpp1.6")
        with caplog.at_level(logging.WARNING, logger="smartev.csms"):
            async with raw_station(quick, "CP-A", PASSWORD_A, protocol="ocpp2.0.1") as new:
                await asyncio.wait_for(old.wait_closed(), 5)
                assert old.close_code == 1000
                await boot(new, "ocpp2.0.1")
                assert await heartbeat_answered(new)
                await asyncio.sleep(0.2)  # the old connection's end must not mark the station offline
                r = await quick.http.get("/api/v1/stations/CP-A", headers=quick.auth(op))
                assert r.json()["online"] is True and r.json()["protocol"] == "ocpp2.0.1"
                assert quick.platform.central.online("CP-A")
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "CP-A" in r.getMessage()]
        assert any("connected again" in r.getMessage() for r in warnings), caplog.text
    assert (await health_ocpp(quick))["replaced"] == 1


async def _silent_station(
    h: Harness, station_id: str, password: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A station whose network died after the handshake: it never reads or answers again (half-open TCP)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", h.platform.central.port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ocpp/{station_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
        f"Authorization: {basic(station_id, password)['Authorization']}\r\n\r\n"
    )
    writer.write(request.encode())
    status = await asyncio.wait_for(reader.readline(), 5)
    assert b" 101 " in status, status
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return reader, writer


async def test_a_station_whose_old_connection_is_dead_is_served_at_once(quick: Harness) -> None:
    """A rebooted station reconnects before its old socket times out; the old peer never answers a close."""
    await two_stations(quick)
    _, writer = await _silent_station(quick, "CP-A", PASSWORD_A)
    try:
        await eventually(lambda: quick.platform.central.online("CP-A"), timeout=5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with raw_station(quick, "CP-A", PASSWORD_A) as new:
            await boot(new, "ocpp1.6")
            assert loop.time() - started < 2, "the new connection waited for the old one's close handshake"
            assert await heartbeat_answered(new)
    finally:
        writer.close()


async def test_an_impostor_cannot_displace_a_connected_station(
    quick: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await two_stations(quick)
    async with raw_station(quick, "CP-A", PASSWORD_A) as real:
        await boot(real, "ocpp1.6")
        link = quick.platform.central.links["CP-A"]

        for headers in (basic("CP-A", "impostor-password-xx"), basic("CP-B", PASSWORD_B), None):
            assert (await refusal(ocpp_url(quick, "CP-A"), headers)).status_code == 401

        assert quick.platform.central.links["CP-A"] is link
        assert await heartbeat_answered(real)
        await boot(real, "ocpp1.6")
        assert "connected again" not in caplog.text
    assert (await health_ocpp(quick)).get("replaced", 0) == 0


# --- 5. Passwords ---


@pytest.mark.parametrize("length", [15, 41])
async def test_a_password_outside_16_to_40_characters_is_refused(quick: Harness, length: int) -> None:
    op = await quick.user("op@example.com", "operator")
    r = await quick.http.post(
        "/api/v1/stations", json={"id": "CP-A", "password": "p" * length}, headers=quick.auth(op)
    )
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert problem["loc"][-1] == "password"
    assert "16 to 40" in problem["msg"]
    assert "CP-A" not in await station_ids_in_api(quick, op)


@pytest.mark.parametrize("length", [16, 40])
async def test_a_password_of_16_or_40_characters_is_taken(quick: Harness, length: int) -> None:
    op = await quick.user("op@example.com", "operator")
    password = ("p" * length)[:-2] + "!~"
    await register(quick, op, "CP-A", password=password)
    async with raw_station(quick, "CP-A", password) as ws:
        await boot(ws, "ocpp1.6")


async def test_the_stored_password_is_a_salted_hash_and_rotating_it_locks_the_old_one_out(
    quick: Harness,
) -> None:
    op = await quick.user("op@example.com", "operator")
    await register(quick, op, "CP-A", password=PASSWORD_A)
    await register(quick, op, "CP-B", password=PASSWORD_A)  # the same password ...
    generated = (await register(quick, op, "CP-C"))["password"]
    assert 16 <= len(generated) <= 40

    rows = await station_rows(quick)
    for station_id in ("CP-A", "CP-C"):
        assert PASSWORD_A not in rows[station_id] and generated not in rows[station_id]
        assert rows[station_id].startswith("$7$")  # PBKDF2-SHA512
    assert rows["CP-A"] != rows["CP-B"]  # ... is stored as two different hashes (salted)
    r = await quick.http.get("/api/v1/stations/CP-A", headers=quick.auth(op))
    assert PASSWORD_A not in r.text and "password" not in r.json()

    async with raw_station(quick, "CP-A", PASSWORD_A) as ws:
        await boot(ws, "ocpp1.6")

    r = await quick.http.post("/api/v1/stations/CP-A/password", headers=quick.auth(op))
    assert r.status_code == 200, r.text
    rotated = r.json()["password"]
    assert rotated != PASSWORD_A and 16 <= len(rotated) <= 40

    assert (await refusal(ocpp_url(quick, "CP-A"), basic("CP-A", PASSWORD_A))).status_code == 401
    async with raw_station(quick, "CP-A", rotated) as ws:
        await boot(ws, "ocpp1.6")
    # CP-B's identical password was not touched
    async with raw_station(quick, "CP-B", PASSWORD_A) as ws:
        await boot(ws, "ocpp1.6")


async def test_only_staff_rotate_a_station_password(quick: Harness) -> None:
    op = await quick.user("op@example.com", "operator")
    owner = await quick.user("anna@example.com", "owner")
    await register(quick, op, "CP-A", owner="anna@example.com", password=PASSWORD_A)
    r = await quick.http.post("/api/v1/stations/CP-A/password", headers=quick.auth(owner))
    assert r.status_code == 403
    async with raw_station(quick, "CP-A", PASSWORD_A) as ws:
        await boot(ws, "ocpp1.6")


# --- 6. TLS (security profile 2) ---


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_with_a_certificate_stations_connect_over_tls_only(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    trusted = ssl.create_default_context(cafile=str(cert))

    async with platform(tmp_path, tls_cert=str(cert), tls_key=str(key)) as h:
        op = await h.user("op@example.com", "operator")
        registered = await register(h, op, "CP-A", password=PASSWORD_A)
        assert registered["ocpp_url"].startswith("wss://")

        async with websockets.connect(
            ocpp_url(h, "CP-A", "wss"), ssl=trusted, additional_headers=basic("CP-A", PASSWORD_A),
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
        ) as ws:  # fmt: skip
            await boot(ws, "ocpp2.0.1")
            assert h.platform.central.online("CP-A")
        # Basic auth still applies inside TLS
        response = await refusal(ocpp_url(h, "CP-A", "wss"), basic("CP-A", PASSWORD_B), ssl=trusted)
        assert response.status_code == 401

        # plain ws:// gets no HTTP answer at all: there is no clear-text endpoint to send a password to
        with pytest.raises((InvalidMessage, ConnectionError, EOFError)):
            async with websockets.connect(
                ocpp_url(h, "CP-A"), additional_headers=basic("CP-A", PASSWORD_A),
                subprotocols=["ocpp1.6"], open_timeout=5,  # type: ignore[list-item]
            ):  # fmt: skip
                pass
        # a client that does not trust the certificate does not connect
        with pytest.raises(ssl.SSLCertVerificationError):
            async with websockets.connect(
                ocpp_url(h, "CP-A", "wss"), additional_headers=basic("CP-A", PASSWORD_A)
            ):
                pass
        assert not h.platform.central.online("CP-A")


def test_a_certificate_without_its_key_is_refused_in_the_settings(tmp_path: Path) -> None:
    """TLS half-configured must not quietly serve plain text."""
    with pytest.raises(ValidationError, match="TLS_CERT and SMARTEV_OCPP__TLS_KEY"):
        make_settings(
            tmp_path, "sqlite+aiosqlite://", "embedded", ocpp={"port": 0, "tls_key": str(tmp_path / "k.pem")}
        )


# --- 7. Transactions are bound to their station ---


async def _sessions(h: Harness, token: str, station_id: str) -> list[dict[str, Any]]:
    r = await h.http.get("/api/v1/charging-sessions", params={"station": station_id}, headers=h.auth(token))
    assert r.status_code == 200, r.text
    result: list[dict[str, Any]] = r.json()
    return result


async def _tagged(h: Harness) -> str:
    op = await two_stations(h)
    r = await h.http.post("/api/v1/id-tags", json={"tag": "CARD-A"}, headers=h.auth(op))
    assert r.status_code == 201, r.text
    return op


def _meter16(wh: int, at: datetime) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": ts(at),
            "sampledValue": [{"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}],
        }
    ]


async def test_another_16_station_cannot_stop_or_meter_someone_elses_transaction(quick: Harness) -> None:
    op = await _tagged(quick)
    start = datetime.now(UTC)
    async with connected(quick, "CP-A", PASSWORD_A) as a, connected(quick, "CP-B", PASSWORD_B) as b:
        started = await a.call(
            c16.StartTransaction(connector_id=1, id_tag="CARD-A", meter_start=1_000, timestamp=ts(start))
        )
        assert started.id_tag_info["status"] == "Accepted"
        tx = started.transaction_id
        await a.call(
            c16.MeterValues(
                connector_id=1, transaction_id=tx, meter_value=_meter16(6_000, start + timedelta(minutes=5))
            )
        )

        await b.call(
            c16.MeterValues(
                connector_id=1, transaction_id=tx, meter_value=_meter16(99_000, start + timedelta(minutes=6))
            )
        )
        stopped = await b.call(
            c16.StopTransaction(
                meter_stop=99_000, timestamp=ts(start, minutes=7), transaction_id=tx, id_tag="CARD-A"
            )
        )
        assert stopped.id_tag_info == {"status": "Invalid"}

        (session,) = await _sessions(quick, op, "CP-A")
        assert session["transaction_id"] == str(tx)
        assert session["status"] == "active" and session["energy_wh"] == 5_000 and session["stop"] is None
        assert await _sessions(quick, op, "CP-B") == []

        # the owner of the transaction still meters and ends it
        await a.call(
            c16.MeterValues(
                connector_id=1, transaction_id=tx, meter_value=_meter16(7_000, start + timedelta(minutes=8))
            )
        )
        await a.call(
            c16.StopTransaction(meter_stop=8_000, timestamp=ts(start, minutes=10), transaction_id=tx)
        )
    (session,) = await _sessions(quick, op, "CP-A")
    assert session["status"] == "ended" and session["energy_wh"] == 7_000


def _event(kind: str, seq: int, tx: str, wh: float, at: datetime, **extra: Any) -> c201.TransactionEvent:
    return c201.TransactionEvent(
        event_type=kind,
        timestamp=ts(at),
        trigger_reason=extra.pop("trigger", "MeterValuePeriodic"),
        seq_no=seq,
        transaction_info={"transaction_id": tx},
        evse={"id": 1, "connector_id": 1},
        meter_value=[
            {
                "timestamp": ts(at),
                "sampled_value": [{"value": wh, "measurand": "Energy.Active.Import.Register"}],
            }
        ],
        **extra,
    )


async def test_another_201_station_using_the_same_transaction_id_gets_its_own_session(quick: Harness) -> None:
    op = await _tagged(quick)
    start = datetime.now(UTC)
    tx = str(uuid.uuid4())
    async with (
        connected(quick, "CP-A", PASSWORD_A, "ocpp2.0.1") as a,
        connected(quick, "CP-B", PASSWORD_B, "ocpp2.0.1") as b,
    ):
        answer = await a.call(
            _event(
                "Started",
                0,
                tx,
                1_000,
                start,
                trigger="Authorized",
                id_token={"id_token": "CARD-A", "type": "ISO14443"},
            )
        )
        assert answer.id_token_info["status"] == "Accepted"
        await a.call(_event("Updated", 1, tx, 6_000, start + timedelta(minutes=5)))

        await b.call(_event("Updated", 2, tx, 50_000, start + timedelta(minutes=6)))
        await b.call(_event("Ended", 3, tx, 99_000, start + timedelta(minutes=7), trigger="StopAuthorized"))

        (session,) = await _sessions(quick, op, "CP-A")
        assert session["transaction_id"] == tx
        assert session["status"] == "active" and session["energy_wh"] == 5_000 and session["stop"] is None
        (theirs,) = await _sessions(quick, op, "CP-B")
        assert theirs["transaction_id"] == tx and theirs["status"] == "ended"
        assert theirs["id"] != session["id"]

        await a.call(
            _event("Ended", 2, tx, 8_000, start + timedelta(minutes=10), trigger="EVCommunicationLost")
        )
    (session,) = await _sessions(quick, op, "CP-A")
    assert session["status"] == "ended" and session["energy_wh"] == 7_000


async def test_16_transaction_ids_are_unpredictable(quick: Harness) -> None:
    await _tagged(quick)
    start = datetime.now(UTC)
    async with connected(quick, "CP-A", PASSWORD_A) as a:
        ids = []
        for i in range(20):
            started = await a.call(
                c16.StartTransaction(
                    connector_id=1, id_tag="CARD-A", meter_start=i, timestamp=ts(start, minutes=i)
                )
            )
            ids.append(started.transaction_id)
    assert len(set(ids)) == 20
    assert all(1 <= t < 2**31 for t in ids)
    ordered = sorted(ids)
    assert all(b - a > 1 for a, b in itertools.pairwise(ordered)), "consecutive ids"
    assert ordered[-1] - ordered[0] > 2**28, "ids crowd together instead of spreading over 31 bits"
    assert ids != ordered, "ids only grow"
