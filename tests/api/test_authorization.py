"""Broken object-level authorisation (OWASP API1): a two-tenant matrix over every API path that takes an id.

Two owners (Alice and Bob) each have a car with a command; one operator runs the fleet. The operations are
read from the application's own OpenAPI document, so an endpoint added later is in the matrix without anyone
remembering to add it; an operation the matrix cannot call (a required body or query parameter it does not
know) fails loudly instead of being skipped.

Expected, for each operation on Alice's car:
  no token          401
  Bob (a stranger)  404, the same answer as for a car that does not exist; 403 for staff-only operations
  Alice (owner)     the documented 2xx; 403 for staff-only operations
  operator          the documented 2xx for reads and staff-only operations
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import pytest_asyncio
from fastapi import FastAPI

from csms.helpers import connected
from smartev.app import create_app
from smartev.vehicles.vin import make_vin

from conftest import Harness, eventually, make_settings, running_platform

in_module_loop = pytest.mark.asyncio(loop_scope="module")  # the world is built once per database

# How to call operations whose inputs are not ids; anything else required fails a test below.
ST = "/api/v1/stations/{station_id}"
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/vehicles/{vin}/commands"): {"name": "honk_flash"},
    ("POST", f"{ST}/remote-start"): {"id_tag": "TAG-ALICE"},
    ("POST", f"{ST}/remote-stop"): {},
    ("POST", f"{ST}/reset"): {"type": "soft"},
    ("POST", f"{ST}/unlock"): {"evse_id": 1},
    ("POST", f"{ST}/availability"): {"evse_id": 1, "operative": True},
    ("POST", f"{ST}/trigger"): {"message": "Heartbeat"},
    ("POST", f"{ST}/charging-profile"): {"limit": 7400, "unit": "W", "evse_id": 1},
    ("POST", f"{ST}/firmware"): {"location": "https://firmware.example/cp-2.0.bin"},
    ("POST", f"{ST}/reservations"): {
        "id_tag": "TAG-ALICE",
        "evse_id": 1,
        "expires_at": "2030-01-01T00:00:00Z",
    },
    ("PUT", f"{ST}/configuration"): {"values": {"HeartbeatInterval": "120"}},
    ("PUT", "/api/v1/sites/{site_id}"): {"name": "Home", "limits": {"id": "house", "max_a": 32}},
    ("PUT", "/api/v1/sites/{site_id}/stations/{station_id}"): {"max_a": 16},
    ("PUT", "/api/v1/charging-sessions/{session_id}/goal"): {"target_soc": 80},
}
QUERY_VALUES: dict[str, str] = {"path": "Vehicle.Speed"}
# refused by role before anything is looked up: strangers and owners alike get 403
STAFF_ONLY = {
    ("POST", "/api/v1/vehicles/{vin}/mqtt-credentials"),
    ("POST", f"{ST}/password"),
    ("POST", "/api/v1/id-tags/{tag}/block"),
    ("GET", "/api/v1/vehicles/{vin}/telemetry-errors"),
}
# the caller's own things (API tokens): to anyone else, an operator too, someone's id does not exist
OWN_ONLY_PREFIX = "/api/v1/users/me/"
# an owner may see their home charger but only operators may change it; a stranger does not learn it exists
OPERATOR_COMMANDS = {
    (m, f"{ST}/{tail}")
    for m, tail in [
        ("GET", "configuration"), ("PUT", "configuration"), ("POST", "reset"), ("POST", "availability"),
        ("POST", "trigger"), ("POST", "charging-profile"), ("DELETE", "charging-profile"),
        ("GET", "composite-schedule"), ("POST", "firmware"), ("POST", "reservations"),
        ("DELETE", "reservations/{reservation_id}"), ("POST", "local-list"),
    ]
}  # fmt: skip
ID_PARAMS = {"vin", "command_id", "station_id", "session_id", "tag", "reservation_id", "token_id", "site_id"}
# operations that remove what the rest of the matrix needs: the world puts it back after each success
RESTORED = {
    ("DELETE", "/api/v1/sites/{site_id}"),
    ("DELETE", "/api/v1/sites/{site_id}/stations/{station_id}"),
}
ROLES = ("anonymous", "stranger", "owner", "operator")


@dataclass(frozen=True)
class Operation:
    """One id-bearing operation of the API, as its OpenAPI document describes it."""

    method: str
    path: str
    success: int
    stream: bool
    path_params: frozenset[str]
    required_query: frozenset[str]
    body_required: bool

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    @property
    def read(self) -> bool:
        return self.method == "GET"


def operations_from(spec: dict[str, Any]) -> list[Operation]:
    """Every operation whose path has a parameter."""
    out = []
    for path, item in spec["paths"].items():
        if "{" not in path:
            continue
        for method, op in item.items():
            if method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                continue
            params = op.get("parameters", [])
            success = min(int(code) for code in op["responses"] if code.startswith("2"))
            content = op["responses"][str(success)].get("content", {})
            out.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    success=success,
                    stream="text/event-stream" in content,
                    path_params=frozenset(p["name"] for p in params if p["in"] == "path"),
                    required_query=frozenset(
                        p["name"] for p in params if p["in"] == "query" and p.get("required")
                    ),
                    body_required=bool(op.get("requestBody", {}).get("required")),
                )
            )
    return sorted(out, key=lambda o: (o.path, o.method))


def _spec_of_a_fresh_app() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        settings = make_settings(Path(d), f"sqlite+aiosqlite:///{d}/spec.db", "embedded")
        return create_app(settings).openapi()


OPERATIONS = operations_from(_spec_of_a_fresh_app())


def expected_status(op: Operation, role: str) -> int | None:
    """The status the matrix requires, or None where the policy does not say (operators writing to a car)."""
    staff_only = op.key in STAFF_ONLY
    if role == "anonymous":
        return 401
    if role == "stranger":
        return 403 if staff_only else 404
    if role == "owner":
        return 403 if staff_only or op.key in OPERATOR_COMMANDS else op.success
    if op.path.startswith(OWN_ONLY_PREFIX):
        return 404
    if op.read or staff_only or "{vin}" not in op.path:
        return op.success
    return None


CELLS = [
    pytest.param(op, role, status, id=f"{op.method} {op.path} as {role}")
    for op in OPERATIONS
    for role in ROLES
    if (status := expected_status(op, role)) is not None
]


@dataclass
class Car:
    vin: str
    owner: str
    model: str
    command_id: str
    station_id: str = ""
    session_id: int = 0
    tag: str = ""
    token_id: int = 0
    site_id: str = ""

    def ids(self) -> dict[str, Any]:
        return {
            "vin": self.vin,
            "command_id": self.command_id,
            "station_id": self.station_id,
            "session_id": self.session_id,
            "tag": self.tag,
            "reservation_id": 1,
            "token_id": self.token_id,
            "site_id": self.site_id,
        }


@dataclass
class World:
    h: Harness
    app: FastAPI
    tokens: dict[str, str]
    cars: dict[str, Car]
    stack: AsyncExitStack | None = None

    async def reconnect(self, station_id: str, password: str) -> None:
        """A new password closes the station's connection: connect it again, as its owner would."""
        assert self.stack is not None
        await self.stack.enter_async_context(connected(self.h, station_id, password))
        await eventually(lambda: self.h.platform.central.online(station_id), timeout=5)

    async def restore_home(self, name: str) -> None:
        """Put the owner's home site (with their charger in it) back after a test removed it."""
        await home_of(self.h, self.tokens["operator"], self.cars[name])


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    """Alice and Bob with a car and a command each, and an operator; on SQLite and on PostgreSQL."""
    db = request.param
    async with running_platform(tmp_path_factory.mktemp(f"authz-{db}"), db, "embedded") as h:
        rng = random.Random(f"authz-{db}")
        tokens = {
            "alice": await h.user("alice@example.com"),
            "bob": await h.user("bob@example.com"),
            "operator": await h.user("operator@example.com", "operator"),
        }
        cars = {}
        for name, model in (("alice", "Alice's Roadster"), ("bob", "Bob's Van")):
            vin = make_vin(rng)
            await h.register(tokens["operator"], vin, f"{name}@example.com", model=model)
            r = await h.http.post(
                f"/api/v1/vehicles/{vin}/commands", json={"name": "lock"}, headers=h.auth(tokens[name])
            )
            assert r.status_code == 202, r.text
            cars[name] = Car(vin, f"{name}@example.com", model, r.json()["id"])
            r = await h.http.post(
                "/api/v1/users/me/api-tokens", json={"name": f"{name}'s script"}, headers=h.auth(tokens[name])
            )
            assert r.status_code == 201, r.text
            cars[name].token_id = r.json()["id"]
        async with AsyncExitStack() as stack:
            for name, car in cars.items():
                await charging_of(h, tokens["operator"], name, car, stack)
            yield World(h, create_app(platform=h.platform), tokens, cars, stack)


