"""The owner app in a real browser: my cars, a car's live state and commands, history, privacy, API tokens."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from .conftest import STATION_ID, OpenPage, World
from .helpers import WAIT, Account, controls_without_a_name, horizontal_overflow, log_in, screenshot, shown_as
from conftest import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
ODOMETER = "Vehicle.TraveledDistance"
LOCKED = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"
IS_CHARGING = "Vehicle.Powertrain.TractionBattery.Charging.IsCharging"
TYRE = "Vehicle.Chassis.Axle.{}.Wheel.{}.Tire.Pressure"
# data-testid on the car page: the VSS signal it shows, the factor to the page's unit, and that unit
SHOWN = (
    ("range", "Vehicle.Powertrain.Range", 1 / 1000, "km"),
    ("odometer", ODOMETER, 1 / 1000, "km"),
    ("speed", "Vehicle.Speed", 1, "km/h"),
    ("cabin-temp", "Vehicle.Cabin.HVAC.AmbientAirTemperature", 1, "°C"),
    ("outside-temp", "Vehicle.Exterior.AirTemperature", 1, "°C"),
    ("tyre-front-left", TYRE.format("Row1", "Left"), 1, "kPa"),
    ("tyre-front-right", TYRE.format("Row1", "Right"), 1, "kPa"),
    ("tyre-rear-left", TYRE.format("Row2", "Left"), 1, "kPa"),
    ("tyre-rear-right", TYRE.format("Row2", "Right"), 1, "kPa"),
)
COMMANDS = (
    "Lock",
    "Unlock",
    "Honk & flash",
    "Climate on",
    "Climate off",
    "Start charging",
    "Stop charging",
    "Set charge limit",
)


async def open_car(page: Page, world: World) -> None:
    """From My cars, open owner A's car by its link, as a person would."""
    car = world.car_a
    await page.get_by_role("link", name=re.compile(car.vin)).click()
    heading = page.get_by_role("heading", level=1)
    await expect(heading).to_contain_text(car.vin, timeout=WAIT)
    await expect(heading).to_contain_text(car.model)


async def run_command(page: Page, button: str, press: str | None = None) -> None:
    """Send a command with its button (clicked, tapped, or a key pressed on it) and wait for its outcome."""
    control = page.get_by_role("button", name=button, exact=True)
    if press == "tap":
        await control.tap()
    elif press:
        await control.press(press)
    else:
        await control.click()
    status = page.get_by_test_id("command-status")
    await expect(status).to_have_text(re.compile(rf"{re.escape(button)}: succeeded"), timeout=WAIT)
    await expect(status).to_have_class(re.compile(r"\bstatus-succeeded\b"))
    await expect(status).to_have_attribute("role", "status")


async def test_my_cars_lists_my_car_and_its_page_follows_the_simulated_car_live(
    world: World, open_page: OpenPage
) -> None:
    page = (await open_page("desktop")).page
    await log_in(page, world.owner_a)
    await expect(page.get_by_role("link", name=re.compile(world.car_a.vin))).to_contain_text(
        world.car_a.model
    )
    await expect(page.get_by_role("link", name=re.compile(world.car_b.vin))).to_have_count(0)

    await open_car(page, world)
    await expect(page.get_by_test_id("connectivity")).to_contain_text("Online", timeout=WAIT)
    meter = page.get_by_role("meter", name="State of charge")
    await expect(meter).to_have_attribute("aria-valuemin", "0")
    await expect(meter).to_have_attribute("aria-valuemax", "100")

    async def soc_shown_was_sent() -> bool:
        # the car charges: what the gauge shows must be a SoC the simulated car reported
        now = await meter.get_attribute("aria-valuenow")
        return now is not None and any(shown_as(v, now) for v in world.sent(SOC))

    await eventually(soc_shown_was_sent, timeout=WAIT / 1000)
    soc_text = await page.get_by_test_id("soc").inner_text()
    assert any(shown_as(v, soc_text) for v in world.sent(SOC)), soc_text

    # every value on the page is one the simulated car sent, in the page's units
    for testid, path, scale, unit in SHOWN:

        async def shown_was_sent(testid: str = testid, path: str = path, scale: float = scale) -> bool:
            text = await page.get_by_test_id(testid).inner_text()
            return any(shown_as(v * scale, text) for v in world.sent(path))

        await eventually(shown_was_sent, timeout=WAIT / 1000)
        await expect(page.get_by_test_id(testid)).to_contain_text(unit)

    async def charging_as_sent() -> bool:
        text = await page.get_by_test_id("charging").inner_text()
        charging = world.sent(IS_CHARGING)[-1]
        return bool(re.match(r"\W*Charging\b", text)) == charging

    await eventually(charging_as_sent, timeout=WAIT / 1000)

    # the car keeps reporting (its full state every 1.5 s, its charging SoC): the page follows on its own
    last_update = page.get_by_test_id("last-update")
    await expect(last_update).not_to_have_text("", timeout=WAIT)
    first = await last_update.inner_text()
    await expect(last_update).not_to_have_text(first, timeout=WAIT)

    await run_command(page, "Unlock")
    await expect(page.get_by_test_id("lock")).to_have_text("Unlocked", timeout=WAIT)
    await run_command(page, "Lock")
    await expect(page.get_by_test_id("lock")).to_have_text("Locked", timeout=WAIT)
    # the simulated car carried both out, and the platform's twin agrees with the page
    assert [c.name for c in world.sim_a.ledger.commands][-2:] == ["unlock", "lock"]
    state = await world.get(world.owner_a, f"/api/v1/vehicles/{world.car_a.vin}/state")
    assert state["signals"][LOCKED]["value"] is True
    await expect(page.get_by_test_id("car-map")).to_be_visible()
    await screenshot(page, "owner-car-desktop.png")


