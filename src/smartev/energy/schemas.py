"""Request and response bodies of the smart-charging API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from smartev.energy.domain import Objective


class SiteIn(BaseModel):
    """A site's settings: its limits, what to favour, and the defaults for sessions nobody described."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    limits: dict[str, Any] = Field(
        description='the tree of limits: {"id": "site", "max_a": 63, "phase_max_a": [63, 63, 40]?, '
        '"circuits": [{"id": "garage", "max_a": 32, "circuits": []}]}; currents per phase, in A',
        examples=[{"id": "site", "max_a": 63, "circuits": [{"id": "garage", "max_a": 32}]}],
    )
    objective: Objective = Field(
        Objective.MAX_ENERGY,
        description="max_energy: the most energy, early; cheapest: the most energy, cheaply",
    )
    tariff: str | None = Field(
        None, description="name of the tariff whose time-of-use prices the plan follows"
    )
    voltage_v: float = Field(230.0, gt=0, le=1000, description="phase-to-neutral voltage")
    timezone: str = Field("UTC", description="IANA time zone of ready_by, e.g. Europe/Berlin")
    ready_by: str | None = Field(
        None,
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description='cars are ready by this time of day, "07:00" (a home)',
    )
    target_soc: float = Field(100.0, gt=0, le=100, description="how full, when the driver did not say")
    default_stay_h: float = Field(8.0, gt=0, le=168, description="how long a car stays, when nobody said")
    default_energy_kwh: float = Field(
        20.0, ge=0, le=500, description="the energy a car wants when neither driver nor car says"
    )
    owner: str | None = Field(None, description="operators only: the email of the user the site belongs to")


class SiteCreate(SiteIn):
    """A new site."""

    id: str = Field(min_length=1, max_length=48, pattern=r"^[A-Za-z0-9_\-.:]+$")


class SiteStationIn(BaseModel):
    """Where a station hangs in the site."""

    model_config = ConfigDict(extra="forbid")

    circuit: str | None = Field(
        None, description="the id of the limit it hangs from; none: the site connection"
    )
    phases: str = Field("ABC", description='the phases it draws on: "ABC", or one phase such as "A"')
    max_a: float = Field(32.0, gt=0, le=1000, description="the most current per phase it may draw")
    min_a: float = Field(
        6.0, ge=0, le=1000, description="the least pilot current it accepts (IEC 61851: 6 A)"
    )


class SiteStationOut(SiteStationIn):
    """A station of a site, with whether the plan can steer it."""

    station_id: str
    online: bool
    controllable: bool
    reason: str | None = None


class SiteOut(SiteIn):
    """A site as the API shows it."""

    id: str
    stations: list[SiteStationOut]


class GoalIn(BaseModel):
    """What the driver wants from this session; anything left out follows the site's defaults."""

    model_config = ConfigDict(extra="forbid")

    departure: datetime | None = Field(None, description="when the car leaves (with a time zone)")
    target_soc: float | None = Field(None, gt=0, le=100, description="how full, in %")
    energy_kwh: float | None = Field(None, gt=0, le=500, description="or: how much energy this session")


class GoalOut(GoalIn):
    """The driver's goal as stored."""

    session_id: int


class PlannedSessionOut(BaseModel):
    """One session of a plan: what it wants, what it gets now and over the horizon, and why."""

    session_id: int
    station_id: str
    evse_id: int
    vin: str | None
    control: str = Field(
        description="planned, not controllable (the station refuses profiles), station offline"
    )
    energy_wanted_kwh: float
    energy_planned_kwh: float = Field(description="what the plan delivers by departure")
    energy_delivered_kwh: float
    departure: datetime
    soc: float | None
    target_soc: float | None
    current_a: int | None = Field(description="the current to apply now, whole amps (0 = paused)")
    sent_a: int | None = Field(description="the current the station last accepted")
    applied_a: float | None = Field(description="the current the station's composite schedule reports")
    currents_a: list[float] = Field(description="the current of every period")
    reasons: list[str]
    phases: str


class SitePlanOut(BaseModel):
    """A site's plan: every session's current per period, the load per phase against the limit, prices."""

    site_id: str
    planned_at: datetime
    start: datetime
    period_s: int
    objective: str
    solver: str = Field(description="highs (the LP), or llf (the fallback)")
    solve_s: float
    prices: list[float]
    limit_a: list[float] = Field(description="the site connection's limit on phases A, B, C")
    load_a: dict[str, list[float]] = Field(description="per phase, the planned current of every period")
    sessions: list[PlannedSessionOut]


class SessionPlanOut(BaseModel):
    """One charge session's part of its site's plan, with the prices it is planned against.

    A session at a station in no site, or one that no longer charges, has no plan: `session` is null.
    """

    site_id: str | None
    start: datetime | None
    period_s: int | None
    prices: list[float]
    goal: GoalOut | None
    session: PlannedSessionOut | None
