"""The web app is served by the platform itself: every file the pages load exists, comes from the platform,
and is held to a Content-Security-Policy that lets only map tiles leave the origin."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import orjson

from smartev.web.router import content_security_policy

from conftest import Harness

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "src/smartev/web/static/app"


def _shell_files() -> list[str]:
    sw = (APP / "sw.js").read_text()
    block = re.search(r"const SHELL = \[(.*?)\];", sw, re.S)
    assert block, "sw.js lists the app shell it caches"
    return re.findall(r'"([^"]+)"', block.group(1))


async def test_pages_and_everything_they_load_are_served(quick: Harness) -> None:
    http = quick.http
    r = await http.get("/")
    assert r.status_code == 307 and r.headers["location"] == "/app/"
    r = await http.get("/app/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    html = r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "https://tile.openstreetmap.org" in csp, "only the tile server may be reached, for images"
    referenced = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert not [u for u in referenced if "//" in u], "the page loads nothing from elsewhere"
    for path in set(referenced) | set(_shell_files()):
        r = await http.get(f"/app/{path.removeprefix('./')}")
        assert r.status_code == 200, f"{path} is referenced but not served"
    for module in ("app.js", "owner.js", "console.js"):
        for imported in re.findall(r'from "\./([^"]+)"', (APP / module).read_text()):
            assert (APP / imported).is_file(), f"{module} imports missing {imported}"

    r = await http.get("/app/manifest.webmanifest")
    assert r.headers["content-type"].startswith("application/manifest+json")
    manifest = orjson.loads(r.content)
    assert manifest["display"] == "standalone" and manifest["start_url"]
    assert {"192x192", "512x512"} <= {i["sizes"] for i in manifest["icons"]}
    for icon in manifest["icons"]:
        r = await http.get(f"/app/{icon['src']}")
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    for asset in ("sw.js", "app.js", "style.css"):
        r = await http.get(f"/app/{asset}")
        assert r.headers["cache-control"] == "no-cache", "a new release must reach installed apps whole"
    r = await http.get("/api/v1/health")
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_api_docs_and_status_page_use_no_cdn(quick: Harness) -> None:
    r = await quick.http.get("/docs")
    assert r.status_code == 200
    assert (
        r.headers["x-frame-options"] == "DENY"
        and "frame-ancestors 'none'" in r.headers["content-security-policy"]
    )
    assets = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', r.text)
    assert assets and all(a.startswith("/") for a in assets), assets
    for a in assets:
        if a.endswith((".js", ".css", ".png")):
            assert (await quick.http.get(a)).status_code == 200, a
    r = await quick.http.get("/status")
    assert r.status_code == 200 and "//" not in "".join(re.findall(r'src="([^"]+)"', r.text))
    r = await quick.http.get("/api/v1/web/config")
    assert r.json()["tile_url"].startswith("https://")


def test_tile_servers_in_the_policy() -> None:
    assert "img-src 'self' data: blob:;" in content_security_policy("")
    assert "https://*.tile.example.org" in content_security_policy(
        "https://{s}.tile.example.org/{z}/{x}/{y}.png"
    )
    assert "http://10.0.0.5:8080" in content_security_policy("http://10.0.0.5:8080/tiles/{z}/{x}/{y}.png")


def test_the_wheel_carries_the_pages(tmp_path: Path) -> None:
    """`pip install smartev` must give working pages: the built wheel holds every static file."""
    source = tmp_path / "source"  # built from a copy: the build leaves nothing in the checkout
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = tmp_path.glob("smartev-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {p.relative_to(ROOT / "src").as_posix() for p in APP.rglob("*") if p.is_file()}
    assert wanted - names == set()