async def test_car_page_fits_a_phone_and_commands_work_by_touch(world: World, open_page: OpenPage) -> None:
    page = (await open_page("phone")).page
    await log_in(page, world.owner_a)
    await open_car(page, world)
    await expect(page.get_by_test_id("connectivity")).to_contain_text("Online", timeout=WAIT)
    await expect(page.get_by_role("meter", name="State of charge")).to_have_attribute(
        "aria-valuenow", re.compile(r"\d")
    )
    await expect(page.get_by_test_id("car-map")).to_be_visible()
    assert await horizontal_overflow(page) == 0, "the car page is wider than a 390 px phone"
    for name in COMMANDS:
        box = await page.get_by_role("button", name=name, exact=True).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (name, box)
    await run_command(page, "Climate on", press="tap")
    await screenshot(page, "owner-car-phone.png")


async def test_history_plots_what_the_car_sent(world: World, open_page: OpenPage) -> None:
    page = (await open_page("desktop")).page
    await log_in(page, world.owner_a)
    await open_car(page, world)
    await page.get_by_role("link", name="History").click()
    await expect(page.get_by_role("heading", level=1, name="History")).to_be_visible(timeout=WAIT)

    signal = page.get_by_label("Signal", exact=True)
    options = await signal.locator("option").evaluate_all(
        "(os) => os.map((o) => ({ value: o.value, label: o.textContent }))"
    )
    soc = next((o for o in options if o["value"] == SOC), None)
    assert soc is not None, f"no SoC in the preset signals: {options}"
    await signal.select_option(value=SOC)
    assert await page.get_by_label("Period", exact=True).locator("option").count() >= 5
    await page.get_by_role("button", name="Show", exact=True).click()

    plot = page.get_by_test_id("history-plot")
    await expect(plot).to_have_attribute("aria-label", f"History of {SOC}", timeout=WAIT)
    await expect(plot).to_have_attribute("role", "img")
    await expect(plot).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"), timeout=WAIT)
    assert await controls_without_a_name(page) == []
    points = int(await plot.get_attribute("data-points") or 0)
    assert points <= len(world.sent(SOC)), "the plot has more points than the car ever sent"

    # any VSS path, typed in
    await page.get_by_label("Other signal (VSS path)").fill("Vehicle.Exterior.AirTemperature")
    await page.get_by_role("button", name="Show", exact=True).click()
    await expect(plot).to_have_attribute(
        "aria-label", "History of Vehicle.Exterior.AirTemperature", timeout=WAIT
    )
    await expect(plot).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"), timeout=WAIT)

    # a signal this car never sends
    await page.get_by_label("Other signal (VSS path)").fill("Vehicle.Body.Trunk.Rear.IsOpen")
    await page.get_by_role("button", name="Show", exact=True).click()
    await expect(page.get_by_text("No data in this period")).to_be_visible(timeout=WAIT)


