"""The smart-charging loop: re-plan a site on every event and periodically, and send what changed.

    OCPP event (session started, meter values, session ended, station up/down)
      → the station's site is marked → after `settle_s` (to gather a burst) the loop reads the site's open
        sessions (one query) and the drivers' goals, asks the car's own twin for its SoC, plans (in a thread,
        so the event loop keeps answering stations) → sends each session's new current as a TxProfile
        (1.6 SetChargingProfile on the connector; 2.0.1 the same on the EVSE), lowering before raising so the
        site's limits hold while the profiles travel.

What a session wants comes from, in order: the energy its driver asked for; the target SoC (the driver's,
else the site's, never above the car's own charge limit) against the car's SoC and capacity — from the car's
telemetry, which a wallbox cannot see, else from the station's SoC meter value; else the site's default
energy. It leaves at the driver's departure, else at the site's `ready_by` time of day (a home: "80 % by
7:00"), else after the site's usual stay; a car still there after that is charged as soon as it can.

A station that refuses profiles (twice in a row, in amperes and then in watts) or whose composite schedule
shows it ignores them is load we cannot steer: its sessions are planned around with their full current
reserved, and it is asked again after `retry_refusing_s`. A station that is offline keeps the last profile it
accepted, which is what is reserved for it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from smartev.clock import Clock
from smartev.csms.control import ChargerControl, ChargingLimit
from smartev.csms.models import ChargeSession
from smartev.csms.server import StationRefused, answer
from smartev.csms.tariffs import Tariff as PriceList
from smartev.csms.tariffs import energy_prices
from smartev.energy.domain import ALL_PHASES, Limit, Phase, Plan, Session, Tariff
from smartev.energy.planner import plan
from smartev.energy.sites import Goal, Site, Sites, Wiring
from smartev.errors import NotFound, SmartEVError
from smartev.events import (
    ChargeSessionEnded,
    ChargeSessionStarted,
    ChargeSessionUpdated,
    ConnectorStatusChanged,
    EventBus,
    StationConnectivityChanged,
)
from smartev.settings import EnergySettings

logger = logging.getLogger(__name__)

PROFILE_ID_BASE = 7_000_000  # our TxProfiles: this + the EVSE id, so each new one replaces the last
STACK_LEVEL = 1
REFUSALS_TO_GIVE_UP = 2
OVERSTAY_S = 3600  # a car past its departure is planned as if it left within the hour
FLAT_PRICE = 0.30  # per kWh, for sites without a tariff: only relative prices matter to the plan


class CarBattery(Protocol):
    """What smart charging asks of the vehicles context about a car's battery."""

    def battery(self, vin: str) -> tuple[float | None, float | None, float | None]:
        """(SoC %, usable capacity kWh, the car's own charge limit %), each None when unknown."""


class StationLinks(Protocol):
    """The central system's live station connections."""

    def control(self, station_id: str) -> ChargerControl:
        """The station's connection, or StationOffline."""

    def online(self, station_id: str) -> bool:
        """True while the station has a connection."""


class OpenSessions(Protocol):
    """The charging context's sessions and tariffs."""

    async def active_at(self, station_ids: Sequence[str]) -> list[ChargeSession]:
        """The open sessions of these stations."""

    def tariffs(self) -> dict[int, tuple[str, PriceList]]:
        """Every tariff by id: (name, tariff)."""


@dataclass(slots=True)
class StationControl:
    """What the loop learned about steering one station."""

    unit: str = "A"
    refusals: int = 0
    refusing_until_ms: int = 0
    reason: str | None = None
    verified_ms: int = 0


@dataclass(slots=True)
class Sent:
    """The current last accepted by a session's station, and what its composite schedule says it applies."""

    station_id: str
    amps: int
    at_ms: int
    applied_a: float | None = None


@dataclass(frozen=True, slots=True)
class PlannedSession:
    """One session of a site's plan, as the API shows it."""

    session_id: int
    station_id: str
    evse_id: int
    transaction_id: str
    vin: str | None
    user_id: int | None
    control: str  # planned | not controllable | station offline
    energy_wanted_kwh: float
    energy_planned_kwh: float
    energy_delivered_kwh: float
    departure_ms: int
    soc: float | None
    target_soc: float | None
    current_a: int | None
    sent_a: int | None
    applied_a: float | None
    currents_a: tuple[float, ...]
    reasons: tuple[str, ...]
    phases: str