async def charging_of(h: Harness, operator: str, name: str, car: Car, stack: AsyncExitStack) -> None:
    """The owner's home charger (connected, answering like a real station), their card, an ended session
    and a running one."""
    car.station_id, car.tag = f"ST-{name.upper()}", f"TAG-{name.upper()}"
    r = await h.http.post(
        "/api/v1/stations", json={"id": car.station_id, "owner": car.owner}, headers=h.auth(operator)
    )
    assert r.status_code == 201, r.text
    password = r.json()["password"]
    card = car.tag
    car.tag += "-SPARE"  # the one the matrix blocks; the card keeps charging
    for tag in (card, car.tag):
        r = await h.http.post(
            "/api/v1/id-tags", json={"tag": tag, "owner": car.owner}, headers=h.auth(operator)
        )
        assert r.status_code == 201, r.text
    await stack.enter_async_context(connected(h, car.station_id, password))
    station = h.platform.stations.get(car.station_id)
    start = int(time.time() * 1000) - 3_600_000
    ended = await h.platform.charging.start(
        station, protocol="ocpp1.6", evse_id=1, connector_id=1, id_tag=card, meter_start_wh=0, ts_ms=start
    )
    await h.platform.charging.stop(
        car.station_id, ended.transaction_id, meter_stop_wh=5000, ts_ms=start + 1_800_000, reason="Local"
    )
    running = await h.platform.charging.start(
        station, protocol="ocpp1.6", evse_id=1, connector_id=1, id_tag=card, meter_start_wh=5000,
        ts_ms=start + 2_000_000,
    )  # fmt: skip
    car.session_id = running.id  # reads work on any session; a goal only on one still charging
    assert ended.id != running.id
    await home_of(h, operator, car)


