"""HTTP routes of smart charging: sites and their limits, stations' wiring, drivers' goals, the plans.

Operators manage every site. An owner may make a site of their own home ("80 % by 7:00, cheapest hours")
with their own chargers in it, and set the departure and target of their own sessions wherever they charge.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import time
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Path, Request, status

from smartev.accounts.dependencies import CurrentUser, is_staff
from smartev.accounts.models import User
from smartev.clock import datetime_to_ms, ms_to_datetime
from smartev.csms.router import visible_session, visible_station
from smartev.energy.controller import PlannedSession, SitePlan
from smartev.energy.schemas import (
    GoalIn,
    GoalOut,
    PlannedSessionOut,
    SessionPlanOut,
    SiteCreate,
    SiteIn,
    SiteOut,
    SitePlanOut,
    SiteStationIn,
    SiteStationOut,
)
from smartev.energy.sites import (
    Goal,
    Site,
    Wiring,
    limits_from_dict,
    limits_to_dict,
    phases_from_text,
    phases_to_text,
)
from smartev.errors import Forbidden, InvalidInput, NotFound

if TYPE_CHECKING:
    from smartev.app import Platform

router = APIRouter(prefix="/api/v1", tags=["smart charging"])
SessionId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def _visible_site(p: Platform, user: User, site_id: str) -> Site:
    try:
        site = p.sites.get(site_id)
    except NotFound:
        site = None
    if site is None or not (is_staff(user) or site.owner_id == user.id):
        raise NotFound(f"no site {site_id}")
    return site


async def _site(p: Platform, user: User, site_id: str, body: SiteIn) -> Site:
    tariff_id = None
    if body.tariff is not None:
        tariff_id = next((i for i, (name, _) in p.charging.tariffs().items() if name == body.tariff), None)
        if tariff_id is None:
            raise InvalidInput(f"no tariff named {body.tariff}", ("body", "tariff"))
    owner_id: int | None = user.id
    if body.owner is not None:
        if not is_staff(user):
            raise Forbidden("only operators may make a site for someone else")
        owner = await p.accounts.by_email(body.owner)
        if owner is None:
            raise InvalidInput(f"no user with email {body.owner}", ("body", "owner"))
        owner_id = owner.id
    elif is_staff(user):
        owner_id = None  # an operator's site belongs to the operator, not to one staff member
    return Site(
        id=site_id,
        name=body.name,
        owner_id=owner_id,
        limits=limits_from_dict(body.limits),
        objective=body.objective,
        tariff_id=tariff_id,
        voltage_v=body.voltage_v,
        timezone=body.timezone,
        ready_by=time.fromisoformat(body.ready_by) if body.ready_by else None,
        target_soc=body.target_soc,
        default_stay_h=body.default_stay_h,
        default_energy_kwh=body.default_energy_kwh,
    )


async def _site_out(p: Platform, site: Site, owners: dict[int, str] | None = None) -> SiteOut:
    tariffs = p.charging.tariffs()
    if owners is None:
        owners = await p.accounts.emails({site.owner_id} if site.owner_id else set())
    stations = []
    for w in p.sites.stations_of(site.id):
        control = p.smart_charging.stations.get(w.station_id)
        refusing = control is not None and control.refusing_until_ms > p.clock.now_ms()
        stations.append(
            SiteStationOut(
                station_id=w.station_id,
                circuit=w.circuit,
                phases=phases_to_text(w.phases),
                max_a=w.max_a,
                min_a=w.min_a,
                online=p.central.online(w.station_id),
                controllable=not refusing,
                reason=control.reason if control is not None and refusing else None,
            )
        )
    return SiteOut(
        id=site.id,
        name=site.name,
        limits=limits_to_dict(site.limits),
        objective=site.objective,
        tariff=tariffs[site.tariff_id][0] if site.tariff_id in tariffs else None,
        voltage_v=site.voltage_v,
        timezone=site.timezone,
        ready_by=f"{site.ready_by:%H:%M}" if site.ready_by else None,
        target_soc=site.target_soc,
        default_stay_h=site.default_stay_h,
        default_energy_kwh=site.default_energy_kwh,
        owner=owners.get(site.owner_id) if site.owner_id else None,
        stations=stations,
    )


def _planned_out(s: PlannedSession) -> PlannedSessionOut:
    return PlannedSessionOut(
        session_id=s.session_id,
        station_id=s.station_id,
        evse_id=s.evse_id,
        vin=s.vin,
        control=s.control,
        energy_wanted_kwh=s.energy_wanted_kwh,
        energy_planned_kwh=s.energy_planned_kwh,
        energy_delivered_kwh=s.energy_delivered_kwh,
        departure=ms_to_datetime(s.departure_ms),
        soc=s.soc,
        target_soc=s.target_soc,
        current_a=s.current_a,
        sent_a=s.sent_a,
        applied_a=s.applied_a,
        currents_a=list(s.currents_a),
        reasons=list(s.reasons),
        phases=s.phases,
    )


async def _current_plan(p: Platform, site_id: str) -> SitePlan:
    plan = p.smart_charging.plan_of(site_id)
    return plan if plan is not None else await p.smart_charging.replan(site_id)


# --- sites ---


@router.post(
    "/sites",
    response_model=SiteOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a site: its limits (connection → circuits → phases), objective, tariff, defaults",
)
async def create_site(body: SiteCreate, request: Request, user: CurrentUser) -> SiteOut:
    p = _platform(request)
    site = await p.sites.save(await _site(p, user, body.id, body), p.clock.now_ms(), create=True)
    p.smart_charging.touch(site.id)
    return await _site_out(p, site)


@router.get("/sites", response_model=list[SiteOut], summary="Sites I may see (operators: all)")
async def list_sites(request: Request, user: CurrentUser) -> list[SiteOut]:
    p = _platform(request)
    sites = [s for s in p.sites.all() if is_staff(user) or s.owner_id == user.id]
    owners = await p.accounts.emails({s.owner_id for s in sites if s.owner_id})
    return [await _site_out(p, s, owners) for s in sites]


@router.get("/sites/{site_id}", response_model=SiteOut, summary="One site with its stations")
async def get_site(site_id: str, request: Request, user: CurrentUser) -> SiteOut:
    p = _platform(request)
    return await _site_out(p, _visible_site(p, user, site_id))


@router.put(
    "/sites/{site_id}", response_model=SiteOut, summary="Change a site's limits, objective or defaults"
)
async def update_site(site_id: str, body: SiteIn, request: Request, user: CurrentUser) -> SiteOut:
    p = _platform(request)
    current = _visible_site(p, user, site_id)
    site = await _site(p, user, site_id, body)
    if body.owner is None:
        site = replace(site, owner_id=current.owner_id)
    site = await p.sites.save(site, p.clock.now_ms(), create=False)
    p.smart_charging.touch(site_id)
    return await _site_out(p, site)


@router.delete("/sites/{site_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a site")
async def delete_site(site_id: str, request: Request, user: CurrentUser) -> None:
    p = _platform(request)
    _visible_site(p, user, site_id)
    await p.sites.delete(site_id)


@router.put(
    "/sites/{site_id}/stations/{station_id}",
    response_model=SiteOut,
    summary="Put a station into the site: the circuit it hangs from, its phases and current range",
)
async def wire_station(
    site_id: str, station_id: str, body: SiteStationIn, request: Request, user: CurrentUser
) -> SiteOut:
    p = _platform(request)
    site = _visible_site(p, user, site_id)
    visible_station(p, user, station_id)
    if body.min_a > body.max_a:
        raise InvalidInput("min_a must not be above max_a", ("body", "min_a"))
    previous = p.sites.wiring(station_id)
    await p.sites.wire(
        Wiring(station_id, site.id, body.circuit, phases_from_text(body.phases), body.max_a, body.min_a)
    )
    p.smart_charging.touch(site.id)
    if previous is not None and previous.site_id != site.id:
        p.smart_charging.touch(previous.site_id)
    return await _site_out(p, site)


@router.delete(
    "/sites/{site_id}/stations/{station_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Take a station out of the site (it is no longer planned)",
)
async def unwire_station(site_id: str, station_id: str, request: Request, user: CurrentUser) -> None:
    p = _platform(request)
    _visible_site(p, user, site_id)
    await p.sites.unwire(site_id, station_id)
    p.smart_charging.touch(site_id)


@router.get(
    "/sites/{site_id}/plan",
    response_model=SitePlanOut,
    summary="The site's plan: current per session per period against the limit and the price, and why",
)
async def site_plan(site_id: str, request: Request, user: CurrentUser) -> SitePlanOut:
    p = _platform(request)
    _visible_site(p, user, site_id)
    plan = await _current_plan(p, site_id)
    return SitePlanOut(
        site_id=plan.site_id,
        planned_at=ms_to_datetime(plan.planned_ms),
        start=ms_to_datetime(plan.start_ms),
        period_s=plan.period_s,
        objective=plan.objective,
        solver=plan.solver,
        solve_s=plan.solve_s,
        prices=list(plan.prices),
        limit_a=list(plan.limit_a),
        load_a={k: list(v) for k, v in plan.load_a.items()},
        sessions=[_planned_out(s) for s in plan.sessions],
    )


# --- a driver's goal ---


def _goal_out(goal: Goal) -> GoalOut:
    return GoalOut(
        session_id=goal.session_id,
        departure=ms_to_datetime(goal.departure_ms) if goal.departure_ms is not None else None,
        target_soc=goal.target_soc,
        energy_kwh=goal.energy_kwh,
    )


@router.put(
    "/charging-sessions/{session_id}/goal",
    response_model=GoalOut,
    summary="Set when the car leaves and how full it should be (or how much energy); re-plans at once",
)
async def set_goal(session_id: SessionId, body: GoalIn, request: Request, user: CurrentUser) -> GoalOut:
    p = _platform(request)
    row = await visible_session(p, user, session_id)
    if row.status != "active":
        raise InvalidInput(
            "this session has ended; a goal is for a session that is charging", ("path", "session_id")
        )
    if body.departure is not None and body.departure.tzinfo is None:
        raise InvalidInput(
            "give the departure with its time zone, e.g. 2026-11-22T07:00:00+01:00", ("body", "departure")
        )
    now_ms = p.clock.now_ms()
    departure_ms = datetime_to_ms(body.departure) if body.departure is not None else None
    if departure_ms is not None and departure_ms <= now_ms:
        raise InvalidInput("the departure must be in the future", ("body", "departure"))
    goal = Goal(session_id, departure_ms, body.target_soc, body.energy_kwh)
    await p.sites.set_goal(goal, user.id, now_ms)
    wiring = p.sites.wiring(row.station_id)
    if wiring is not None:
        await p.smart_charging.replan(wiring.site_id)
    return _goal_out(goal)


@router.get(
    "/charging-sessions/{session_id}/plan",
    response_model=SessionPlanOut,
    summary="This session's plan: current per period, the prices, the driver's goal, and why "
    "(session null when its station is in no site or it no longer charges)",
)
async def session_plan(session_id: SessionId, request: Request, user: CurrentUser) -> SessionPlanOut:
    p = _platform(request)
    row = await visible_session(p, user, session_id)
    goals = await p.sites.goals([session_id])
    goal = _goal_out(goals[session_id]) if session_id in goals else None
    wiring = p.sites.wiring(row.station_id)
    if wiring is None or row.status != "active":
        return SessionPlanOut(site_id=None, start=None, period_s=None, prices=[], goal=goal, session=None)
    plan = await _current_plan(p, wiring.site_id)
    mine = next((s for s in plan.sessions if s.session_id == session_id), None)
    if mine is None:
        plan = await p.smart_charging.replan(wiring.site_id)  # it started after the last plan
        mine = next((s for s in plan.sessions if s.session_id == session_id), None)
    return SessionPlanOut(
        site_id=plan.site_id,
        start=ms_to_datetime(plan.start_ms),
        period_s=plan.period_s,
        prices=list(plan.prices),
        goal=goal,
        session=_planned_out(mine) if mine is not None else None,
    )
