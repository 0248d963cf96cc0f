"""Serves the status page and static assets (all local: no page calls the internet)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def status_page() -> HTMLResponse:
    html = resources.files("smartev.web").joinpath("static/status.html").read_text(encoding="utf-8")
    return HTMLResponse(html)