async def home_of(h: Harness, operator: str, car: Car) -> None:
    """The owner's home site with their charger in it (created, or re-created after a delete)."""
    car.site_id = "HOME-" + car.station_id.removeprefix("ST-")
    if car.site_id not in {s.id for s in h.platform.sites.all()}:
        r = await h.http.post(
            "/api/v1/sites",
            json={
                "id": car.site_id,
                "name": "Home",
                "owner": car.owner,
                "limits": {"id": "house", "max_a": 32},
            },
            headers=h.auth(operator),
        )
        assert r.status_code == 201, r.text
    r = await h.http.put(
        f"/api/v1/sites/{car.site_id}/stations/{car.station_id}", json={}, headers=h.auth(operator)
    )
    assert r.status_code == 200, r.text


async def call(
    w: World, op: Operation, token: str | None, vin: str, command_id: str, **ids: Any
) -> tuple[int, dict[str, str], str]:
    """Call the operation; for an event stream only the status and headers (the stream never ends)."""
    alice = w.cars["alice"].ids()
    url = op.path.format(**{**alice, "vin": vin, "command_id": command_id, **ids})
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params = {name: QUERY_VALUES[name] for name in op.required_query}
    if op.stream:
        return await open_event_stream(w.app, url, urlencode(params), headers)
    r = await w.h.http.request(op.method, url, params=params, json=BODIES.get(op.key), headers=headers)
    return r.status_code, dict(r.headers), r.text


