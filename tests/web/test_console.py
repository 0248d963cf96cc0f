"""The operator console in a real browser: fleet counts, table, search, registering a car, a car's signals,
ingest health and the charging stations."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime

import pytest
from playwright.async_api import Locator, Page, expect

from smartev.vehicles.vin import make_vin

from .conftest import CARD, STATION_ID, OpenPage, World
from .helpers import WAIT, controls_without_a_name, horizontal_overflow, log_in, screenshot, shown_as
from conftest import TestCar, eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


def count(page: Page, what: str) -> Locator:
    return page.get_by_test_id(f"count-{what}")


def exactly(n: int) -> re.Pattern[str]:
    return re.compile(rf"^\D*{n}\D*$")


async def test_fleet_counts_lists_and_searches_the_registered_cars(world: World, open_page: OpenPage) -> None:
    page = (await open_page("desktop")).page
    await log_in(page, world.operator)  # lands on Fleet
    assert page.url.endswith("#/fleet")

    summary = await world.get(world.operator, "/api/v1/fleet/summary")
    registered = len(world.platform.registry.all())
    assert summary["total"] == registered and summary["online"] >= 1, summary  # the simulated car is online
    for what in ("total", "online", "offline", "driving", "charging"):
        await expect(count(page, what)).to_have_text(exactly(summary[what]), timeout=WAIT)

    cars = page.get_by_role("table", name="Cars", exact=True)
    for car in (world.car_a, world.car_b):
        link = cars.get_by_role("link", name=car.vin, exact=True)
        await expect(link).to_have_attribute("href", f"#/cars/{car.vin}", timeout=WAIT)
    await expect(page.get_by_text(f"1–{registered} of {registered}", exact=True)).to_be_visible()
    await expect(page.get_by_test_id("fleet-map")).to_be_visible()

    search = page.get_by_label("Search cars")
    await search.fill(world.owner_b.email)
    await expect(cars.get_by_role("link", name=world.car_a.vin)).to_have_count(0, timeout=WAIT)
    await expect(cars.get_by_role("link", name=world.car_b.vin)).to_be_visible()
    await search.fill(world.car_a.vin[-6:])
    await expect(cars.get_by_role("link", name=world.car_a.vin)).to_be_visible(timeout=WAIT)
    await expect(cars.get_by_role("link", name=world.car_b.vin)).to_have_count(0)
    await search.fill("")
    await expect(cars.get_by_role("link", name=world.car_b.vin)).to_be_visible(timeout=WAIT)
    assert await controls_without_a_name(page) == []
    await screenshot(page, "console-fleet-desktop.png")


async def test_fleet_page_fits_a_phone(world: World, open_page: OpenPage) -> None:
    page = (await open_page("phone")).page
    await log_in(page, world.operator)
    await expect(count(page, "total")).to_have_text(re.compile(r"\d"), timeout=WAIT)
    cars = page.get_by_role("table", name="Cars", exact=True)
    await expect(cars.get_by_role("link", name=world.car_a.vin)).to_be_visible(timeout=WAIT)
    assert await horizontal_overflow(page) == 0, "the fleet page is wider than a 390 px phone"
    await screenshot(page, "console-fleet-phone.png")


async def test_registering_a_car_shows_working_mqtt_credentials_once(
    world: World, open_page: OpenPage
) -> None:
    page = (await open_page("desktop")).page
    await log_in(page, world.operator)
    vin = make_vin(random.Random("web-console-new-car"))
    before = await world.get(world.operator, "/api/v1/fleet/summary")

    await page.get_by_label("VIN", exact=True).fill(vin)
    await page.get_by_label("Model", exact=True).fill("smartev V1")
    await page.get_by_label("Owner email", exact=True).fill(world.owner_b.email)
    await page.get_by_role("button", name="Register car").click()
    password = page.get_by_test_id("mqtt-password")
    await expect(password).not_to_be_empty(timeout=WAIT)
    await expect(page.get_by_text(re.compile(r"shown only this once|shown once", re.I))).to_be_visible()
    secret = (await password.inner_text()).strip()

    car = await world.get(world.operator, f"/api/v1/vehicles/{vin}")
    assert (car["model"], car["owner"]) == ("smartev V1", world.owner_b.email)
    await expect(count(page, "total")).to_have_text(exactly(before["total"] + 1), timeout=WAIT)
    cars = page.get_by_role("table", name="Cars", exact=True)
    await expect(cars.get_by_role("link", name=vin, exact=True)).to_be_visible(timeout=WAIT)

    # the password on the screen is the car's: a car logging in with it comes online
    host, port = world.platform.address.host, world.platform.address.port
    async with TestCar(host, port, vin, secret):

        async def online() -> bool:
            state = await world.get(world.operator, f"/api/v1/vehicles/{vin}/state")
            return bool(state["online"])

        await eventually(online, timeout=WAIT / 1000)
        # the 5 s refresh
        await expect(count(page, "online")).to_have_text(exactly(before["online"] + 1), timeout=WAIT)

    # shown once: opening the page again shows no password
    await page.reload()
    await expect(count(page, "total")).to_have_text(exactly(before["total"] + 1), timeout=WAIT)
    await expect(page.get_by_test_id("mqtt-password")).to_have_count(0)


async def test_a_cars_signals_page_shows_its_twin(world: World, open_page: OpenPage) -> None:
    page = (await open_page("desktop")).page
    await log_in(page, world.operator)
    vin = world.car_a.vin
    await page.get_by_role("table", name="Cars", exact=True).get_by_role("link", name=vin).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(vin, timeout=WAIT)
    await page.get_by_role("link", name="Signals", exact=True).click()
    await expect(page.get_by_role("heading", level=1, name="Signals")).to_be_visible(timeout=WAIT)

    path = "Vehicle.Powertrain.TractionBattery.NetCapacity"
    state = await world.get(world.operator, f"/api/v1/vehicles/{vin}/state")
    value = state["signals"][path]["value"]
    assert value in world.sent(path)  # a value the simulated car sent
    await page.get_by_label("Search signals").fill("NetCapacity")
    name = page.get_by_text("NetCapacity", exact=True)
    await expect(name).to_be_visible(timeout=WAIT)
    leaf = page.locator("li", has=name).last
    await expect(leaf).to_contain_text("kWh")
    assert shown_as(value, (await leaf.inner_text()).replace("NetCapacity", "")), await leaf.inner_text()
    await expect(page.get_by_text("Vehicle.Speed")).to_have_count(0)  # the search narrowed the tree
    assert await controls_without_a_name(page) == []


async def test_telemetry_errors_page_lists_what_the_platform_refused(
    world: World, open_page: OpenPage
) -> None:
    vin = make_vin(random.Random("web-console-bad-car"))
    _, password = await world.platform.registry.register(vin, "smartev S1", world.owner_a.email)
    host, port = world.platform.address.host, world.platform.address.port
    async with TestCar(host, port, vin, password) as car:
        ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        await car.send(1, [{"ts": ts, "signals": {"Vehicle.Speed": 12.5, "Vehicle.NoSuchThing": 1}}])
        await eventually(lambda: car.errors and car.acks, timeout=WAIT / 1000)

    page = (await open_page("desktop")).page
    await log_in(page, world.operator)
    await page.goto(f"/app/#/cars/{vin}/errors")
    await expect(page.get_by_role("heading", level=1, name="Telemetry errors")).to_be_visible(timeout=WAIT)
    row = page.locator("tbody tr", has_text="Vehicle.NoSuchThing")
    await expect(row).to_have_count(1, timeout=WAIT)
    reason = car.errors[0]["errors"][0]["reason"]
    await expect(row).to_contain_text(reason)

    # the simulated car sends only what the catalog knows: its page says so in words
    await page.goto(f"/app/#/cars/{world.car_a.vin}/errors")
    await expect(page.get_by_text(re.compile("No telemetry errors")).first).to_be_visible(timeout=WAIT)


async def test_ingest_health_shows_the_database_ok(world: World, open_page: OpenPage) -> None:
    page = (await open_page("desktop")).page
    await log_in(page, world.operator)
    await page.get_by_role("link", name="Ingest health").click()
    await expect(page.get_by_role("heading", level=1, name="Ingest health")).to_be_visible(timeout=WAIT)
    r = await world.http.get("/api/v1/health")
    assert r.json()["database"]["ok"] is True
    database = page.locator(".tile", has=page.get_by_text("Database", exact=True))
    await expect(database).to_contain_text(re.compile(r"\bOK"), timeout=WAIT)
    await expect(database).to_contain_text("sqlite")
    broker = page.locator(".tile", has=page.get_by_text("Broker", exact=True))
    await expect(broker).to_contain_text(re.compile(r"\bOK"))


async def test_charging_page_follows_a_station_live_and_starts_charging(
    world: World, open_page: OpenPage
) -> None:
    page = (await open_page("desktop")).page
    await log_in(page, world.operator)
    await page.get_by_role("link", name="Charging", exact=True).click()
    await expect(page.get_by_role("heading", level=1, name="Charging")).to_be_visible(timeout=WAIT)

    row = page.locator("tr", has=page.get_by_role("rowheader", name=STATION_ID, exact=True))
    await expect(row).to_contain_text("Online", timeout=WAIT)
    await expect(row).to_contain_text(re.compile(r"EVSE 1\D*Available"))
    await expect(row).to_contain_text(re.compile(r"EVSE 2\D*Available"))
    assert await controls_without_a_name(page) == []
    # live through the station stream, not the page's 10 s polling fallback
    await expect(page.get_by_text("Live: station and connector changes show as they happen.")).to_be_visible(
        timeout=WAIT
    )

    # a driver plugs in at the station: the page shows it without a reload
    await world.station.plug_in(1, soc=30.0, capacity_kwh=60.0, leave_when_full=False)
    try:
        await expect(row).to_contain_text(re.compile(r"EVSE 1\D*Preparing"), timeout=WAIT)

        # and the operator starts the charge for the driver's card
        form = page.get_by_role("form", name=f"Start charging on {STATION_ID}")
        await form.get_by_label("Car VIN or id tag").fill(CARD)
        await form.get_by_label("EVSE").select_option(label="EVSE 1")
        await form.get_by_role("button", name=f"Start charging on {STATION_ID}").click()
        await expect(row).to_contain_text(re.compile(r"accepted", re.I), timeout=WAIT)
        await expect(row).to_contain_text(re.compile(r"EVSE 1\D*Charging"), timeout=WAIT)
        sessions = page.get_by_role("table", name=re.compile("Charging sessions"))
        await expect(sessions).to_contain_text(CARD, timeout=WAIT)
        assert any(s.id_tag == CARD for s in world.station.ledger.values())

        session = sessions.locator("tr", has_text=CARD)
        await expect(session).to_contain_text("Active")

        await row.get_by_role("button", name=f"Stop charging on {STATION_ID}").click()
        await expect(row).not_to_contain_text(re.compile(r"EVSE 1\D*Charging"), timeout=WAIT)
        await expect(session).not_to_contain_text("Active", timeout=WAIT)
    finally:
        world.station.unplug(1)
