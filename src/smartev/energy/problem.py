"""The planning problem as arrays: what the LP, the fallback and the quantiser all work on.

Sessions become columns, and every (limit node, phase) that could actually bind becomes one row of a matrix,
so that "the current under this node on this phase" is a matrix product. Rows of the limit tree are 0/1; rows
of `LinearLimit`s carry their weights, which may be negative (charging that session relieves the row). Rows
that no combination of sessions can exceed are dropped here, once, instead of being carried through every
period of the LP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from smartev.energy.domain import ALL_PHASES, Limit, LinearLimit, Session, SiteForecast, Tariff

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Problem:
    """Sessions, limits and prices over the horizon, as arrays indexed by session and row.

    Args:
        arrival: per session, the first period it may draw (0 unless the plan knows the future).
        departure: per session, the first period it may not draw (clipped to 0..periods).
        need: per session, the energy still wanted, in amp-periods (amps drawn over one period).
        kwh_per_a: per session, the energy of one amp over one period, in kWh.
        rows: matrix (row × session): how much one amp of each session counts against each limit.
        row_limit: the current each row allows.
        row_names: "circuit X (phase P)" for each row, for the explanations.
        levels: per session, the non-zero currents its charger accepts in period 0, ascending.
        limit_by_period: the current each row allows in each period (row × period): the site connection's
            rows lose the house load and gain the solar production of the period.
        site_rows: which rows are the site connection's (for "limited by house load").
        house_kw, solar_kw: the forecasts, per period.
        kw_per_a: per session, the power of one amp, in kW.
        demand_charge: price per kW of the horizon's peak grid import.
    """

    ids: tuple[str, ...]
    periods: int
    arrival: IntArray
    departure: IntArray
    max_a: FloatArray
    min_a: FloatArray
    need: FloatArray
    kwh_per_a: FloatArray
    rows: FloatArray
    row_limit: FloatArray
    row_names: tuple[str, ...]
    prices: FloatArray
    levels: tuple[FloatArray, ...]
    limit_by_period: FloatArray
    site_rows: BoolArray
    house_kw: FloatArray
    solar_kw: FloatArray
    kw_per_a: FloatArray
    period_h: float
    demand_charge: float

    def period_limits(self) -> FloatArray:
        """The current each row allows in each period (row × period)."""
        return self.limit_by_period

    def session_rows(self, s: int) -> IntArray:
        """The rows that limit session `s`: those its current uses up (a positive weight)."""
        return np.flatnonzero(self.rows[:, s] > 0)

    def present(self, period: int) -> BoolArray:
        """Which sessions are plugged in during `period`."""
        return (self.arrival <= period) & (self.departure > period)

    def room(self, headroom: FloatArray, s: int) -> float:
        """The most current session `s` can add before one of its rows runs out of `headroom`."""
        rows = self.session_rows(s)
        if not rows.size:
            return math.inf
        return float(np.min(np.maximum(headroom[rows], 0) / self.rows[rows, s]))


def compile_problem(
    sessions: Sequence[Session],
    limits: Limit,
    prices: Tariff,
    periods: int,
    period_s: int,
    start: datetime | None,
    constraints: Sequence[LinearLimit] = (),
    forecast: SiteForecast | None = None,
) -> Problem:
    """Check the inputs against each other and turn them into a `Problem`."""
    if periods < 1 or period_s < 1:
        raise ValueError("periods and period_s must be >= 1")
    if len(prices.prices_per_kwh) < periods:
        raise ValueError(f"the tariff covers {len(prices.prices_per_kwh)} periods, the plan {periods}")
    ids = tuple(s.id for s in sessions)
    if len(set(ids)) != len(ids):
        raise ValueError("session ids must be unique")
    nodes = {node.id: node for node in limits.nodes()}
    if len(nodes) != sum(1 for _ in limits.nodes()):
        raise ValueError("limit ids must be unique")
    unknown = {s.circuit for s in sessions if s.circuit is not None} - nodes.keys()
    if unknown:
        raise ValueError(f"sessions hang from unknown circuits: {sorted(unknown)}")

    phases_per_session = np.array([len(s.phases) for s in sessions], dtype=np.float64)
    kwh_per_a = np.array([s.voltage_v for s in sessions]) * phases_per_session * period_s / 3_600_000
    max_a = np.array([s.max_a for s in sessions], dtype=np.float64)
    departure = np.array(
        [min(max(_departure_period(s, start, period_s), 0), periods) for s in sessions], dtype=np.int64
    )
    arrival = np.minimum(np.array([s.arrival for s in sessions], dtype=np.int64), departure)

    forecast = forecast or SiteForecast()
    house_kw, solar_kw = _per_period(forecast.house_kw, periods), _per_period(forecast.solar_kw, periods)
    # what the house takes from (and the panels add to) the site connection, per phase, in amps
    site_shift = (solar_kw - house_kw) * 1000 / (3 * forecast.voltage_v)

    row_vectors: list[FloatArray] = []
    row_limit: list[float] = []
    row_names: list[str] = []
    site_rows: list[bool] = []
    for node_id, members in _members(limits, sessions).items():
        node = nodes[node_id]
        is_site = node_id == limits.id
        lowest = float(site_shift.min()) if is_site else 0.0
        for phase in sorted(ALL_PHASES):
            column = np.array([1.0 if s.id in members and phase in s.phases else 0.0 for s in sessions])
            # a row that every session at full current cannot exceed never binds
            if column @ max_a > node.limit_a(phase) + lowest:
                row_vectors.append(column)
                row_limit.append(node.limit_a(phase))
                row_names.append(f"circuit {node.id} (phase {phase})")
                site_rows.append(is_site)
    for constraint in constraints:
        column = np.array([constraint.weights.get(s.station, 0.0) for s in sessions], dtype=np.float64)
        if np.maximum(column, 0) @ max_a > constraint.max_a:
            row_vectors.append(column)
            row_limit.append(constraint.max_a)
            row_names.append(constraint.id)
            site_rows.append(False)
    site = np.array(site_rows, dtype=bool)
    base = np.array(row_limit, dtype=np.float64)
    by_period = np.repeat(base[:, None], periods, axis=1)
    by_period[site] = np.maximum(by_period[site] + site_shift[None, :], 0.0)

    return Problem(
        ids=ids,
        periods=periods,
        arrival=arrival,
        departure=departure,
        max_a=max_a,
        min_a=np.array([s.min_a for s in sessions], dtype=np.float64),
        need=np.array([s.energy_wanted_kwh for s in sessions], dtype=np.float64) / kwh_per_a,
        kwh_per_a=kwh_per_a,
        rows=np.array(row_vectors).reshape(len(row_vectors), len(sessions)),
        row_limit=base,
        row_names=tuple(row_names),
        prices=np.array(prices.prices_per_kwh[:periods], dtype=np.float64),
        levels=tuple(_levels(s) for s in sessions),
        limit_by_period=by_period,
        site_rows=site,
        house_kw=house_kw,
        solar_kw=solar_kw,
        kw_per_a=kwh_per_a * 3600 / period_s,
        period_h=period_s / 3600,
        demand_charge=prices.demand_charge_per_kw,
    )


def _per_period(values: Sequence[float], periods: int) -> FloatArray:
    out = np.zeros(periods)
    head = np.asarray(values[:periods], dtype=np.float64)
    out[: len(head)] = head
    return out


def _levels(session: Session) -> FloatArray:
    """The non-zero pilot currents the session's charger accepts, within its min_a..max_a, ascending."""
    if session.pilots_a is None:
        low = max(math.ceil(session.min_a - 1e-9), 1)
        return np.arange(low, math.floor(session.max_a + 1e-9) + 1, dtype=np.float64)
    allowed = {p for p in session.pilots_a if session.min_a - 1e-9 <= p <= session.max_a + 1e-9}
    return np.array(sorted(allowed), dtype=np.float64)


def _departure_period(session: Session, start: datetime | None, period_s: int) -> int:
    if isinstance(session.departure, int):
        return session.departure
    if start is None:
        raise ValueError(f"session {session.id} departs at a time; plan() then needs `start`")
    # only whole periods before departure count: the car must not be promised a period it leaves during
    return math.floor((session.departure - start).total_seconds() / period_s)


def _members(root: Limit, sessions: Sequence[Session]) -> dict[str, set[str]]:
    """For each node, the ids of the sessions that hang from it or from a node below it."""
    members: dict[str, set[str]] = {}

    def visit(node: Limit) -> set[str]:
        below = {s.id for s in sessions if (s.circuit or root.id) == node.id}
        for child in node.children:
            below |= visit(child)
        members[node.id] = below
        return below

    visit(root)
    return members
