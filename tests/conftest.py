"""Shared fixtures: a real platform on SQLite or PostgreSQL, with the embedded broker or the machine's Mosquitto.

Environment (set by .ci/run; defaults fit this machine):
  SMARTEV_TEST_POSTGRES   admin URL of a PostgreSQL server   (default postgresql://postgres@127.0.0.1:5432/test)
  SMARTEV_TEST_MOSQUITTO  host:port of a Mosquitto broker      (default 127.0.0.1:1883)
In CI (CI=true) an unreachable PostgreSQL or Mosquitto fails the run; locally those cases are skipped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import httpx
import orjson
import pytest

from smartev.app import Platform, create_app
from smartev.settings import Settings

PG_ADMIN = os.environ.get("SMARTEV_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
MOSQUITTO = os.environ.get("SMARTEV_TEST_MOSQUITTO", "127.0.0.1:1883")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str) -> None:
    """Fail in CI, skip locally: CI must exercise every real component."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI but unreachable")
    pytest.skip(f"{what} unreachable")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@asynccontextmanager
async def fresh_database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """A new empty database of the given kind; dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'smartev.db'}"
        return
    name = f"smartev_t_{secrets.token_hex(6)}"
    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        unavailable(f"PostgreSQL at {PG_ADMIN}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = PG_ADMIN.rsplit("/", 1)[0]
        yield f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def mosquitto_url() -> str:
    host, port = MOSQUITTO.rsplit(":", 1)
    if not _reachable(host, int(port)):
        unavailable(f"Mosquitto at {MOSQUITTO}")
    return f"mqtt://{host}:{port}"


def make_settings(tmp_path: Path, database_url: str, broker: str, **extra: Any) -> Settings:
    """Settings of a test platform on free ports."""
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": database_url,
        "secret_key": "test-secret-" + "x" * 40,
        "mqtt_client_id": f"smartev-test-{secrets.token_hex(4)}",
        "mqtt_clean_session": broker == "mosquitto",
        "mqtt_port": 0,
        "command_default_ttl_s": 10,
        "ocpp": {"port": 0},
    }
    if broker == "mosquitto":
        values["mqtt_url"] = mosquitto_url()
    values.update(extra)
    return Settings(**values)


@dataclass
class Harness:
    """A running platform and an HTTP client talking to it in-process."""

    platform: Platform
    http: httpx.AsyncClient
    broker: str
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def mqtt(self) -> tuple[str, int]:
        a = self.platform.address
        return a.host, a.port

    async def user(self, email: str, role: str = "owner", password: str = "correct horse battery") -> str:
        """Create a user and return a bearer token for them (via the real login endpoint)."""
        await self.platform.accounts.create_user(email, password, role)
        r = await self.http.post("/api/v1/auth/token", data={"username": email, "password": password})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        self.tokens[email] = token
        return token

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def register(
        self, operator_token: str, vin: str, owner: str, model: str = "smartev S1"
    ) -> dict[str, Any]:
        r = await self.http.post(
            "/api/v1/vehicles",
            json={"vin": vin, "model": model, "owner": owner},
            headers=self.auth(operator_token),
        )
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body


@asynccontextmanager
async def serve(platform: Platform, broker: str = "embedded") -> AsyncIterator[Harness]:
    """Run `platform` and talk to its API in-process."""
    app = create_app(platform=platform)
    async with platform.running():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://smartev.test"
        ) as http:
            yield Harness(platform, http, broker)


@asynccontextmanager
async def serve_http(platform: Platform, broker: str = "embedded") -> AsyncIterator[Harness]:
    """Run `platform` behind a real HTTP server (uvicorn on a free port): for streams and browsers.

    `h.http.base_url` is the server's address; the app's lifespan starts and stops the platform.
    """
    import uvicorn

    app = create_app(platform=platform)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or serving.done(), timeout=30)
        if serving.done():
            serving.result()  # raises what stopped it
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield Harness(platform, http, broker)
    finally:
        server.should_exit = True
        await serving


async def read_events(h: Harness, path: str, token: str, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Follow a server-sent-event stream of `h`'s real HTTP server, appending (event, data) until cancelled."""
    async with h.http.stream("GET", path, headers=h.auth(token)) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        kind = ""
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, orjson.loads(line[6:])))


