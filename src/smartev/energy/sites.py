"""Charging sites: their limits, which stations hang where, and what drivers asked of their sessions.

Sites and the wiring of their stations are few and read on every re-plan, so they live in memory and are
written through. A site's limits arrive as JSON (`{"id", "max_a", "phase_max_a"?, "circuits": [...]}`) and
are checked here into the planner's `Limit` tree, so a mistake is refused with the path of the wrong node.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from smartev.energy.domain import ALL_PHASES, Limit, Objective, Phase
from smartev.energy.models import ChargeGoal, ChargingSite, SiteStation
from smartev.errors import Conflict, InvalidInput, NotFound

SITE_ID = re.compile(r"^[A-Za-z0-9_\-.:]{1,48}$")
MAX_NODES = 200
MAX_CURRENT_A = 10_000.0


@dataclass(frozen=True, slots=True)
class Site:
    """A site's settings as the planner loop reads them."""

    id: str
    name: str
    owner_id: int | None
    limits: Limit
    objective: Objective = Objective.MAX_ENERGY
    tariff_id: int | None = None
    voltage_v: float = 230.0
    timezone: str = "UTC"
    ready_by: time | None = None
    target_soc: float = 100.0
    default_stay_h: float = 8.0
    default_energy_kwh: float = 20.0

    def circuits(self) -> set[str]:
        """The ids of every node of the limit tree."""
        return {node.id for node in self.limits.nodes()}

    def departure_after(self, now: datetime) -> datetime | None:
        """The next time the site's cars should be ready (`ready_by` in the site's time zone), if it has one."""
        if self.ready_by is None:
            return None
        local = now.astimezone(ZoneInfo(self.timezone))
        at = datetime.combine(local.date(), self.ready_by, tzinfo=local.tzinfo)
        if at <= local:
            at = datetime.combine(local.date() + timedelta(days=1), self.ready_by, tzinfo=local.tzinfo)
        return at


@dataclass(frozen=True, slots=True)
class Wiring:
    """How one station is connected inside its site."""

    station_id: str
    site_id: str
    circuit: str | None = None
    phases: frozenset[Phase] = ALL_PHASES
    max_a: float = 32.0
    min_a: float = 6.0


@dataclass(frozen=True, slots=True)
class Goal:
    """What a driver asked of one charge session; None fields fall back to the site's defaults."""

    session_id: int
    departure_ms: int | None = None
    target_soc: float | None = None
    energy_kwh: float | None = None


def limits_from_dict(data: Mapping[str, Any], loc: tuple[str, ...] = ("body", "limits")) -> Limit:
    """The limit tree from its JSON form; InvalidInput names the node that is wrong."""
    seen: set[str] = set()

    def node(d: Any, where: tuple[str, ...]) -> Limit:
        if not isinstance(d, Mapping):
            raise InvalidInput(
                "each limit is an object with id, max_a and optional phase_max_a, circuits", where
            )
        unknown = set(d) - {"id", "max_a", "phase_max_a", "circuits"}
        if unknown:
            raise InvalidInput(f"unknown field(s) {sorted(unknown)} in a limit", where)
        node_id = d.get("id")
        if not isinstance(node_id, str) or not SITE_ID.match(node_id):
            raise InvalidInput("a limit's id is 1 to 48 letters, digits or _-.:", (*where, "id"))
        if node_id in seen:
            raise InvalidInput(f"the limit id {node_id} is used twice", (*where, "id"))
        seen.add(node_id)
        if len(seen) > MAX_NODES:
            raise InvalidInput(f"a site has at most {MAX_NODES} limits", where)
        max_a = _amps(d.get("max_a"), (*where, "max_a"))
        phase_max = d.get("phase_max_a")
        if phase_max is not None:
            if not isinstance(phase_max, list | tuple) or len(phase_max) != 3:
                raise InvalidInput(
                    "phase_max_a lists three currents, for phases A, B and C", (*where, "phase_max_a")
                )
            phase_max = tuple(_amps(v, (*where, "phase_max_a", str(i))) for i, v in enumerate(phase_max))
        children = d.get("circuits", [])
        if not isinstance(children, list | tuple):
            raise InvalidInput("circuits must be a list of limits", (*where, "circuits"))
        return Limit(
            node_id,
            max_a,
            tuple(node(c, (*where, "circuits", str(i))) for i, c in enumerate(children)),
            phase_max,
        )

    return node(data, loc)


