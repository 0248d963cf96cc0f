"""The app as an installable web app: manifest, service worker, everything loaded from the platform itself,
and maps that keep working when the tile server cannot be reached.

This module's platform is configured with a tile server on a local port that refuses connections."""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterator
from urllib.parse import urljoin

import pytest
from playwright.async_api import expect

from .conftest import OpenPage, World
from .helpers import WAIT, log_in, origin
from conftest import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

MANIFEST = "/app/manifest.webmanifest"


@pytest.fixture(scope="module")
def tile_url() -> Iterator[str]:
    """A tile server that is down: the port is bound but never listens, so every connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/tiles/{{z}}/{{x}}/{{y}}.png"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_manifest_is_served_as_a_manifest_and_its_icons_load(world: World) -> None:
    r = await world.http.get(MANIFEST)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/manifest+json"), r.headers["content-type"]
    manifest = r.json()
    assert manifest["name"] and manifest["short_name"]
    assert manifest["display"] in ("standalone", "fullscreen", "minimal-ui")
    start = urljoin(world.base_url + MANIFEST, manifest["start_url"])
    assert start.startswith(world.base_url + "/app/"), start
    assert (await world.http.get(start.split("#")[0])).status_code == 200

    sizes: set[str] = set()
    for icon in manifest["icons"]:
        got = await world.http.get(urljoin(world.base_url + MANIFEST, icon["src"]))
        assert got.status_code == 200, icon
        assert got.headers["content-type"] == icon.get("type", "image/png")
        width, height = png_size(got.content)
        assert f"{width}x{height}" in icon["sizes"].split(), (icon, width, height)
        if icon.get("purpose", "any") != "maskable":
            sizes.update(icon["sizes"].split())
    assert {"192x192", "512x512"} <= sizes, sizes


async def test_service_worker_controls_the_page_and_the_shell_opens_offline(
    world: World, open_page: OpenPage
) -> None:
    tab = await open_page("phone")
    page = tab.page
    await page.goto("/app/")
    await expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=WAIT)
    manifest_link = await page.locator('link[rel="manifest"]').get_attribute("href")
    assert urljoin(page.url, manifest_link or "") == world.base_url + MANIFEST

    active = await page.evaluate("navigator.serviceWorker.ready.then((r) => r.active.scriptURL)")
    assert active == f"{world.base_url}/app/sw.js"
    await page.reload()
    await expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=WAIT)
    assert (
        await page.evaluate(
            "navigator.serviceWorker.controller && navigator.serviceWorker.controller.scriptURL"
        )
        == active
    )

    # no network at all: the cached shell still opens
    tab.watch.offline = True
    await tab.context.set_offline(True)
    try:
        await page.reload()
        await expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=WAIT)
        await expect(page.get_by_label("Email", exact=True)).to_be_editable()
    finally:
        await tab.context.set_offline(False)
        tab.watch.offline = False


async def test_every_script_and_stylesheet_comes_from_the_platform(world: World, open_page: OpenPage) -> None:
    tab = await open_page("desktop")
    page = tab.page
    await log_in(page, world.operator)
    await expect(page.get_by_test_id("fleet-map")).to_be_visible(timeout=WAIT)
    await page.goto(f"/app/#/cars/{world.car_a.vin}/history")
    await page.get_by_role("button", name="Show", exact=True).click()
    await expect(page.get_by_test_id("history-plot")).to_have_attribute("data-points", re.compile(r"\d"))
    await page.goto("/app/#/charging")
    await expect(page.get_by_role("heading", level=1, name="Charging")).to_be_visible(timeout=WAIT)

    code = [r for r in tab.watch.requests if r.resource_type in ("script", "stylesheet", "font")]
    loaded = {r.url.rsplit("/", 1)[-1] for r in code}
    assert {"app.js", "owner.js", "console.js", "leaflet.js", "uPlot.iife.min.js", "style.css"} <= loaded, (
        loaded
    )
    assert [r.url for r in code if origin(r.url) != world.base_url] == []
    in_dom = await page.evaluate(
        """() => [...document.querySelectorAll('script[src], link[rel="stylesheet"]')]
                 .map((e) => e.src || e.href)"""
    )
    assert in_dom and all(origin(url) == world.base_url for url in in_dom), in_dom


async def test_maps_work_when_the_tile_server_is_unreachable(world: World, open_page: OpenPage) -> None:
    tiles = origin(world.tile_url)
    tab = await open_page("desktop")
    page = tab.page
    await log_in(page, world.owner_a)
    await page.goto(f"/app/#/cars/{world.car_a.vin}")
    car_map = page.get_by_test_id("car-map")
    await expect(car_map).to_be_visible(timeout=WAIT)
    await expect(car_map.get_by_title(f"{world.car_a.model} {world.car_a.vin}")).to_be_visible(timeout=WAIT)
    await expect(page.get_by_role("meter", name="State of charge")).to_have_attribute(
        "aria-valuenow", re.compile(r"\d")
    )
    assert any(r.url.startswith(tiles + "/tiles/") for r in tab.watch.requests), "no tile was even asked for"

    tab = await open_page("desktop")
    page = tab.page
    await log_in(page, world.operator)
    fleet_map = page.get_by_test_id("fleet-map")
    await expect(fleet_map).to_be_visible(timeout=WAIT)
    await expect(fleet_map.get_by_title(re.compile(world.car_a.vin))).to_be_visible(timeout=WAIT)


async def test_the_watch_sees_csp_violations_page_errors_and_requests_off_the_platform(
    world: World, open_page: OpenPage
) -> None:
    """The guard every browser test relies on: what it must catch, it catches (then this test forgives it)."""
    tab = await open_page("desktop")
    page = tab.page
    await page.goto("/app/")
    await expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=WAIT)
    assert tab.watch.problems == []
    await page.evaluate(
        """() => {
             const s = document.createElement("script");
             s.textContent = "window.inlineRan = true";  // inline code: the CSP must refuse it
             document.body.append(s);
             setTimeout(() => { throw new Error("boom from the page"); });
           }"""
    )
    await tab.context.new_page()  # pages opened later are watched too
    async with tab.context.expect_event("request"):
        await page.evaluate("() => { new Image().src = 'http://192.0.2.1/pixel.png'; }")

    def seen(part: str) -> bool:
        return any(part in p for p in tab.watch.problems)

    await eventually(
        lambda: (
            seen("CSP violation: script-src")
            and seen("page error: boom from the page")
            and seen("request leaves the platform: GET http://192.0.2.1/pixel.png")
        ),
        timeout=WAIT / 1000,
    )
    assert not await page.evaluate("() => window.inlineRan === true")
    tab.watch.problems.clear()
