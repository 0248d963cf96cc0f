"""`smartev agent status`: how the agent is doing, read from its files, whether it runs or not.

The spool file is the truth about what waits and what was dropped (read-only here, so looking never changes
it); the status file the running agent rewrites every second says whether it is connected.
"""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from smartev.agent.config import AgentConfig

_STALE_S = 5.0


def read_status(config: AgentConfig) -> dict[str, Any]:
    """The agent's status as a dict, with `summary`: (label, text) rows for people."""
    live = _read_live(config)
    spool = _read_spool(config)
    updated = live.get("updated_at")
    age = None
    if isinstance(updated, str):
        age = time.time() - datetime.fromisoformat(updated).timestamp()
    running = bool(live.get("running")) and age is not None and age < _STALE_S and _alive(live.get("pid"))
    connected = running and bool(live.get("connected"))
    status: dict[str, Any] = {
        "vin": config.vin,
        "running": running,
        "connected": connected,
        "connected_since": live.get("connected_since") if connected else None,
        "last_ack_at": live.get("last_ack_at"),
        "broker": config.platform.mqtt_url,
        "spool_file": str(config.spool_path),
        "spool": spool,
    }
    oldest = spool.get("oldest_ts_ms")
    if running:
        state = (
            f"[green]connected[/green] since {status['connected_since']}"
            if connected
            else "[red]offline[/red]"
        )
    else:
        state = "[yellow]not running[/yellow]" + (f" (last seen {updated})" if updated else "")
    dropped = spool.get("dropped_messages", 0)
    status["summary"] = [
        ("agent", state),
        ("broker", config.platform.mqtt_url),
        ("spool", f"{spool.get('depth', 0)} messages waiting ({spool.get('bytes', 0) / 1024:.1f} KiB)"),
        ("oldest unsent sample", _age_text(oldest) if oldest is not None else "—"),
        (
            "dropped",
            f"{dropped} messages, {spool.get('dropped_samples', 0)} samples, "
            f"{spool.get('dropped_signals', 0)} signal values "
            f"({spool.get('dropped_for_size', 0)} for size, {spool.get('dropped_for_age', 0)} for age)"
            if dropped
            else "nothing",
        ),
        ("rejected by the platform", str(spool.get("rejected_messages", 0))),
        ("last ack", str(live.get("last_ack_at") or "—")),
    ]
    return status


def _alive(pid: object) -> bool:
    """True when the process that wrote the status still exists (a kill -9 leaves a fresh-looking file)."""
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def _read_live(config: AgentConfig) -> dict[str, Any]:
    try:
        data = orjson.loads(config.status_path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_spool(config: AgentConfig) -> dict[str, Any]:
    path = config.spool_path
    if not path.exists():
        return {"depth": 0, "bytes": 0, "oldest_ts_ms": None}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        depth, size, oldest = db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0), min(first_ts_ms) FROM messages"
        ).fetchone()
        counters = {str(k): int(v) for k, v in db.execute("SELECT name, value FROM counters")}
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        # an agent starting this instant has created the file but not its tables yet: nothing is spooled
        return {"depth": 0, "bytes": 0, "oldest_ts_ms": None}
    finally:
        db.close()
    counters.pop("next_seq", None)
    return {"depth": int(depth), "bytes": int(size), "oldest_ts_ms": oldest} | counters


def _age_text(ts_ms: int) -> str:
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    age_s = max(time.time() - ts_ms / 1000, 0.0)
    if age_s < 120:
        ago = f"{age_s:.0f} s ago"
    elif age_s < 7200:
        ago = f"{age_s / 60:.0f} min ago"
    else:
        ago = f"{age_s / 3600:.1f} h ago"
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({ago})"