@dataclass(frozen=True, slots=True)
class SitePlan:
    """A site's latest plan: every session's schedule, the load per phase against the limit, the prices."""

    site_id: str
    planned_ms: int
    start_ms: int
    period_s: int
    prices: tuple[float, ...]
    limit_a: tuple[float, float, float]
    load_a: dict[str, tuple[float, ...]]
    sessions: tuple[PlannedSession, ...]
    solver: str
    solve_s: float
    objective: str


@dataclass(slots=True)
class _Row:
    """A session on its way through one re-plan."""

    row: ChargeSession
    wiring: Wiring
    wanted_kwh: float
    departure: datetime
    soc: float | None
    target_soc: float | None
    control: str
    fixed_a: float = 0.0


@dataclass
class SmartCharging:
    """The loop that plans every site and applies the plans to the stations."""

    sites: Sites
    sessions: OpenSessions
    links: StationLinks
    cars: CarBattery
    bus: EventBus
    clock: Clock
    settings: EnergySettings = field(default_factory=EnergySettings)
    stations: dict[str, StationControl] = field(default_factory=dict)
    sent: dict[int, Sent] = field(default_factory=dict)
    plans: dict[str, SitePlan] = field(default_factory=dict)
    counters: dict[str, int] = field(
        default_factory=lambda: {"plans": 0, "profiles_sent": 0, "profiles_refused": 0, "plan_failures": 0}
    )
    _dirty: set[str] = field(default_factory=set)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _failing: set[str] = field(default_factory=set)

    # --- events ---

    def touch(self, site_id: str) -> None:
        """Re-plan this site soon (its settings, stations or goals changed)."""
        self._dirty.add(site_id)
        self._wake.set()

    def _station_event(self, event: Any) -> None:
        wiring = self.sites.wiring(event.station_id)
        if wiring is None:
            return
        if isinstance(event, StationConnectivityChanged) and event.online:
            # a station that comes back may have rebooted and lost its profiles: send them again
            for sent in self.sent.values():
                if sent.station_id == event.station_id:
                    sent.at_ms = 0
        self.touch(wiring.site_id)

    def subscribe(self) -> Callable[[], None]:
        """Listen to the charging events that change a plan; returns the unsubscribe function."""
        kinds = (
            ChargeSessionStarted,
            ChargeSessionUpdated,
            ChargeSessionEnded,
            ConnectorStatusChanged,
            StationConnectivityChanged,
        )
        unsubscribes = [self.bus.subscribe(kind, self._station_event) for kind in kinds]

        def unsubscribe() -> None:
            for u in unsubscribes:
                u()

        return unsubscribe

    # --- the loop ---

    async def run(self) -> None:
        """Re-plan marked sites after `settle_s`, and every site every `replan_every_s`."""
        unsubscribe = self.subscribe()
        for site in self.sites.all():
            self.touch(site.id)
        try:
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.replan_every_s)
                except TimeoutError:
                    pass
                self._wake.clear()
                await asyncio.sleep(self.settings.settle_s)
                now = self.clock.now_ms()
                every_ms = self.settings.replan_every_s * 1000
                due = self._dirty | {
                    s.id
                    for s in self.sites.all()
                    if now - (p.planned_ms if (p := self.plans.get(s.id)) else 0) >= every_ms
                }
                self._dirty = set()
                for site_id in sorted(due):
                    await self._replan_logged(site_id)
        finally:
            unsubscribe()

    async def _replan_logged(self, site_id: str) -> None:
        try:
            await self.replan(site_id)
            if site_id in self._failing:
                logger.warning("smart charging of site %s works again", site_id)
                self._failing.discard(site_id)
        except NotFound:
            self.plans.pop(site_id, None)  # deleted meanwhile
        except Exception as exc:
            self.counters["plan_failures"] += 1
            if site_id not in self._failing:
                logger.exception("smart charging of site %s failed, will retry: %s", site_id, exc)
                self._failing.add(site_id)

    def plan_of(self, site_id: str) -> SitePlan | None:
        """The site's latest plan, if it was planned since the platform started."""
        return self.plans.get(site_id)

    async def replan(self, site_id: str) -> SitePlan:
        """Plan one site now and send the currents that changed; returns the plan."""
        site = self.sites.get(site_id)
        wiring = {w.station_id: w for w in self.sites.stations_of(site_id)}
        rows = await self.sessions.active_at(list(wiring))
        goals = await self.sites.goals([r.id for r in rows])
        now = self.clock.now()
        now_ms = int(now.timestamp() * 1000)
        period_s = self.settings.period_s
        periods = max(1, math.ceil(self.settings.horizon_h * 3600 / period_s))
        prices = self._prices(site, now_ms, periods, period_s)

        items = [self._item(site, r, wiring[r.station_id], goals.get(r.id), now, now_ms) for r in rows]
        limits = site.limits
        for item in items:
            if item.control != "planned":
                limits = reserve(limits, item.wiring.circuit, item.wiring.phases, item.fixed_a)
        planned = [i for i in items if i.control == "planned"]
        sessions = [_session(i, site) for i in planned]
        result = await asyncio.to_thread(
            plan,
            sessions,
            limits,
            Tariff(tuple(prices)),
            periods,
            period_s,
            site.objective,
            start=now,
            time_budget_s=self.settings.time_budget_s,
        )
        self.counters["plans"] += 1
        await self._apply(planned, result, site, now_ms)
        self._forget_gone({r.id for r in rows}, set(wiring))
        site_plan = self._site_plan(site, items, result, now_ms, prices)
        self.plans[site_id] = site_plan
        return site_plan

    # --- inputs ---

    def _prices(self, site: Site, now_ms: int, periods: int, period_s: int) -> list[float]:
        tariff = self.sessions.tariffs().get(site.tariff_id) if site.tariff_id is not None else None
        if tariff is None:
            return [FLAT_PRICE] * periods
        return energy_prices(tariff[1], now_ms, periods, period_s)

    def _item(
        self, site: Site, row: ChargeSession, wiring: Wiring, goal: Goal | None, now: datetime, now_ms: int
    ) -> _Row:
        soc, capacity, car_limit = self.cars.battery(row.vin) if row.vin else (None, None, None)
        if soc is None:
            soc = row.soc_last
        delivered = row.energy_wh / 1000
        target = goal.target_soc if goal is not None and goal.target_soc is not None else site.target_soc
        if car_limit is not None:
            target = min(target, car_limit)
        if goal is not None and goal.energy_kwh is not None:
            wanted = goal.energy_kwh - delivered
        elif soc is not None and capacity:
            wanted = (target - soc) / 100 * capacity
        else:
            wanted = site.default_energy_kwh - delivered
        departure = self._departure(site, row, goal, now)
        item = _Row(row, wiring, max(0.0, wanted), departure, soc, target, "planned")
        station = self.stations.setdefault(row.station_id, StationControl())
        if not self.links.online(row.station_id):
            sent = self.sent.get(row.id)
            item.control, item.fixed_a = "station offline", float(sent.amps) if sent else wiring.max_a
        elif station.refusing_until_ms > now_ms:
            item.control, item.fixed_a = "not controllable", wiring.max_a
        return item

    def _departure(self, site: Site, row: ChargeSession, goal: Goal | None, now: datetime) -> datetime:
        if goal is not None and goal.departure_ms is not None:
            departure = datetime.fromtimestamp(goal.departure_ms / 1000, now.tzinfo)
        elif (ready := site.departure_after(now)) is not None:
            departure = ready
        else:
            started = datetime.fromtimestamp(row.start_ms / 1000, now.tzinfo)
            departure = started + timedelta(hours=site.default_stay_h)
        if departure <= now + timedelta(seconds=self.settings.period_s):
            departure = now + timedelta(seconds=OVERSTAY_S)
        return departure

    # --- applying ---

    async def _apply(self, planned: list[_Row], result: Plan, site: Site, now_ms: int) -> None:
        """Send the sessions whose current changed: every cut first, then the raises."""
        cuts: list[tuple[_Row, int]] = []
        raises: list[tuple[_Row, int]] = []
        resend_ms = self.settings.resend_after_s * 1000
        for item in planned:
            amps = result.first_a[str(item.row.id)]
            sent = self.sent.get(item.row.id)
            if sent is None or amps < sent.amps or now_ms - sent.at_ms >= resend_ms:
                (cuts if sent is None or amps <= sent.amps else raises).append((item, amps))
            elif amps >= sent.amps + self.settings.raise_by_a or (sent.amps == 0 and amps > 0):
                raises.append((item, amps))
        for batch in (cuts, raises):
            if batch:
                await asyncio.gather(*(self._send(item, amps, site, now_ms) for item, amps in batch))

    async def _send(self, item: _Row, amps: int, site: Site, now_ms: int) -> None:
        row, station_id = item.row, item.row.station_id
        station = self.stations.setdefault(station_id, StationControl())
        what = "the charging profile"
        try:
            control = self.links.control(station_id)
            status = await answer(
                station_id, what, control.set_charging_limit(self._profile(item, amps, station.unit, site))
            )
            if status != "Accepted" and station.unit == "A":
                # some stations take only watts (1.6 ChargingScheduleAllowedChargingRateUnit)
                status = await answer(
                    station_id, what, control.set_charging_limit(self._profile(item, amps, "W", site))
                )
                if status == "Accepted":
                    station.unit = "W"
        except StationRefused as exc:
            status = exc.code
        except SmartEVError as exc:  # offline, no answer in time
            logger.info("station %s did not take the new charging profile: %s", station_id, exc)
            return
        if status != "Accepted":
            self._refused(station_id, station, status, now_ms)
            return
        self.counters["profiles_sent"] += 1
        station.refusals, station.reason = 0, None
        self.sent[row.id] = sent = Sent(station_id, amps, now_ms)
        if now_ms - station.verified_ms >= self.settings.verify_every_s * 1000:
            station.verified_ms = now_ms
            await self._verify(item, sent, station, site, control, now_ms)

    def _profile(self, item: _Row, amps: int, unit: str, site: Site) -> ChargingLimit:
        limit = float(amps) if unit == "A" else amps * site.voltage_v * len(item.wiring.phases)
        return ChargingLimit(
            limit=limit,
            unit="A" if unit == "A" else "W",
            evse_id=item.row.evse_id,
            purpose="TxProfile",
            transaction_id=item.row.transaction_id,
            profile_id=PROFILE_ID_BASE + item.row.evse_id,
            stack_level=STACK_LEVEL,
        )

    def _refused(self, station_id: str, station: StationControl, status: str, now_ms: int) -> None:
        self.counters["profiles_refused"] += 1
        station.refusals += 1
        if station.refusals >= REFUSALS_TO_GIVE_UP and station.refusing_until_ms <= now_ms:
            station.refusing_until_ms = now_ms + int(self.settings.retry_refusing_s * 1000)
            station.reason = f"the station refused charging profiles ({status})"
            station.refusals = 0
            logger.warning(
                "station %s refuses charging profiles (%s): planned around as fixed load", station_id, status
            )

    async def _verify(
        self,
        item: _Row,
        sent: Sent,
        station: StationControl,
        site: Site,
        control: ChargerControl,
        now_ms: int,
    ) -> None:
        """Read what the station will apply; one that ignores our profile is treated as uncontrollable."""
        try:
            schedule = await answer(
                item.row.station_id,
                "the composite schedule",
                control.composite_schedule(item.row.evse_id, self.settings.period_s, station.unit),
            )
        except SmartEVError as exc:
            logger.info("station %s: no composite schedule: %s", item.row.station_id, exc)
            return
        limit = first_limit(schedule.get("schedule"))
        if limit is None:
            return
        applied = limit if station.unit == "A" else limit / (site.voltage_v * len(item.wiring.phases))
        sent.applied_a = round(applied, 1)
        if applied > sent.amps + 0.5:
            station.refusing_until_ms = now_ms + int(self.settings.retry_refusing_s * 1000)
            station.reason = f"the station applies {applied:.1f} A where {sent.amps} A was sent"
            logger.warning("station %s ignores its charging profile: %s", item.row.station_id, station.reason)

    def _forget_gone(self, open_ids: set[int], site_stations: set[str]) -> None:
        """Drop what was sent to sessions of this site that have ended."""
        gone = [k for k, s in self.sent.items() if s.station_id in site_stations and k not in open_ids]
        for session_id in gone:
            del self.sent[session_id]

    # --- the plan as shown ---

    def _site_plan(
        self, site: Site, items: list[_Row], result: Plan, now_ms: int, prices: list[float]
    ) -> SitePlan:
        periods = len(prices)
        out: list[PlannedSession] = []
        load = {p.value: [0.0] * periods for p in sorted(ALL_PHASES)}
        for item in items:
            sid = str(item.row.id)
            planned = item.control == "planned"
            currents = result.currents_a[sid] if planned else (item.fixed_a,) * periods
            for phase in item.wiring.phases:
                column = load[phase.value]
                for t, a in enumerate(currents):
                    column[t] += a
            sent = self.sent.get(item.row.id)
            station = self.stations.get(item.row.station_id)
            reasons = (
                result.explanations[sid]
                if planned
                else (station.reason if station and station.reason else item.control,)
            )
            out.append(
                PlannedSession(
                    session_id=item.row.id,
                    station_id=item.row.station_id,
                    evse_id=item.row.evse_id,
                    transaction_id=item.row.transaction_id,
                    vin=item.row.vin,
                    user_id=item.row.user_id,
                    control=item.control,
                    energy_wanted_kwh=round(item.wanted_kwh, 2),
                    energy_planned_kwh=round(result.energy_kwh[sid], 2) if planned else 0.0,
                    energy_delivered_kwh=round(item.row.energy_wh / 1000, 2),
                    departure_ms=int(item.departure.timestamp() * 1000),
                    soc=item.soc,
                    target_soc=item.target_soc,
                    current_a=result.first_a[sid] if planned else None,
                    sent_a=sent.amps if sent else None,
                    applied_a=sent.applied_a if sent else None,
                    currents_a=tuple(round(a, 2) for a in currents),
                    reasons=tuple(reasons),
                    phases="".join(sorted(p.value for p in item.wiring.phases)),
                )
            )
        return SitePlan(
            site_id=site.id,
            planned_ms=now_ms,
            start_ms=now_ms,
            period_s=result.period_s,
            prices=tuple(prices),
            limit_a=(
                site.limits.limit_a(Phase.A),
                site.limits.limit_a(Phase.B),
                site.limits.limit_a(Phase.C),
            ),
            load_a={k: tuple(round(a, 2) for a in v) for k, v in load.items()},
            sessions=tuple(out),
            solver=result.solver,
            solve_s=round(result.solve_s, 4),
            objective=site.objective.value,
        )


