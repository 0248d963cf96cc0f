"""Smart charging in a real browser: the operator's site page (limits, stations, the plan and its sessions), the
owner's charging-plan card on their car (goal: ready by, target charge) and their home charging page.

The module's world gets a site "depot" with the simulated station in it; owner A's car charges at EVSE 1 (its VIN
is its id tag, so the session is the car's) and owner A's card at EVSE 2.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from .conftest import CARD, STATION_ID, OpenPage, World
from .helpers import WAIT, Account, controls_without_a_name, horizontal_overflow, log_in, screenshot, shown_as
from conftest import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

SITE = "depot"
WALLBOX = "WEB-WALLBOX-A"  # owner A's own charger (registered, never connected)
BERLIN = ZoneInfo("Europe/Berlin")  # the browser contexts' time zone


@dataclass(frozen=True, slots=True)
class Depot:
    car_session: int  # owner A's car at EVSE 1
    card_session: int  # owner A's card at EVSE 2


async def call(world: World, account: Account, method: str, path: str, body: Any = None) -> Any:
    r = await world.http.request(
        method, path, json=body, headers={"Authorization": f"Bearer {await world.token(account)}"}
    )
    assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
    return r.json() if r.content else None


async def site_plan(world: World) -> dict[str, Any]:
    plan: dict[str, Any] = await world.get(world.operator, f"/api/v1/sites/{SITE}/plan")
    return plan


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def depot(world: World) -> AsyncIterator[Depot]:
    p, op, alice, vin = world.platform, world.operator, world.owner_a, world.car_a.vin
    await p.charging.add_tag(vin, "vin", owner_email=alice.email, vin=vin)
    await p.stations.register(WALLBOX, owner_email=alice.email, password="web-test-wallbox-password")
    await call(world, op, "POST", "/api/v1/tariffs", {
        "name": "night",
        "tariff": {"currency": "EUR", "per_kwh": "0.40", "periods": [{"start": "00:00", "end": "06:00", "per_kwh": "0.12"}]},
    })  # fmt: skip
    await call(world, op, "POST", "/api/v1/sites", {
        "id": SITE,
        "name": "Depot",
        "limits": {"id": "grid", "max_a": 32, "phase_max_a": [32, 32, 25], "circuits": [{"id": "row-1", "max_a": 32}]},
        "objective": "max_energy",
        "tariff": "night",
        "timezone": "Europe/Berlin",
    })  # fmt: skip
    await call(
        world, op, "PUT", f"/api/v1/sites/{SITE}/stations/{STATION_ID}", {"circuit": "row-1", "max_a": 32}
    )
    car = await world.station.plug_in(1, vin, soc=30.0, capacity_kwh=60.0, leave_when_full=False)
    card = await world.station.plug_in(2, CARD, soc=50.0, capacity_kwh=60.0, leave_when_full=False)
    assert car is not None and card is not None

    async def both_planned() -> Depot | None:
        await p.smart_charging.replan(SITE)
        plan = await site_plan(world)
        by_evse = {s["evse_id"]: s for s in plan["sessions"]}
        if (
            set(by_evse) == {1, 2}
            and by_evse[1]["vin"] == vin
            and all(s["sent_a"] is not None for s in by_evse.values())
        ):
            return Depot(by_evse[1]["session_id"], by_evse[2]["session_id"])
        return None

    result: Depot = await eventually(both_planned, timeout=20, interval=0.3)
    try:
        yield result
    finally:
        world.station.unplug(1)
        world.station.unplug(2)


async def test_the_operator_sees_the_sites_plan_stations_and_sessions(
    world: World, depot: Depot, open_page: OpenPage
) -> None:
    page = (await open_page("desktop")).page
    await log_in(page, world.operator)
    await page.get_by_role("link", name="Sites", exact=True).click()
    await expect(page.get_by_role("heading", level=1, name="Sites")).to_be_visible(timeout=WAIT)
    row = page.get_by_test_id("sites-table").locator("tr", has_text="Depot")
    await expect(row).to_contain_text("1 (1 online)", timeout=WAIT)
    await row.get_by_role("link", name=SITE).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Depot", timeout=WAIT)

    # the limits, readable: connection with its phase caps, the circuit under it with the station
    tree = page.get_by_test_id("limit-tree")
    await expect(tree).to_contain_text("grid (connection) · 32 A per phase · phase caps A 32 / B 32 / C 25 A")
    await expect(tree).to_contain_text(re.compile(rf"row-1 · 32 A per phase\s*· stations: {STATION_ID}"))

    wiring = page.get_by_role("table", name="Stations of the site")
    station = wiring.locator("tr", has=page.get_by_role("rowheader", name=STATION_ID))
    await expect(station).to_contain_text("row-1")
    await expect(station).to_contain_text("Online")
    await expect(station).to_contain_text("Yes")

    # the sessions with the currents the plan gives them, as the API says
    sessions = page.get_by_role("table", name="Planned sessions")
    plan = await site_plan(world)
    for s in plan["sessions"]:
        tr = page.get_by_test_id(f"plan-session-{s['session_id']}")
        await expect(tr).to_contain_text(f"{STATION_ID} · EVSE {s['evse_id']}", timeout=WAIT)
        now = tr.locator('td[data-label="Now"]')
        await expect(now).to_have_text(f"{s['current_a']} A", timeout=WAIT)
        await expect(tr.locator('td[data-label="Sent"]')).to_have_text(re.compile(r"^\d+ A$"))
    await expect(sessions.get_by_role("link", name=world.car_a.vin)).to_be_visible()
    await expect(sessions.locator('td[data-label="Control"]')).to_have_text(
        [re.compile("Planned|Paused")] * 2
    )

    chart = page.get_by_test_id("site-plan-chart")
    await expect(chart).to_have_attribute("data-points", str(len(plan["prices"])))
    assert len(plan["prices"]) > 1
    await expect(chart.locator("canvas")).to_have_count(1)
    await expect(chart).to_contain_text("Load phase A")
    await expect(chart).to_contain_text("Price per kWh")
    assert await controls_without_a_name(page) == []
    await screenshot(page, "console-site-desktop.png")

    # the connection's limit is edited on the page and stored
    await page.get_by_label("Connection grid: max (A)").fill("40")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_text("Saved; the site is re-planned.")).to_be_visible(timeout=WAIT)
    await expect(tree).to_contain_text("grid (connection) · 40 A per phase")
    site = await world.get(world.operator, f"/api/v1/sites/{SITE}")
    assert site["limits"]["max_a"] == 40 and site["limits"]["phase_max_a"] == [32, 32, 25], site["limits"]
    assert site["limits"]["circuits"][0]["max_a"] == 32 and site["tariff"] == "night"


async def open_car(page: Page, world: World) -> None:
    await log_in(page, world.owner_a)
    await page.goto(f"/app/#/cars/{world.car_a.vin}")
    await expect(page.get_by_test_id("charging-plan")).to_be_visible(timeout=WAIT)


def local_input(at: datetime) -> str:
    return f"{at.astimezone(BERLIN):%Y-%m-%dT%H:%M}"


async def test_the_owner_sets_ready_by_and_target_and_the_plan_follows(
    world: World, depot: Depot, open_page: OpenPage
) -> None:
    page = (await open_page("phone")).page
    await open_car(page, world)
    card = page.get_by_test_id("charging-plan")
    await expect(card).to_contain_text(f"At {STATION_ID} · EVSE 1 · site {SITE}")
    await expect(page.get_by_test_id("plan-now")).to_have_text(re.compile(r"^(Charging at \d+ A|Paused)$"))
    await expect(page.get_by_test_id("plan-chart")).not_to_have_attribute("data-points", "0")
    await expect(page.get_by_test_id("plan-chart").locator("canvas")).to_have_count(1)

    before = (await world.get(world.owner_a, f"/api/v1/charging-sessions/{depot.car_session}/plan"))[
        "session"
    ]
    assert before["soc"] is not None and before["soc"] < 70, before  # the car's own SoC, from its telemetry
    car_limit = before["target_soc"]  # the site says 100 %, the car's own charge limit caps it

    # a goal above the car's charge limit: stored as asked, planned to the car's limit, and the card says so
    leave = (datetime.now(BERLIN) + timedelta(hours=5)).replace(second=0, microsecond=0)
    await page.get_by_label("Ready by").fill(local_input(leave))
    await page.get_by_label("Target charge (%)").fill("95")
    await page.get_by_role("button", name="Save goal").click()
    await expect(card.get_by_text("Saved: the plan follows your goal.")).to_be_visible(timeout=WAIT)
    await expect(page.get_by_test_id("plan-capped")).to_contain_text(f"charge limit is {car_limit:.0f} %")
    mine = await world.get(world.owner_a, f"/api/v1/charging-sessions/{depot.car_session}/plan")
    assert mine["goal"]["target_soc"] == 95 and mine["session"]["target_soc"] == car_limit
    # with the browser's offset: the same instant as the local time typed in
    assert datetime.fromisoformat(mine["goal"]["departure"]) == leave, mine["goal"]
    assert datetime.fromisoformat(mine["session"]["departure"]) == leave

    # a lower target: the plan wants less, and the card shows what the platform planned
    target = round(before["soc"]) + 5
    await page.get_by_label("Target charge (%)").fill(str(target))
    await page.get_by_role("button", name="Save goal").click()
    await expect(page.get_by_test_id("plan-capped")).to_be_hidden(timeout=WAIT)

    async def card_shows_the_plan() -> bool:
        s = (await world.get(world.owner_a, f"/api/v1/charging-sessions/{depot.car_session}/plan"))["session"]
        wanted = await page.get_by_test_id("plan-wanted").inner_text()
        planned = await page.get_by_test_id("plan-planned").inner_text()
        return (
            s["target_soc"] == target
            and s["energy_wanted_kwh"] < before["energy_wanted_kwh"]
            and shown_as(s["energy_wanted_kwh"], wanted)
            and shown_as(s["energy_planned_kwh"], planned)
        )

    await eventually(card_shows_the_plan, timeout=WAIT / 1000, interval=0.3)
    goal = (await world.get(world.owner_a, f"/api/v1/charging-sessions/{depot.car_session}/plan"))["goal"]
    assert goal["target_soc"] == target and datetime.fromisoformat(goal["departure"]) == leave
    assert await horizontal_overflow(page) == 0, "the car page with its plan is wider than a 390 px phone"
    await screenshot(page, "owner-charging-plan-phone.png")


async def test_a_departure_in_the_past_is_refused_next_to_the_field(
    world: World, depot: Depot, open_page: OpenPage
) -> None:
    tab = await open_page("desktop")
    tab.watch.expect_http_error(f"/api/v1/charging-sessions/{depot.car_session}/goal", 422)
    page = tab.page
    await open_car(page, world)
    before = await world.get(world.owner_a, f"/api/v1/charging-sessions/{depot.car_session}/plan")

    ready_by = page.get_by_label("Ready by")
    await ready_by.fill(local_input(datetime.now(BERLIN) - timedelta(hours=2)))
    await page.get_by_role("button", name="Save goal").click()
    error = page.locator("#plan-departure-error")
    await expect(error).to_contain_text("the departure must be in the future", timeout=WAIT)
    await expect(ready_by).to_have_attribute("aria-invalid", "true")
    await expect(ready_by).to_be_focused()
    await expect(page.locator("#plan-target-error")).to_be_hidden()
    after = await world.get(world.owner_a, f"/api/v1/charging-sessions/{depot.car_session}/plan")
    assert after["goal"] == before["goal"]  # nothing stored


async def test_the_owner_creates_a_home_site_with_their_wallbox(world: World, open_page: OpenPage) -> None:
    page = (await open_page("phone")).page
    await log_in(page, world.owner_a)
    await page.get_by_role("link", name="Home charging", exact=True).click()
    await expect(page.get_by_role("heading", level=1, name="Home charging")).to_be_visible(timeout=WAIT)
    await expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")  # the browser's zone

    await page.get_by_label("Name", exact=True).fill("Alice's garage")
    await page.get_by_label("House connection limit (A per phase)").fill("25")
    await page.get_by_label("Ready by").fill("06:30")
    await page.get_by_label("Target charge (%)").fill("80")
    await page.get_by_label("Charge", exact=True).select_option("cheapest")
    await page.get_by_label("Tariff").select_option("night")
    await page.get_by_label("Your charger").select_option(WALLBOX)
    await page.get_by_label("Charger maximum current (A)").fill("16")
    await page.get_by_role("button", name="Create home site").click()
    await expect(page.get_by_text(f"Home site “Alice's garage” created with {WALLBOX}.")).to_be_visible(
        timeout=WAIT
    )

    (site,) = await world.get(world.owner_a, "/api/v1/sites")
    assert site["name"] == "Alice's garage" and site["owner"] == world.owner_a.email
    assert (site["limits"]["max_a"], site["ready_by"], site["target_soc"]) == (25, "06:30", 80)
    assert (site["objective"], site["tariff"], site["timezone"]) == ("cheapest", "night", "Europe/Berlin")
    assert [(s["station_id"], s["max_a"], s["phases"]) for s in site["stations"]] == [(WALLBOX, 16, "ABC")]

    card = page.get_by_test_id(f"home-site-{site['id']}")
    await expect(card).to_contain_text("25 A per phase")
    await expect(card.get_by_test_id(f"home-charger-{WALLBOX}")).to_contain_text("offline")
    await expect(card).to_contain_text("No car is charging here now.", timeout=WAIT)
    await expect(page.get_by_test_id(f"site-chart-{site['id']}")).not_to_have_attribute("data-points", "0")
    # the other owner sees none of it
    assert await world.get(world.owner_b, "/api/v1/sites") == []
    assert await controls_without_a_name(page) == []
    assert await horizontal_overflow(page) == 0, "the home charging page is wider than a 390 px phone"
    await screenshot(page, "owner-home-charging-phone.png")


async def test_the_site_page_fits_a_phone(world: World, depot: Depot, open_page: OpenPage) -> None:
    page = (await open_page("phone")).page
    await log_in(page, world.operator)
    await page.goto(f"/app/#/sites/{SITE}")
    sessions = page.get_by_role("table", name="Planned sessions")
    await expect(sessions.get_by_role("link", name=world.car_a.vin)).to_be_visible(timeout=WAIT)
    await expect(page.get_by_test_id("site-plan-chart").locator("canvas")).to_have_count(1)
    assert await horizontal_overflow(page) == 0, "the site page is wider than a 390 px phone"
    await screenshot(page, "console-site-phone.png")