@asynccontextmanager
async def running_platform(tmp_path: Path, db: str, broker: str, **extra: Any) -> AsyncIterator[Harness]:
    """Start a platform on a fresh database with the chosen broker."""
    async with fresh_database(db, tmp_path) as url:
        async with serve(Platform(make_settings(tmp_path, url, broker, **extra)), broker) as h:
            yield h


COMBOS = [
    ("sqlite", "embedded"),
    ("sqlite", "mosquitto"),
    ("postgresql", "embedded"),
    ("postgresql", "mosquitto"),
]


@pytest.fixture(params=COMBOS, ids=[f"{d}-{b}" for d, b in COMBOS])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """A platform on every database × broker combination."""
    db, broker = request.param
    async with running_platform(tmp_path, db, broker) as h:
        yield h


@pytest.fixture
async def quick(tmp_path: Path) -> AsyncIterator[Harness]:
    """A platform on SQLite with the embedded broker (for tests whose subject is not the storage)."""
    async with running_platform(tmp_path, "sqlite", "embedded") as h:
        yield h


class TestCar:
    """A minimal car speaking the MQTT contract, with a ledger of what came back."""

    __test__ = False

    def __init__(self, host: str, port: int, vin: str, password: str | None) -> None:
        self.vin, self._host, self._port, self._password = vin, host, port, password
        self.acks: list[int] = []
        self.errors: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.auto_answer: str | None = "succeeded"
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TestCar:
        self._client = aiomqtt.Client(
            self._host,
            self._port,
            username=self.vin,
            password=self._password,
            identifier=self.vin,
            will=aiomqtt.Will(f"vehicles/{self.vin}/status", b"offline", qos=1, retain=True),
        )
        await self._client.__aenter__()
        await self._client.subscribe(
            [
                (f"vehicles/{self.vin}/telemetry/ack", 1),
                (f"vehicles/{self.vin}/errors", 1),
                (f"vehicles/{self.vin}/commands", 1),
            ]
        )
        await self._client.publish(f"vehicles/{self.vin}/status", b"online", qos=1, retain=True)
        self._task = asyncio.create_task(self._listen())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._task:
            self._task.cancel()
        if self._client:
            await self._client.__aexit__(None, None, None)

    async def _listen(self) -> None:
        assert self._client
        async for m in self._client.messages:
            doc = orjson.loads(m.payload)  # type: ignore[arg-type]
            topic = str(m.topic)
            if topic.endswith("/telemetry/ack"):
                self.acks.append(doc["seq"])
            elif topic.endswith("/errors"):
                self.errors.append(doc)
            elif topic.endswith("/commands"):
                self.commands.append(doc)
                if self.auto_answer:
                    await self.answer(doc["id"], self.auto_answer, "done by test car")

    async def answer(self, command_id: str, status: str, detail: str = "") -> None:
        assert self._client
        await self._client.publish(
            f"vehicles/{self.vin}/command-results",
            orjson.dumps({"id": command_id, "status": status, "detail": detail}),
            qos=1,
        )

    async def publish(self, payload: bytes | dict[str, Any], topic: str | None = None) -> None:
        assert self._client
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        await self._client.publish(topic or f"vehicles/{self.vin}/telemetry", data, qos=1)

    async def send(self, seq: int, samples: list[dict[str, Any]]) -> None:
        await self.publish({"seq": seq, "samples": samples})


async def eventually(check: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Wait until `check()` (sync or async) returns a truthy value; fail with the last value otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
        await asyncio.sleep(interval)