async def open_event_stream(
    app: FastAPI, path: str, query: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], str]:
    """GET an endless response through ASGI, keep its start and first chunk, then hang up.

    httpx's ASGI transport reads a response to its end before returning, so it cannot open an SSE stream.
    """
    start: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    chunks: list[bytes] = []
    first_chunk = asyncio.Event()
    hang_up = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and not start.done():
            start.set_result(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            first_chunk.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"smartev.test"),
                    *((k.lower().encode(), v.encode()) for k, v in headers.items())],
        "client": ("127.0.0.1", 50000), "server": ("smartev.test", 80),
    }  # fmt: skip
    task = asyncio.create_task(app(scope, receive, send))
    try:
        message = await asyncio.wait_for(start, 5)
        await asyncio.wait_for(first_chunk.wait(), 5)
    finally:
        hang_up.set()
        try:
            await asyncio.wait_for(task, 5)
        except TimeoutError:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
    response_headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
    return message["status"], response_headers, b"".join(chunks).decode()


def caller(w: World, role: str) -> str | None:
    return {"anonymous": None, "stranger": w.tokens["bob"], "owner": w.tokens["alice"]}.get(
        role, w.tokens["operator"]
    )


# -- the matrix ---------------------------------------------------------------------------------------------


def test_the_matrix_covers_the_vehicle_paths() -> None:
    """A guard: if the OpenAPI document were read wrongly, the matrix would silently shrink."""
    keys = {op.key for op in OPERATIONS}
    for key in [
        ("GET", "/api/v1/vehicles/{vin}"),
        ("GET", "/api/v1/vehicles/{vin}/state"),
        ("GET", "/api/v1/vehicles/{vin}/history"),
        ("POST", "/api/v1/vehicles/{vin}/commands"),
        ("GET", "/api/v1/vehicles/{vin}/commands"),
        ("GET", "/api/v1/vehicles/{vin}/commands/{command_id}"),
        ("GET", "/api/v1/vehicles/{vin}/commands/{command_id}/audit"),
        ("POST", "/api/v1/vehicles/{vin}/mqtt-credentials"),
        ("GET", "/api/v1/vehicles/{vin}/live"),
    ]:
        assert key in keys


@pytest.mark.parametrize("op", OPERATIONS, ids=[f"{op.method} {op.path}" for op in OPERATIONS])
def test_every_operation_is_callable_by_the_matrix(op: Operation) -> None:
    """An id-bearing operation the matrix does not know how to call fails here rather than going untested."""
    assert op.path_params <= ID_PARAMS, f"teach the matrix the path parameter(s) {op.path_params - ID_PARAMS}"
    assert op.required_query <= set(QUERY_VALUES), f"add {op.required_query} to QUERY_VALUES"
    assert not op.body_required or op.key in BODIES, f"add a request body for {op.key} to BODIES"


@in_module_loop
async def test_the_running_app_has_the_same_id_bearing_operations(world: World) -> None:
    r = await world.h.http.get("/openapi.json")
    assert r.status_code == 200
    assert operations_from(r.json()) == OPERATIONS


@in_module_loop
@pytest.mark.parametrize(("op", "role", "status"), CELLS)
async def test_matrix(world: World, op: Operation, role: str, status: int) -> None:
    alice, bob = world.cars["alice"], world.cars["bob"]
    code, headers, text = await call(world, op, caller(world, role), alice.vin, alice.command_id)
    assert code == status, text
    if op.key == ("POST", f"{ST}/password") and code == 200:
        await world.reconnect(alice.station_id, orjson.loads(text)["password"])
    if op.key in RESTORED and code == 204:
        await world.restore_home("alice")
    if 200 <= code < 300:
        if op.stream:
            assert headers["content-type"].startswith("text/event-stream")
        for other in (bob.vin, bob.owner, bob.model, bob.command_id, bob.station_id, bob.tag, bob.site_id):
            assert other not in text  # nothing of Bob's in an answer about Alice's car
        return
    assert headers["content-type"] == "application/json"
    # a refusal carries a reason and nothing of Alice's
    for secret in (alice.owner, alice.model, alice.command_id, "mqtt_password"):
        assert secret not in text
    if code == 401:
        assert headers.get("www-authenticate") == "Bearer"