def _session(item: _Row, site: Site) -> Session:
    return Session(
        id=str(item.row.id),
        station=item.row.station_id,
        connector=item.row.evse_id,
        energy_wanted_kwh=item.wanted_kwh,
        departure=item.departure,
        max_a=item.wiring.max_a,
        min_a=item.wiring.min_a,
        phases=item.wiring.phases,
        voltage_v=site.voltage_v,
        circuit=item.wiring.circuit,
    )


def reserve(limits: Limit, circuit: str | None, phases: frozenset[Phase], amps: float) -> Limit:
    """The limit tree with `amps` taken on `phases` from the circuit and every node above it."""
    target = circuit or limits.id

    def visit(node: Limit) -> tuple[Limit, bool]:
        children, below = [], False
        for child in node.children:
            new, hit = visit(child)
            children.append(new)
            below = below or hit
        if not (below or node.id == target):
            return node, False
        caps = tuple(
            max(0.0, node.limit_a(p) - (amps if p in phases else 0.0)) for p in (Phase.A, Phase.B, Phase.C)
        )
        return replace(node, children=tuple(children), phase_max_a=(caps[0], caps[1], caps[2])), True

    return visit(limits)[0]


def first_limit(schedule: Any) -> float | None:
    """The limit in force now in a composite schedule answer (1.6 or 2.0.1, as the `ocpp` library returns it)."""
    if not isinstance(schedule, dict):
        return None
    periods = schedule.get("charging_schedule_period")
    if not isinstance(periods, list) or not periods:
        return None
    first = min(periods, key=lambda p: p.get("start_period", 0))
    limit = first.get("limit")
    return float(limit) if isinstance(limit, int | float) else None
