"""Web app benchmark: the owner's live car page under 10 updates/s, and the fleet console with 10,000 cars.

    python bench/web.py                  # 10,000 cars, 10 updates/s for 20 s
    python bench/web.py --cars 1000 --seconds 10 --quick

The platform runs in this process behind uvicorn on a free port (SQLite, embedded broker); Debian's Chromium
is driven by Playwright (headless). Cars are registered through the registry and report through the ingest
pipeline's own entry point (`Ingest.submit`, what the MQTT adapter calls), so the twin, history and live
streams carry real load without 10,000 MQTT connections.

Measured:

1. live car page (owner): one car sends a message every 1/`--rate` s with a new speed, SoC and position.
   In the page, a MutationObserver stamps when the speed text changes; the bench stamps when it submitted
   that speed. Reported: updates shown / sent, end-to-end lag (submit → on screen) p50/p99, frame gaps
   (requestAnimationFrame) p50/p99/max and long tasks (> 50 ms, PerformanceObserver) during the window.
   Smooth = the frame gap p99 under 50 ms and no long task over 100 ms.
2. fleet console (operator) with `--cars` cars: API latency of /fleet/summary, /fleet/vehicles (first page,
   sorted by SoC, searched) and /fleet/positions, p50/p99 over 20 calls each; in the browser the time from
   navigation to the table's first row, to the count tiles and to the clustered map, and long tasks over
   the next 20 s (a positions refresh included). Usable = first rows in under 2 s, no long task over 500 ms
   after the first render.
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/ocpp.py would shadow the ocpp library: drop this folder from the import path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx
import orjson
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from smartev.app import Platform, create_app
from smartev.settings import Settings, WebSettings
from smartev.vehicles.vin import make_vin

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "bench password 1"
SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"

WATCH_JS = """
() => {
  const stats = window.__bench = { frames: [], longtasks: [], shown: [] };
  let last = performance.now();
  const frame = (t) => { stats.frames.push(t - last); last = t; requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) stats.longtasks.push(e.duration);
  }).observe({ type: "longtask", buffered: false });
  const speed = document.querySelector('[data-testid="speed"]');
  if (speed) {
    new MutationObserver(() => stats.shown.push([speed.textContent, Date.now()]))
      .observe(speed, { childList: true, characterData: true, subtree: true });
  }
}
"""


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def seed(platform: Platform, cars: int, console: Console) -> tuple[list[str], str]:
    """An operator, 100 owners, `cars` cars spread over Berlin, each having reported once."""
    await platform.accounts.ensure_user("operator@bench.test", PASSWORD, "operator")
    owners = [f"owner{i}@bench.test" for i in range(100)]
    for email in owners:
        await platform.accounts.ensure_user(email, PASSWORD, "owner")
    rng = random.Random(1)
    vins: list[str] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("registering cars", total=cars)
        for i in range(cars):
            rec, _ = await platform.registry.register(make_vin(rng), "smartev S1", owners[i % len(owners)])
            vins.append(rec.vin)
            progress.advance(task)
        task = progress.add_task("first reports", total=cars)
        now = int(time.time() * 1000)
        for i, vin in enumerate(vins):
            await platform.ingest.status(vin, b"online")
            signals = {
                "Vehicle.Speed": float(rng.choice([0, 0, 0, 30, 50])),
                SOC: round(rng.uniform(10, 95), 1),
                "Vehicle.CurrentLocation.Latitude": 52.52 + rng.uniform(-0.15, 0.15),
                "Vehicle.CurrentLocation.Longitude": 13.40 + rng.uniform(-0.25, 0.25),
                "Vehicle.Powertrain.Range": rng.randint(50_000, 400_000),
            }
            await platform.ingest.submit(
                vin, orjson.dumps({"seq": 1, "samples": [{"ts": now, "signals": signals}]})
            )
            if i % 500 == 0:
                await asyncio.sleep(0)  # let the writer commit
            progress.advance(task)
        task = progress.add_task("stored", total=cars)
        while platform.ingest.queue_depth:  # measure the pages, not the first reports' commit
            progress.update(task, completed=cars - platform.ingest.queue_depth)
            await asyncio.sleep(0.2)
        progress.update(task, completed=cars)
    return vins, owners[0]


async def login(http: httpx.AsyncClient, email: str) -> str:
    r = await http.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
    r.raise_for_status()
    token: str = r.json()["access_token"]
    return token


async def open_page(browser: Any, base: str, token: str, path: str) -> Any:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    await context.add_init_script(f"localStorage.setItem('smartev.token', {orjson.dumps(token).decode()});")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    await page.goto(f"{base}/app/#{path}")
    return page


async def live_page(
    args: argparse.Namespace, platform: Platform, browser: Any, base: str, http: Any, vin: str, owner: str
) -> dict[str, Any]:
    token = await login(http, owner)
    page = await open_page(browser, base, token, f"/cars/{vin}")
    await page.wait_for_selector('[data-testid="speed"]', timeout=20_000)
    await page.wait_for_timeout(1000)
    await page.evaluate(WATCH_JS)
    sent: dict[str, float] = {}
    interval = 1 / args.rate
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < args.seconds:
        n += 1
        speed = float(20 + n % 200)  # whole km/h, as the page shows them; distinct within 20 s
        at = int(time.time() * 1000)
        signals = {
            "Vehicle.Speed": speed,
            SOC: round(80 - n * 0.01, 2),
            "Vehicle.CurrentLocation.Latitude": 52.52 + n * 1e-5,
            "Vehicle.CurrentLocation.Longitude": 13.40 + n * 1e-5,
        }
        await platform.ingest.submit(
            vin, orjson.dumps({"seq": 1000 + n, "samples": [{"ts": at, "signals": signals}]})
        )
        sent[str(int(speed))] = time.time() * 1000
        await asyncio.sleep(max(0.0, t0 + n * interval - time.perf_counter()))
    await page.wait_for_timeout(1500)
    stats = await page.evaluate("window.__bench")
    lags = []
    for text, shown_ms in stats["shown"]:
        number = re.match(r"\s*(\d+)", text)
        if number and number.group(1) in sent:
            lags.append(shown_ms - sent[number.group(1)])
    frames = stats["frames"][2:]
    await page.context.close()
    return {
        "sent": n,
        "shown": len(lags),
        "lag_p50_ms": pct(lags, 0.5),
        "lag_p99_ms": pct(lags, 0.99),
        "frame_p50_ms": pct(frames, 0.5),
        "frame_p99_ms": pct(frames, 0.99),
        "frame_max_ms": max(frames) if frames else float("nan"),
        "long_tasks": len(stats["longtasks"]),
        "long_task_max_ms": max(stats["longtasks"], default=0.0),
        "page_errors": page.errors,
    }


async def timed(
    http: httpx.AsyncClient, path: str, token: str, params: dict[str, Any] | None = None
) -> list[float]:
    out = []
    for _ in range(20):
        t = time.perf_counter()
        r = await http.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()
        out.append((time.perf_counter() - t) * 1000)
    return out


async def fleet_page(browser: Any, base: str, http: Any) -> dict[str, Any]:
    token = await login(http, "operator@bench.test")
    api = {
        "summary": await timed(http, "/api/v1/fleet/summary", token),
        "table, sorted by SoC": await timed(
            http, "/api/v1/fleet/vehicles", token, {"sort": "soc", "order": "desc"}
        ),
        "table, searched": await timed(http, "/api/v1/fleet/vehicles", token, {"q": "owner7"}),
        "positions": await timed(http, "/api/v1/fleet/positions", token),
    }
    t = time.perf_counter()
    page = await open_page(browser, base, token, "/fleet")
    await page.wait_for_selector("table tbody tr", timeout=60_000)
    first_rows = time.perf_counter() - t
    await page.wait_for_function(
        "() => /\\d/.test(document.querySelector('[data-testid=count-total]')?.textContent || '')",
        timeout=60_000,
    )
    counts = time.perf_counter() - t
    await page.wait_for_selector(".marker-cluster", timeout=60_000)
    clustered = time.perf_counter() - t
    await page.evaluate(WATCH_JS)
    await page.wait_for_timeout(20_000)
    stats = await page.evaluate("window.__bench")
    await page.context.close()
    return {
        "api": {k: (pct(v, 0.5), pct(v, 0.99)) for k, v in api.items()},
        "first_rows_s": first_rows,
        "counts_s": counts,
        "clustered_map_s": clustered,
        "long_tasks_after": len(stats["longtasks"]),
        "long_task_max_ms": max(stats["longtasks"], default=0.0),
        "frame_p99_ms": pct(stats["frames"][2:], 0.99),
        "page_errors": page.errors,
    }


async def run(args: argparse.Namespace) -> None:
    from playwright.async_api import async_playwright

    console = Console()
    with tempfile.TemporaryDirectory() as d:
        settings = Settings(
            data_dir=Path(d),
            database_url=f"sqlite+aiosqlite:///{d}/bench.db",
            secret_key="bench-" + "x" * 40,
            mqtt_port=free_port(),
            http_port=free_port(),
            ocpp={"enabled": False},
            web=WebSettings(tile_url=""),
        )
        platform = Platform(settings)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(platform=platform), host="127.0.0.1", port=port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
            await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        try:
            vins, first_owner = await seed(platform, args.cars, console)
            async with httpx.AsyncClient(base_url=base, timeout=60) as http, async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
                )
                console.print(f"live car page: {args.rate} updates/s for {args.seconds} s …")
                live = await live_page(args, platform, browser, base, http, vins[0], first_owner)
                console.print(f"fleet console with {args.cars} cars …")
                fleet = await fleet_page(browser, base, http)
                await browser.close()
        finally:
            server.should_exit = True
            await serving
    report(console, args, live, fleet)


def report(console: Console, args: argparse.Namespace, live: dict[str, Any], fleet: dict[str, Any]) -> None:
    cores = os.cpu_count()
    t = Table(title=f"live car page, {args.rate} updates/s for {args.seconds} s ({cores} cores)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("updates shown / sent", f"{live['shown']} / {live['sent']}")
    t.add_row("submit → on screen p50 / p99", f"{live['lag_p50_ms']:.0f} / {live['lag_p99_ms']:.0f} ms")
    t.add_row(
        "frame gap p50 / p99 / max",
        f"{live['frame_p50_ms']:.1f} / {live['frame_p99_ms']:.1f} / {live['frame_max_ms']:.0f} ms",
    )
    t.add_row("long tasks (> 50 ms), longest", f"{live['long_tasks']}, {live['long_task_max_ms']:.0f} ms")
    smooth = live["frame_p99_ms"] < 50 and live["long_task_max_ms"] <= 100
    t.add_row("smooth (frame p99 < 50 ms, no long task > 100 ms)", "yes" if smooth else "NO")
    console.print(t)
    t = Table(title=f"fleet console, {args.cars} cars ({cores} cores)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for name, (p50, p99) in fleet["api"].items():
        t.add_row(f"API {name} p50 / p99", f"{p50:.0f} / {p99:.0f} ms")
    t.add_row("page → first table rows", f"{fleet['first_rows_s']:.2f} s")
    t.add_row("page → count tiles", f"{fleet['counts_s']:.2f} s")
    t.add_row("page → clustered map", f"{fleet['clustered_map_s']:.2f} s")
    t.add_row(
        "long tasks in the next 20 s, longest",
        f"{fleet['long_tasks_after']}, {fleet['long_task_max_ms']:.0f} ms",
    )
    t.add_row("frame gap p99 in those 20 s", f"{fleet['frame_p99_ms']:.0f} ms")
    usable = fleet["first_rows_s"] < 2 and fleet["long_task_max_ms"] <= 500
    t.add_row("usable (rows < 2 s, no long task > 500 ms)", "yes" if usable else "NO")
    console.print(t)
    for name, errors in (("live page", live["page_errors"]), ("fleet page", fleet["page_errors"])):
        if errors:
            console.print(f"[red]{name} errors:[/red] {errors}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cars", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=10.0, help="updates/s of the watched car")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--quick", action="store_true", help="1,000 cars, 10 s")
    args = p.parse_args()
    if args.quick:
        args.cars, args.seconds = min(args.cars, 1000), min(args.seconds, 10.0)
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