def limits_to_dict(limit: Limit) -> dict[str, Any]:
    """The JSON form `limits_from_dict` reads."""
    out: dict[str, Any] = {"id": limit.id, "max_a": limit.max_a}
    if limit.phase_max_a is not None:
        out["phase_max_a"] = list(limit.phase_max_a)
    out["circuits"] = [limits_to_dict(c) for c in limit.children]
    return out


def phases_from_text(text: str, loc: tuple[str, ...] = ("body", "phases")) -> frozenset[Phase]:
    """ "ABC", "A", "BC" → the phases; InvalidInput otherwise."""
    if not text or len(set(text)) != len(text) or not set(text) <= {p.value for p in Phase}:
        raise InvalidInput('phases are one to three of the letters A, B, C, e.g. "ABC" or "A"', loc)
    return frozenset(Phase(c) for c in text)


def phases_to_text(phases: frozenset[Phase]) -> str:
    """The phases as letters in order, e.g. "ABC"."""
    return "".join(sorted(p.value for p in phases))


def check_timezone(name: str, loc: tuple[str, ...] = ("body", "timezone")) -> None:
    """InvalidInput unless `name` is an IANA time zone such as Europe/Berlin."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin", loc
        ) from None


def _amps(value: Any, loc: tuple[str, ...]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput("a current is a number of amperes", loc)
    if not 0 <= value <= MAX_CURRENT_A:
        raise InvalidInput(f"a current is between 0 and {MAX_CURRENT_A:g} A", loc)
    return float(value)


class Sites:
    """The sites service: settings and wiring in memory, written through; goals in the database."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[Any]) -> None:
        self._engine = engine
        self._sessions = sessions
        self._sites: dict[str, Site] = {}
        self._wiring: dict[str, Wiring] = {}

    async def load(self) -> None:
        """Read every site and every station's wiring into memory."""
        async with self._sessions() as s:
            sites = (await s.execute(select(ChargingSite))).scalars().all()
            wiring = (await s.execute(select(SiteStation))).scalars().all()
        self._sites = {row.id: _site_from_row(row) for row in sites}
        self._wiring = {
            w.station_id: Wiring(
                w.station_id, w.site_id, w.circuit, phases_from_text(w.phases), w.max_a, w.min_a
            )
            for w in wiring
        }

    # --- sites ---

    def all(self) -> list[Site]:
        """Every site, by id."""
        return sorted(self._sites.values(), key=lambda s: s.id)

    def get(self, site_id: str) -> Site:
        """The site, or NotFound."""
        site = self._sites.get(site_id)
        if site is None:
            raise NotFound(f"no site {site_id}")
        return site

    async def save(self, site: Site, now_ms: int, *, create: bool) -> Site:
        """Create a site, or replace the settings of an existing one (its stations stay wired)."""
        if not SITE_ID.match(site.id):
            raise InvalidInput("a site id is 1 to 48 letters, digits or _-.:", ("body", "id"))
        check_timezone(site.timezone)
        if create and site.id in self._sites:
            raise Conflict(f"site {site.id} exists already")
        if not create:
            self.get(site.id)
            circuits = site.circuits()
            for w in self.stations_of(site.id):
                if w.circuit is not None and w.circuit not in circuits:
                    raise InvalidInput(
                        f"station {w.station_id} hangs from circuit {w.circuit}, which the new limits leave out",
                        ("body", "limits"),
                    )
        values = _site_to_row(site, now_ms)
        async with self._sessions() as s:
            if create:
                s.add(ChargingSite(**values, created_ms=now_ms))
            else:
                row = await s.get(ChargingSite, site.id)
                if row is None:
                    raise NotFound(f"no site {site.id}")
                for key, value in values.items():
                    setattr(row, key, value)
            await s.commit()
        self._sites[site.id] = site
        return site

    async def delete(self, site_id: str) -> None:
        """Remove a site; its stations are no longer planned (they charge at their own maximum)."""
        self.get(site_id)
        async with self._engine.begin() as conn:
            await conn.execute(delete(SiteStation).where(SiteStation.site_id == site_id))
            await conn.execute(delete(ChargingSite).where(ChargingSite.id == site_id))
        del self._sites[site_id]
        self._wiring = {k: w for k, w in self._wiring.items() if w.site_id != site_id}

    # --- wiring ---

    def stations_of(self, site_id: str) -> list[Wiring]:
        """The site's stations, by id."""
        return sorted((w for w in self._wiring.values() if w.site_id == site_id), key=lambda w: w.station_id)

    def wiring(self, station_id: str) -> Wiring | None:
        """Where the station hangs, or None when it is in no site."""
        return self._wiring.get(station_id)

    async def wire(self, wiring: Wiring) -> Wiring:
        """Put a station into a site (or move it), on a circuit and phases, with its current range."""
        site = self.get(wiring.site_id)
        if wiring.circuit is not None and wiring.circuit not in site.circuits():
            raise InvalidInput(
                f"site {site.id} has no circuit {wiring.circuit}; its limits are {sorted(site.circuits())}",
                ("body", "circuit"),
            )
        if not 0 <= wiring.min_a <= wiring.max_a:
            raise InvalidInput("need 0 <= min_a <= max_a", ("body", "min_a"))
        values = {
            "site_id": wiring.site_id,
            "circuit": wiring.circuit,
            "phases": phases_to_text(wiring.phases),
            "max_a": wiring.max_a,
            "min_a": wiring.min_a,
        }
        async with self._sessions() as s:
            row = await s.get(SiteStation, wiring.station_id)
            if row is None:
                s.add(SiteStation(station_id=wiring.station_id, **values))
            else:
                for key, value in values.items():
                    setattr(row, key, value)
            await s.commit()
        self._wiring[wiring.station_id] = wiring
        return wiring

    async def unwire(self, site_id: str, station_id: str) -> None:
        """Take a station out of a site."""
        w = self._wiring.get(station_id)
        if w is None or w.site_id != site_id:
            raise NotFound(f"station {station_id} is not in site {site_id}")
        async with self._engine.begin() as conn:
            await conn.execute(delete(SiteStation).where(SiteStation.station_id == station_id))
        del self._wiring[station_id]

    # --- goals ---

    async def goals(self, session_ids: Sequence[int]) -> dict[int, Goal]:
        """The goals set for these sessions (sessions without one are absent)."""
        if not session_ids:
            return {}
        async with self._sessions() as s:
            rows = (
                await s.execute(select(ChargeGoal).where(ChargeGoal.session_id.in_(session_ids)))
            ).scalars()
            return {
                r.session_id: Goal(r.session_id, r.departure_ms, r.target_soc, r.energy_kwh) for r in rows
            }

    async def set_goal(self, goal: Goal, by_user: int | None, now_ms: int) -> Goal:
        """Store what the driver asked for, replacing what they asked before."""
        async with self._sessions() as s:
            row = await s.get(ChargeGoal, goal.session_id)
            if row is None:
                row = ChargeGoal(session_id=goal.session_id)
                s.add(row)
            row.departure_ms = goal.departure_ms
            row.target_soc = goal.target_soc
            row.energy_kwh = goal.energy_kwh
            row.set_by = by_user
            row.updated_ms = now_ms
            await s.commit()
        return goal


def _site_from_row(row: ChargingSite) -> Site:
    return Site(
        id=row.id,
        name=row.name,
        owner_id=row.owner_id,
        limits=limits_from_dict(orjson.loads(row.limits)),
        objective=Objective(row.objective),
        tariff_id=row.tariff_id,
        voltage_v=row.voltage_v,
        timezone=row.timezone,
        ready_by=time.fromisoformat(row.ready_by) if row.ready_by else None,
        target_soc=row.target_soc,
        default_stay_h=row.default_stay_h,
        default_energy_kwh=row.default_energy_kwh,
    )


def _site_to_row(site: Site, now_ms: int) -> dict[str, Any]:
    return {
        "id": site.id,
        "name": site.name,
        "owner_id": site.owner_id,
        "limits": orjson.dumps(limits_to_dict(site.limits)).decode(),
        "objective": site.objective.value,
        "tariff_id": site.tariff_id,
        "voltage_v": site.voltage_v,
        "timezone": site.timezone,
        "ready_by": f"{site.ready_by:%H:%M}" if site.ready_by else None,
        "target_soc": site.target_soc,
        "default_stay_h": site.default_stay_h,
        "default_energy_kwh": site.default_energy_kwh,
        "updated_ms": now_ms,
    }