async def test_another_owner_sees_neither_the_car_nor_its_page(world: World, open_page: OpenPage) -> None:
    tab = await open_page("desktop")
    page = tab.page
    await log_in(page, world.owner_b)
    await expect(page.get_by_role("link", name=re.compile(world.car_b.vin))).to_be_visible(timeout=WAIT)
    await expect(page.get_by_role("link", name=re.compile(world.car_a.vin))).to_have_count(0)

    tab.watch.expect_http_error(f"/api/v1/vehicles/{world.car_a.vin}")  # the refusals the page asks for
    await page.goto(f"/app/#/cars/{world.car_a.vin}")
    await expect(page.get_by_role("alert")).to_be_visible(timeout=WAIT)
    await expect(page.get_by_role("meter", name="State of charge")).to_have_count(0)
    await expect(page.get_by_role("button", name="Unlock", exact=True)).to_have_count(0)


async def test_api_token_works_for_scripts_until_revoked(world: World, open_page: OpenPage) -> None:
    page = (await open_page("desktop")).page
    page.on("dialog", lambda dialog: dialog.accept())  # "Revoke …?" confirmations, should the page ask
    await log_in(page, world.owner_a)
    await page.get_by_role("link", name="Settings").click()
    await expect(page.get_by_role("heading", level=1, name="Settings")).to_be_visible(timeout=WAIT)

    await page.get_by_label("Token name").fill("laptop script")
    await page.get_by_role("button", name="Create token").click()
    shown = page.get_by_test_id("new-token")
    await expect(shown).not_to_be_empty(timeout=WAIT)
    assert await controls_without_a_name(page) == []
    token = (await shown.inner_text()).strip()
    bearer = {"Authorization": f"Bearer {token}"}

    r = await world.http.get("/api/v1/vehicles", headers=bearer)
    assert r.status_code == 200, r.text
    assert [car["vin"] for car in r.json()] == [world.car_a.vin]

    # shown once: back on the page later, the token itself is gone, its name stays listed
    await page.reload()
    revoke = page.get_by_role("button", name="Revoke laptop script")
    await expect(revoke).to_be_visible(timeout=WAIT)
    await expect(page.get_by_test_id("new-token")).to_have_count(0)
    assert token not in await page.locator("main").inner_text()

    revoke = page.get_by_role("button", name="Revoke laptop script")
    await revoke.click()
    await expect(revoke).to_have_count(0, timeout=WAIT)
    r = await world.http.get("/api/v1/vehicles", headers=bearer)
    assert r.status_code == 401, r.text


async def test_charging_sessions_show_the_cars_session_at_a_station(
    world: World, open_page: OpenPage
) -> None:
    vin = world.car_a.vin
    await world.platform.charging.add_tag(vin, "vin", vin=vin)  # autocharge: the car identifies itself
    session = await world.station.plug_in(2, vin, vin=vin, soc=40.0, capacity_kwh=60.0, leave_when_full=False)
    assert session is not None, "the station did not start charging the car"
    try:
        tab = await open_page("desktop")
        page = tab.page
        await log_in(page, world.owner_a)
        await open_car(page, world)
        await page.get_by_role("link", name="Charging sessions").click()
        await expect(page.get_by_role("heading", level=1, name="Charging sessions")).to_be_visible(
            timeout=WAIT
        )
        row = page.locator("tbody tr", has_text=STATION_ID)
        await expect(row).to_have_count(1, timeout=WAIT)
        await expect(row).to_contain_text(re.compile("active|charging", re.I))
    finally:
        world.station.unplug(2)


async def test_changing_the_password_sends_me_to_log_in_again(world: World, open_page: OpenPage) -> None:
    carol = Account("carol@example.com", "carol password 1", "owner")
    await world.platform.accounts.create_user(carol.email, carol.password, carol.role)
    page = (await open_page("phone")).page
    await log_in(page, carol)
    await page.get_by_role("link", name="Settings").click()
    await page.get_by_label("Current password").fill(carol.password)
    await page.get_by_label("New password").fill("carol password 2")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_text(re.compile("Password changed"))).to_be_visible(timeout=WAIT)
    await expect(page.get_by_role("button", name="Log in", exact=True)).to_be_visible(timeout=WAIT)

    old = await world.http.post(
        "/api/v1/auth/token", data={"username": carol.email, "password": carol.password}
    )
    assert old.status_code == 401
    await log_in(page, Account(carol.email, "carol password 2", "owner"))
