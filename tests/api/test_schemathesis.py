"""Schemathesis over the whole HTTP API: no input its OpenAPI allows gets a 5xx, and answers match the schema.

The platform runs for real (SQLite, embedded broker) under the application's own lifespan, started by
schemathesis' ASGI client on its event-loop thread. Its database is seeded first, through a platform of its
own, with users, cars, a command and telemetry, so that generated requests reach real cars and real data as
well as ids that do not exist.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from smartev.app import create_app
from smartev.vehicles.vin import make_vin

from conftest import TestCar, eventually, make_settings, running_platform

SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
SIGNALS = {
    "Vehicle.Speed": 52.5,
    SOC: 81.2,
    "Vehicle.IsMoving": True,
    "Vehicle.TraveledDistance": 123_456,
    "Vehicle.LowVoltageSystemState": "ON",
    "Vehicle.Diagnostics.DTCList": ["P0123", "U0100"],
}


CHECKS = [
    not_a_server_error,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@dataclass
class Seeded:
    tokens: dict[str, str]
    vins: list[str]
    command_ids: list[str]


async def seed(tmp: Path) -> Seeded:
    """Users, two cars, a command and telemetry in the database at `tmp` (the platform stops afterwards)."""
    async with running_platform(tmp, "sqlite", "embedded") as h:
        tokens = {
            "owner": await h.user("alice@example.com"),
            "operator": await h.user("operator@example.com", "operator"),
        }
        await h.user("bob@example.com")
        rng = random.Random("schemathesis")
        vins = [make_vin(rng), make_vin(rng)]
        creds = await h.register(tokens["operator"], vins[0], "alice@example.com")
        await h.register(tokens["operator"], vins[1], "bob@example.com")
        host, port = h.mqtt
        async with TestCar(host, port, vins[0], creds["mqtt_password"]) as car:
            now = h.platform.clock.now_ms()
            await car.send(1, [{"ts": now - 60_000 * i, "signals": SIGNALS} for i in range(5)])
            await eventually(lambda: 1 in car.acks)
            r = await h.http.post(
                f"/api/v1/vehicles/{vins[0]}/commands", json={"name": "lock"}, headers=h.auth(tokens["owner"])
            )
            assert r.status_code == 202, r.text
            command_id = r.json()["id"]
            await eventually(lambda: car.commands)
        return Seeded(tokens, vins, [command_id])


def _spec_of_a_fresh_app() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        return create_app(make_settings(Path(d), f"sqlite+aiosqlite:///{d}/spec.db", "embedded")).openapi()


# The schema comes from the application's code at collection time; the requests go to a running platform
# (the `api` fixture). schemathesis.pytest.from_fixture would load it from the running app instead, but
# schemathesis 4.32.5's lazy loader reads Node._nodeid, which pytest 9 no longer has.
schema = schemathesis.openapi.from_dict(_spec_of_a_fresh_app()).exclude(
    path_regex=r"/live$"
)  # endless stream
SEEDED: list[Seeded] = []  # filled by the `api` fixture before any case is generated


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Besides generated ids, use the seeded cars and command, so that requests reach real data."""
    params = dict(path_parameters or {})
    real = [params]
    for seeded in SEEDED:
        for vin in seeded.vins:
            if "vin" in params:
                real.append({**params, "vin": vin})
                if "command_id" in params:
                    real += [{**params, "vin": vin, "command_id": c} for c in seeded.command_ids]
    return st.sampled_from(real)


@schema.hook
def flatmap_query(context: Any, query: dict[str, Any] | None) -> Any:
    """History of the signals the seeded car sent, besides generated paths."""
    if not query or "path" not in query:
        return st.just(query)
    return st.sampled_from([query, *({**query, "path": p} for p in SIGNALS)])


@dataclass
class Api:
    app: Any
    seeded: Seeded


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A running platform on a seeded database, reached in-process through schemathesis' ASGI transport."""
    tmp = tmp_path_factory.mktemp("schemathesis")
    seeded = asyncio.run(seed(tmp))
    app = create_app(make_settings(tmp, f"sqlite+aiosqlite:///{tmp / 'smartev.db'}", "embedded"))
    live = schemathesis.openapi.from_asgi(
        "/openapi.json", app
    )  # starts the app's lifespan: the platform runs
    try:
        assert live.raw_schema == schema.raw_schema  # the schema tested is the one the running app serves
        SEEDED.append(seeded)
        yield Api(app, seeded)
    finally:
        SEEDED.clear()
        shutdown_lifespans()


BOUNDED = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def check(case: Any, api: Api, role: str) -> None:
    headers = {"Authorization": f"Bearer {api.seeded.tokens[role]}"}
    case.call_and_validate(app=api.app, headers=headers, checks=CHECKS)


@schema.parametrize()
@BOUNDED
def test_api_as_operator(case: Any, api: Api) -> None:
    """The fleet operator's token: every car is visible, staff-only operations are allowed."""
    check(case, api, "operator")


@schema.parametrize()
@BOUNDED
def test_api_as_owner(case: Any, api: Api) -> None:
    """An owner's token: only her car is visible, staff-only operations are refused."""
    check(case, api, "owner")


# -- the known mismatch, shown deterministically ------------------------------------------------------------

DOMAIN_422 = [
    (
        "POST",
        "/api/v1/vehicles",
        {},
        {},
        {"vin": "1M8GDM9A1KP042788", "model": "S1", "owner": "bob@example.com"},
    ),
    ("POST", "/api/v1/vehicles/{vin}/commands", {"vin": 0}, {}, {"name": "self_destruct"}),
    ("GET", "/api/v1/vehicles/{vin}/history", {"vin": 0}, {"path": "Vehicle.Nope"}, None),
]


def _case(api: Api, method: str, path: str, params: dict[str, Any], query: dict[str, Any], body: Any) -> Any:
    operation = schema[path][method]
    path_parameters = {k: api.seeded.vins[v] for k, v in params.items()}
    extra = {"body": body} if body is not None else {}
    return operation.Case(path_parameters=path_parameters, query=query or None, **extra)


@pytest.mark.parametrize(("method", "path", "params", "query", "body"), DOMAIN_422)
def test_domain_errors_match_the_documented_422(
    api: Api, method: str, path: str, params: dict[str, Any], query: dict[str, Any], body: Any
) -> None:
    case = _case(api, method, path, params, query, body)
    response = case.call(app=api.app, headers={"Authorization": f"Bearer {api.seeded.tokens['operator']}"})
    assert response.status_code == 422, response.text
    case.validate_response(response, checks=[response_schema_conformance])


def test_request_validation_errors_match_the_documented_422(api: Api) -> None:
    """The control for the test above: FastAPI's own 422 has the documented shape, and the check sees it."""
    case = _case(api, "POST", "/api/v1/vehicles", {}, {}, {"vin": "1M8GDM9AXKP042788", "model": "S1"})
    response = case.call(app=api.app, headers={"Authorization": f"Bearer {api.seeded.tokens['operator']}"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "owner"]
    case.validate_response(response, checks=[response_schema_conformance])
