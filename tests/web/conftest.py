"""Browser tests of the owner app and operator console against a real platform.

One world per test module (module-scoped, in the module's event loop): a platform on a fresh SQLite database
with the embedded broker, served by uvicorn on a free port; two owners and an operator; a car for each owner;
owner A's car driven by the simulator (so its twin changes live and commands get answered) and one simulated
OCPP station. Each test gets new browser contexts from one Chromium per module, watched for page errors,
console errors, CSP violations and requests leaving the platform.

Chromium is Debian's (/usr/bin/chromium, installed by .ci/run); no browser is ever downloaded.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from smartev.app import Platform
from smartev.settings import WebSettings
from smartev.sim.car import SimulatedCar
from smartev.sim.chargers import SimulatedStation
from smartev.sim.fleet import CarIdentity, Fleet
from smartev.vehicles.vin import make_vin

from .helpers import DESKTOP, PHONE, REPORT_CSP_VIOLATIONS, WAIT, Account, Watch, origin
from conftest import IN_CI, eventually, fresh_database, make_settings, serve_http

CHROMIUM = Path("/usr/bin/chromium")
STATION_ID = "WEB-ST-1"
STATION_PASSWORD = "web-test-station-password"
CARD = "WEB-CARD-0001"  # owner A's charging card
# A weekday night in Berlin: the simulated car sleeps parked at home for hours of simulated time, so it can be
# unlocked (never while driving) and its commands answered; every 1.5 s it still reports its full state.
SIM_START = datetime(2026, 11, 24, 1, 0, tzinfo=ZoneInfo("Europe/Berlin"))
SIM_SPEED = 20.0


@dataclass(frozen=True, slots=True)
class Car:
    vin: str
    model: str
    owner: Account


@dataclass
class World:
    """A running platform with its people, cars and station, and a client for its HTTP API."""

    base_url: str
    platform: Platform
    http: httpx.AsyncClient
    owner_a: Account
    owner_b: Account
    operator: Account
    car_a: Car
    car_b: Car
    fleet: Fleet
    station: SimulatedStation
    tile_url: str
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def sim_a(self) -> SimulatedCar:
        """Owner A's simulated car: what it sent and which commands it carried out."""
        return self.fleet.car(self.car_a.vin)

    def sent(self, path: str) -> list[Any]:
        """Every value of `path` the simulated car sent (oldest first)."""
        return [
            sample["signals"][path]
            for samples in self.sim_a.ledger.sent.values()
            for sample in samples
            if path in sample["signals"]
        ]

    async def token(self, account: Account) -> str:
        """A bearer token of `account`, from the real login endpoint (one per account and world)."""
        if account.email not in self._tokens:
            r = await self.http.post(
                "/api/v1/auth/token", data={"username": account.email, "password": account.password}
            )
            assert r.status_code == 200, r.text
            self._tokens[account.email] = r.json()["access_token"]
        return self._tokens[account.email]

    async def get(self, account: Account, path: str) -> Any:
        r = await self.http.get(path, headers={"Authorization": f"Bearer {await self.token(account)}"})
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
        return r.json()


