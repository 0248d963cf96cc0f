"""Keyboard and screen-reader basics: every control has a name, and a keyboard alone reaches and works them."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from .conftest import OpenPage, World
from .helpers import WAIT, controls_without_a_name, log_in
from .test_owner_app import COMMANDS

pytestmark = pytest.mark.asyncio(loop_scope="module")

_FOCUSED = re.compile(r'^- (\w+)(?: "((?:[^"\\]|\\.)*)")?')


async def focused(page: Page) -> tuple[str, str]:
    """Role and accessible name of the element that has the keyboard focus."""
    tree = await page.locator("*:focus").aria_snapshot()
    m = _FOCUSED.match(tree.strip())
    assert m, tree
    return m.group(1), m.group(2) or ""


async def tab_until(page: Page, role: str, name: str, limit: int = 150) -> list[tuple[str, str]]:
    """Press Tab until the control (role, name) has the focus; the controls passed on the way."""
    passed: list[tuple[str, str]] = []
    for _ in range(limit):
        await page.keyboard.press("Tab")
        now = await focused(page)
        passed.append(now)
        if now == (role, name):
            return passed
    raise AssertionError(f"Tab never reached {role} {name!r}; it went through {passed}")


async def test_login_page_names_its_controls_and_works_by_keyboard(world: World, open_page: OpenPage) -> None:
    page = (await open_page("desktop")).page
    await page.goto("/app/")
    await expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=WAIT)
    assert await controls_without_a_name(page) == []

    # the email field has the focus at once; type, Tab, type, Enter
    assert await focused(page) == ("textbox", "Email")
    await page.keyboard.type(world.owner_a.email)
    await page.keyboard.press("Tab")
    assert await focused(page) == ("textbox", "Password")
    await page.keyboard.type(world.owner_a.password)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1, name="My cars")).to_be_visible(timeout=WAIT)


async def test_car_page_names_its_controls_and_tab_reaches_every_command(
    world: World, open_page: OpenPage
) -> None:
    page = (await open_page("desktop")).page
    await log_in(page, world.owner_a)
    await page.goto(f"/app/#/cars/{world.car_a.vin}")
    await expect(page.get_by_role("meter", name="State of charge")).to_have_attribute(
        "aria-valuenow", re.compile(r"\d"), timeout=WAIT
    )
    await expect(page.get_by_test_id("car-map")).to_be_visible()
    assert await controls_without_a_name(page) == []

    await page.locator("main").focus()  # where the app puts the focus after each navigation
    passed = await tab_until(page, "button", "Set charge limit")
    reached = {name for role, name in passed if role == "button"}
    assert set(COMMANDS) <= reached, f"not reached by Tab: {set(COMMANDS) - reached}"
    names = {name for _, name in passed}
    assert {"Target temperature (°C)", "Charge limit (%)"} <= names, passed

    # and a command goes out from the keyboard alone
    await page.locator("main").focus()
    await tab_until(page, "button", "Honk & flash")
    await page.keyboard.press("Enter")
    status = page.get_by_test_id("command-status")
    await expect(status).to_have_text(re.compile(r"Honk & flash: succeeded"), timeout=WAIT)
    assert world.sim_a.ledger.commands[-1].name == "honk_flash"
