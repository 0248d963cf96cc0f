"""What the browser tests share: the watch over a browser context, logging in, reading numbers off the page."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, ConsoleMessage, Page, Request, expect

WAIT = 15_000  # ms a user-visible change may take (a live update, a command round trip, a 5 s refresh)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}

# Reported by the page itself to the console, so the watch sees violations whatever Chromium logs about them.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline code"}`);
});
"""
_FAILED_LOAD = "Failed to load resource"


@dataclass(frozen=True, slots=True)
class Account:
    email: str
    password: str
    role: str


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Watch:
    """What one browser context did that a user would call broken: page errors, console errors (CSP violations
    included), and requests that leave the platform. Map tiles may go to `tile_origin` and may fail there;
    an HTTP error the test provokes on purpose is declared with `expect_http_error`."""

    origin: str
    tile_origin: str | None = None
    problems: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    offline: bool = False  # while the test has cut the network, failed loads are what it asked for
    _expected: list[tuple[int | None, str]] = field(default_factory=list)

    def attach(self, context: BrowserContext) -> None:
        context.on("request", self._on_request)
        context.on("page", self._on_page)

    def expect_http_error(self, path: str, status: int | None = None) -> None:
        """A request to `path` (a prefix, after the origin) may fail (with `status`, or any when None)."""
        self._expected.append((status, self.origin + path))

    def _on_page(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))

    def _on_request(self, request: Request) -> None:
        self.requests.append(request)
        url = request.url
        if url.startswith(("data:", "blob:")):
            return
        if origin(url) not in (self.origin, self.tile_origin):
            self.problems.append(f"request leaves the platform: {request.method} {url}")

    def _on_console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        url = msg.location.get("url", "") if msg.location else ""
        if msg.text.startswith(_FAILED_LOAD) and self._failure_allowed(msg.text, url):
            return
        self.problems.append(f"console error: {msg.text} ({url})")

    def _failure_allowed(self, text: str, url: str) -> bool:
        if self.offline or (self.tile_origin and url.startswith(self.tile_origin + "/")):
            return True
        status = re.search(r"status of (\d{3})", text)
        code = int(status.group(1)) if status else None
        return any(url.startswith(prefix) and want in (None, code) for want, prefix in self._expected)


async def log_in(page: Page, account: Account) -> None:
    """Log in through the login page, as a person would."""
    await page.goto("/app/")
    await page.get_by_label("Email", exact=True).fill(account.email)
    await page.get_by_label("Password", exact=True).fill(account.password)
    await page.get_by_role("button", name="Log in", exact=True).click()
    landing = "My cars" if account.role == "owner" else "Fleet"
    await expect(page.get_by_role("heading", level=1, name=landing)).to_be_visible(timeout=WAIT)


_NUMBER = re.compile(r"[-\u2212]?\d[\d,]*(?:\.(\d+))?")


def number_in(text: str) -> tuple[float, int]:
    """The first number in `text` as the en-US page shows it ("9,679.7 km"), and its decimal places."""
    m = _NUMBER.search(text)
    assert m, f"no number in {text!r}"
    return float(m.group(0).replace(",", "").replace("\u2212", "-")), len(m.group(1) or "")


def shown_as(value: float, text: str) -> bool:
    """True when `text` shows `value` at the precision the page chose (rounded to its decimal places)."""
    shown, places = number_in(text)
    return abs(shown - value) <= 0.5 * 10.0**-places + 1e-9


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / name, full_page=True)


async def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than its viewport (0 when nothing sticks out sideways)."""
    overflow: int = await page.evaluate(
        "() => Math.max(0, document.documentElement.scrollWidth - window.innerWidth)"
    )
    return overflow


_NAMELESS = re.compile(
    r"^\s*- (button|textbox|combobox|spinbutton|checkbox|radio|searchbox|slider|switch|link|listbox)"
    r"(?:\s*\[[^\]]*\])*\s*(?::.*)?$"
)


async def controls_without_a_name(page: Page) -> list[str]:
    """Controls in the accessibility tree (as Chromium computes it) that have no accessible name."""
    tree = await page.locator("body").aria_snapshot()
    return [line.strip() for line in tree.splitlines() if _NAMELESS.match(line)]