@asynccontextmanager
async def running_world(tmp_path: Path, tile_url: str = "") -> AsyncIterator[World]:
    async with fresh_database("sqlite", tmp_path) as url, AsyncExitStack() as stack:
        settings = make_settings(tmp_path, url, "embedded", web=WebSettings(tile_url=tile_url))
        platform = Platform(settings)
        h = await stack.enter_async_context(serve_http(platform))

        people = {
            "a": Account("alice@example.com", "alice password 1", "owner"),
            "b": Account("bob@example.com", "bob password 1", "owner"),
            "op": Account("operator@example.com", "operator password 1", "operator"),
        }
        for p in people.values():
            await platform.accounts.create_user(p.email, p.password, p.role)
        rng = random.Random("smartev-web-tests")
        car_a = Car(make_vin(rng), "smartev S1", people["a"])
        car_b = Car(make_vin(rng), "smartev X1", people["b"])
        _, password_a = await platform.registry.register(car_a.vin, car_a.model, car_a.owner.email)
        await platform.registry.register(car_b.vin, car_b.model, car_b.owner.email)

        fleet = Fleet(
            [CarIdentity(car_a.vin, password_a, car_a.model)],
            mqtt_host=platform.address.host,
            mqtt_port=platform.address.port,
            seed=1,
            speed=SIM_SPEED,
            report_interval_s=0.25,
            start=SIM_START,
            wall_clock_ts=True,  # simulated time runs ahead; the platform refuses samples from the future
            ledger_size=100_000,  # tests compare the pages with everything the car sent
        )
        await platform.charging.add_tag(CARD, "rfid", owner_email=car_a.owner.email)
        await platform.stations.register(
            STATION_ID, password=STATION_PASSWORD, latitude=52.5163, longitude=13.3777
        )
        station = SimulatedStation(
            STATION_ID,
            platform.central.url,
            STATION_PASSWORD,
            version="1.6",
            connectors=2,
            max_power_w=22_000.0,
            seed=1,
            ping_interval_s=None,
        )
        for name, job in (("cars", fleet.run()), ("station", station.run())):
            task = asyncio.create_task(job, name=name)
            stack.push_async_callback(_cancel, task)

        world = World(
            str(h.http.base_url).rstrip("/"),
            platform,
            h.http,
            people["a"],
            people["b"],
            people["op"],
            car_a,
            car_b,
            fleet,
            station,
            tile_url,
        )

        async def car_reports() -> bool:
            state = await world.get(world.operator, f"/api/v1/vehicles/{car_a.vin}/state")
            return bool(state["online"] and state["signals"])

        await eventually(car_reports, timeout=30, interval=0.2)
        await eventually(lambda: platform.central.online(STATION_ID), timeout=30, interval=0.2)
        yield world


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait({task}, timeout=10)


@pytest.fixture(scope="module")
def tile_url() -> str:
    """The tile server the pages are configured with: none (maps without tiles, fully offline)."""
    return ""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, tile_url: str) -> AsyncIterator[World]:
    async with running_world(tmp_path_factory.mktemp("web"), tile_url) as w:
        yield w


def chromium() -> str:
    """Debian's Chromium; its absence fails the run in CI and skips the browser tests elsewhere."""
    if not CHROMIUM.is_file():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is required in CI (Debian package chromium; .ci/run installs it)")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); browser tests skipped")
    return str(CHROMIUM)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium()
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


@dataclass
class Tab:
    """A page in a fresh browser context, with the watch over everything it does."""

    page: Page
    context: BrowserContext
    watch: Watch


OpenPage = Callable[..., Awaitable[Tab]]


@pytest_asyncio.fixture(loop_scope="module")
async def open_page(browser: Browser, world: World) -> AsyncIterator[OpenPage]:
    """`await open_page("phone" | "desktop")`: a page in a new context; the test fails when any page of it
    had an error, a console error, a CSP violation or a request off the platform's origin."""
    tile_origin = origin(world.tile_url.replace("{s}", "a")) if world.tile_url else None
    tabs: list[Tab] = []

    async def open_(kind: str = "desktop") -> Tab:
        context = await browser.new_context(
            **(PHONE if kind == "phone" else DESKTOP),
            base_url=world.base_url,
            locale="en-US",
            timezone_id="Europe/Berlin",
        )
        context.set_default_timeout(WAIT)  # no action waits longer than an expectation would
        watch = Watch(world.base_url, tile_origin)
        watch.attach(context)
        await context.add_init_script(REPORT_CSP_VIOLATIONS)
        tab = Tab(await context.new_page(), context, watch)
        tabs.append(tab)
        return tab

    yield open_
    problems = [p for tab in tabs for p in tab.watch.problems]
    for tab in tabs:
        await tab.context.close()
    if problems:
        pytest.fail("the pages misbehaved:\n  " + "\n  ".join(problems))
