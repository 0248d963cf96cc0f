"""Serves the owner app and operator console (`/app/`), the status page and local API docs.

Everything a page loads comes from the platform (scripts, styles, icons, the API docs' Swagger UI); the one
exception is map tiles, from the configured tile server. A Content-Security-Policy makes the browser hold
pages to that.
"""

from __future__ import annotations

import mimetypes
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from smartev.settings import WebSettings

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["web"])
mimetypes.add_type("application/manifest+json", ".webmanifest")


class WebConfig(BaseModel):
    """What the pages need to know about this platform."""

    tile_url: str
    tile_attribution: str
    tile_max_zoom: int


@api.get("/web/config", response_model=WebConfig, summary="Map tiles and other settings of the web app")
async def web_config(request: Request) -> WebConfig:
    web: WebSettings = request.app.state.platform.settings.web
    return WebConfig(
        tile_url=web.tile_url, tile_attribution=web.tile_attribution, tile_max_zoom=web.tile_max_zoom
    )


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/app/", status_code=307)


@router.get("/status", response_class=HTMLResponse)
async def status_page() -> HTMLResponse:
    html = resources.files("smartev.web").joinpath("static/status.html").read_text(encoding="utf-8")
    return HTMLResponse(html)


@router.get("/docs", response_class=HTMLResponse)
async def api_docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="smartev API",
        swagger_js_url="/app/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/app/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/app/icons/icon-192.png",
    )


def content_security_policy(tile_url: str) -> str:
    """Only the platform itself, plus the tile server for images."""
    tiles = ""
    if tile_url:
        parts = urlsplit(tile_url.replace("{s}", "a"))
        if parts.scheme and parts.netloc:
            host = parts.netloc
            if "{s}" in tile_url:
                host = "*." + host.split(".", 1)[1] if "." in host else host
            tiles = f" {parts.scheme}://{host}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data: blob:{tiles}; connect-src 'self'; worker-src 'self'; manifest-src 'self'; "
        "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
    )


class SecurityHeaders:
    """Security headers on every response (plain ASGI: streams pass through unbuffered).

    Pages under /app get the strict CSP; everything else may not be framed either. The app shell, its
    scripts and styles must be revalidated (ETags keep that cheap), so an upgrade never pairs a new app.js
    with an old owner.js from the browser's cache.
    """

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self._app = app
        common = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"x-frame-options", b"DENY"),
        ]
        self._app_headers = [(b"content-security-policy", csp.encode()), *common]
        self._other_headers = [(b"content-security-policy", b"frame-ancestors 'none'"), *common]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        in_app = path == "/app" or path.startswith("/app/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += self._app_headers if in_app else self._other_headers
                if in_app and path.endswith(("/", ".html", ".js", ".css", ".webmanifest")):
                    headers.append((b"cache-control", b"no-cache"))
                message["headers"] = headers
            await send(message)

        await self._app(scope, receive, send_with_headers)


def mount(app: FastAPI, web: WebSettings) -> None:
    """Serve the pages: `/app/` (owner app + operator console), `/status`, `/docs`; headers on everything."""
    app.include_router(api)
    app.include_router(router)
    app.mount("/app", StaticFiles(packages=[("smartev.web", "static/app")], html=True), name="app")
    app.add_middleware(SecurityHeaders, csp=content_security_policy(web.tile_url))