@in_module_loop
@pytest.mark.parametrize("op", OPERATIONS, ids=[f"{op.method} {op.path}" for op in OPERATIONS])
async def test_a_strangers_car_looks_exactly_like_no_car(world: World, op: Operation) -> None:
    """Bob cannot learn that Alice's VIN exists: same status and same body as for an unregistered VIN."""
    alice = world.cars["alice"]
    ghost = make_vin(random.Random("a car nobody registered"))
    assert world.h.platform.registry.by_vin(ghost) is None
    token = world.tokens["bob"]
    ghosts = {
        "station_id": "ST-GHOST",
        "session_id": 999_999,
        "tag": "TAG-GHOST",
        "token_id": 999_999,
        "site_id": "SITE-GHOST",
    }
    real = await call(world, op, token, alice.vin, alice.command_id)
    fake = await call(world, op, token, ghost, alice.command_id, **ghosts)
    assert real[0] == fake[0] and real[0] in (403, 404)
    real_text, fake_text = real[2].replace(alice.vin, "<vin>"), fake[2].replace(ghost, "<vin>")
    for key, value in ((k, v) for k, v in ghosts.items() if k in op.path_params):
        real_text = real_text.replace(str(alice.ids()[key]), f"<{key}>")
        fake_text = fake_text.replace(str(value), f"<{key}>")
    assert real_text == fake_text


COMMAND_OPS = [op for op in OPERATIONS if "command_id" in op.path_params and op.read]


@in_module_loop
@pytest.mark.parametrize("role", ["owner", "operator"])
@pytest.mark.parametrize("op", COMMAND_OPS, ids=[f"{op.method} {op.path}" for op in COMMAND_OPS])
async def test_a_command_is_reachable_only_through_its_own_car(
    world: World, op: Operation, role: str
) -> None:
    """Alice puts Bob's command id under her own VIN: 404. Not even an operator can mix cars and commands."""
    alice, bob = world.cars["alice"], world.cars["bob"]
    code, _, text = await call(world, op, caller(world, role), alice.vin, bob.command_id)
    assert code == 404, text
    assert bob.vin not in text and bob.model not in text
    # the control: the same caller reaches Alice's own command there
    code, _, _ = await call(world, op, caller(world, role), alice.vin, alice.command_id)
    assert code == 200


@in_module_loop
async def test_lists_show_only_what_the_caller_may_see(world: World) -> None:
    h, alice, bob = world.h, world.cars["alice"], world.cars["bob"]
    seen = {}
    for who in ("alice", "bob", "operator"):
        r = await h.http.get("/api/v1/vehicles", headers=h.auth(world.tokens[who]))
        assert r.status_code == 200
        seen[who] = {v["vin"] for v in r.json()}
    assert seen == {"alice": {alice.vin}, "bob": {bob.vin}, "operator": {alice.vin, bob.vin}}

    r = await h.http.get(f"/api/v1/vehicles/{alice.vin}/commands", headers=h.auth(world.tokens["alice"]))
    assert r.status_code == 200
    ids = {c["id"] for c in r.json()}
    assert alice.command_id in ids and bob.command_id not in ids
    assert {c["vin"] for c in r.json()} == {alice.vin}


@in_module_loop
@pytest.mark.parametrize(("who", "status"), [("alice", 200), ("bob", 404), ("operator", 200)])
async def test_a_vin_written_differently_does_not_open_a_door(world: World, who: str, status: int) -> None:
    """The lookup normalises case and blanks; the check must hold for the normalised VIN too."""
    alice = world.cars["alice"]
    for written in (alice.vin.lower(), f" {alice.vin} ", alice.vin[:9].lower() + alice.vin[9:]):
        r = await world.h.http.get(f"/api/v1/vehicles/{written}", headers=world.h.auth(world.tokens[who]))
        assert r.status_code == status, (written, r.text)
