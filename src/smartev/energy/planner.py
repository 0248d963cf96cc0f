"""Plan the charging current of every session: solve, make the first period whole amps, explain.

`plan()` is a pure function of its inputs (apart from the time budget): re-run it on every event (arrival,
departure, meter value, price change) and periodically, and apply `Plan.first_a` to the stations.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from smartev.energy.domain import Limit, LinearLimit, Objective, Plan, Session, SiteForecast, Tariff
from smartev.energy.fallback import laxity_order, solve_llf
from smartev.energy.lp import solve_lp
from smartev.energy.problem import BoolArray, FloatArray, Problem, compile_problem

EPS = 1e-6


def plan(
    sessions: Sequence[Session],
    limits: Limit,
    prices: Tariff,
    periods: int,
    period_s: int,
    objective: Objective = Objective.MAX_ENERGY,
    *,
    start: datetime | None = None,
    time_budget_s: float = 0.5,
    constraints: Sequence[LinearLimit] = (),
    forecast: SiteForecast | None = None,
) -> Plan:
    """Plan the current of each session over `periods` periods of `period_s` seconds, from now.

    The LP (HiGHS) plans the whole horizon; if it fails or exceeds `time_budget_s`, least-laxity-first does.
    The first period is then made applicable: whole amps, each session either at or above its `min_a` or
    paused at 0 A, without exceeding any limit or the energy a session still wants.

    Args:
        limits: the root of the limit tree, i.e. the site connection.
        prices: the price of each period; it must cover at least `periods` periods.
        start: the time of period 0, needed only when a departure is given as a datetime.
        constraints: limits on weighted sums of station currents, beside the tree (see `LinearLimit`).
        forecast: house load and solar production per period; they move the site connection's limit, and
            drive `Objective.SOLAR` and the demand charge (`Tariff.demand_charge_per_kw`).

    Raises:
        ValueError: the inputs contradict each other (unknown circuit, duplicate ids, tariff too short).
    """
    began = time.perf_counter()
    problem = compile_problem(sessions, limits, prices, periods, period_s, start, constraints, forecast)
    schedule = solve_lp(problem, objective, time_budget_s)
    solver = "highs"
    if schedule is None:
        schedule, solver = solve_llf(problem), "llf"
    targets = schedule[:, 0].copy()
    # delivering early never costs energy, only (under CHEAPEST) money: there, only sessions left short fill
    short = schedule.sum(axis=1) < problem.need - EPS
    fill = np.ones(len(targets), dtype=bool) if objective is Objective.MAX_ENERGY else short
    first = quantise_first_period(problem, targets, fill)
    schedule[:, 0] = first
    _trim_to_need(problem, schedule)
    energy = schedule.sum(axis=1) * problem.kwh_per_a
    return Plan(
        period_s=period_s,
        currents_a={sid: tuple(float(a) for a in schedule[s]) for s, sid in enumerate(problem.ids)},
        first_a={sid: round(first[s]) for s, sid in enumerate(problem.ids)},
        energy_kwh={sid: float(energy[s]) for s, sid in enumerate(problem.ids)},
        explanations={
            sid: explain(problem, schedule, targets, s, objective) for s, sid in enumerate(problem.ids)
        },
        solver=solver,
        solve_s=time.perf_counter() - began,
    )


def quantise_first_period(problem: Problem, targets: FloatArray, fill: BoolArray) -> FloatArray:
    """Currents for period 0 that the chargers accept, each 0 or one of its levels, within every limit.

    A session's levels are whole amps from its `min_a` to its `max_a`, or the few pilots its charger takes.
    Sessions are served least laxity first. Each gets the highest level up to its target; one whose share
    falls below its lowest level is paused, and the current that frees is offered again: first to lift
    paused sessions to their lowest level, then to give back what rounding took. Whatever is still free then
    goes to the sessions marked in `fill` that can take more. Every session starts at 0 A and only ever
    gains current, checked against the rows it uses up, so no limit can break (a negative weight only helps).
    """
    n = len(problem.ids)
    cap = np.where(problem.present(0), np.minimum(problem.max_a, problem.need), 0.0)
    headroom = problem.period_limits()[:, 0].copy()
    current = np.zeros(n)
    order = laxity_order(problem, problem.need, 0)

    def raise_to(s: int, goal: float) -> None:
        limit = min(goal, cap[s], current[s] + problem.room(headroom, s)) + EPS
        levels = problem.levels[s]
        below = levels[levels <= limit]
        if below.size and below[-1] > current[s]:
            headroom[:] -= problem.rows[:, s] * (below[-1] - current[s])
            current[s] = below[-1]

    def level_up(s: int, target: float) -> float:
        levels = problem.levels[s]
        above = levels[levels >= target - EPS]
        return float(above[0]) if above.size else float(target)

    for s in order:
        raise_to(s, targets[s])
    for s in order:
        if current[s] == 0 and targets[s] > EPS and problem.levels[s].size:
            raise_to(s, float(problem.levels[s][0]))
    for s in order:
        if current[s] > 0:
            raise_to(s, level_up(s, targets[s]))
    for s in order:
        if fill[s]:
            raise_to(s, cap[s])
    return current


def _trim_to_need(problem: Problem, schedule: FloatArray) -> None:
    """Cut each session's latest currents so that the schedule never delivers more than it wants.

    Period 0 may have been rounded up to a level or to a minimum; the LP's later periods did not know. Lowering
    a current keeps every row where the session has a positive weight; where its weight is negative (its
    current relieved the row), the cut is limited to the row's slack, and a period that still ends up over a
    limit is repaired by lowering the currents that load it.
    """
    limits = problem.period_limits()
    relieving = problem.rows < 0
    for s in range(schedule.shape[0]):
        excess = float(schedule[s].sum() - problem.need[s])
        if excess <= EPS:
            continue
        rows = np.flatnonzero(relieving[:, s])
        for t in range(schedule.shape[1] - 1, 0, -1):
            if excess <= EPS:
                break
            cut = min(excess, float(schedule[s, t]))
            if rows.size:
                slack = limits[rows, t] - problem.rows[rows] @ schedule[:, t]
                cut = min(cut, float(np.min(np.maximum(slack, 0) / -problem.rows[rows, s])))
            schedule[s, t] -= cut
            excess -= cut
        for t in range(schedule.shape[1] - 1, 0, -1):
            if excess <= EPS:
                break
            cut = min(excess, float(schedule[s, t]))
            schedule[s, t] -= cut
            excess -= cut
            if rows.size:
                _repair_period(problem, schedule, limits, t)


def _repair_period(problem: Problem, schedule: FloatArray, limits: FloatArray, t: int) -> None:
    """Lower the currents loading any row that period `t` exceeds, until none does (0 A everywhere would)."""
    for _ in range(50):
        load = problem.rows @ schedule[:, t]
        over = np.flatnonzero(load > limits[:, t] + EPS)
        if not over.size:
            return
        r = int(over[0])
        users = problem.rows[r] > 0
        used = float(problem.rows[r, users] @ schedule[users, t])
        scale = max(0.0, 1 - (load[r] - limits[r, t]) / used) if used > 0 else 0.0
        schedule[users, t] *= scale * (1 - 1e-9)
    schedule[:, t] = 0.0


def explain(
    problem: Problem,
    schedule: FloatArray,
    targets: FloatArray,
    s: int,
    objective: Objective = Objective.MAX_ENERGY,
) -> tuple[str, ...]:
    """Why session `s` gets what it gets now, and whether it will be full by departure."""
    if problem.departure[s] == 0:
        return ("departed",)
    if problem.arrival[s] > 0:
        return ("not arrived yet",)
    if problem.need[s] <= EPS:
        return ("full",)
    now = schedule[s, 0]
    reasons: list[str] = []
    if now >= problem.max_a[s] - EPS:
        reasons.append("at its maximum current")
    else:
        headroom = problem.period_limits()[:, 0] - problem.rows @ schedule[:, 0]
        higher = problem.levels[s][problem.levels[s] > now + EPS]
        step = float(higher[0] - now) if higher.size else 1.0
        binding = [r for r in problem.session_rows(s) if headroom[r] < step * problem.rows[r, s] - EPS]
        if now == 0 and targets[s] > EPS:
            lowest = float(problem.levels[s][0]) if problem.levels[s].size else float(problem.min_a[s])
            reasons.append(f"paused: below {lowest:g} A")
        if binding:
            tightest = min(binding, key=lambda r: headroom[r])
            reasons.append(f"limited by {problem.row_names[tightest]}")
            if problem.site_rows[tightest] and problem.house_kw[0] > EPS:
                reasons.append("limited by house load")
        later = schedule[s, 1:] > EPS
        surplus = problem.solar_kw - problem.house_kw
        if objective is Objective.SOLAR and not binding and later.any() and surplus[1:][later].max() > EPS:
            reasons.append("waiting for solar")
        elif not binding and later.any() and problem.prices[1:][later].min() < problem.prices[0]:
            reasons.append("cheaper later")
    short_kwh = (problem.need[s] - schedule[s].sum()) * problem.kwh_per_a[s]
    if objective is Objective.FAIRNESS and short_kwh >= 0.01:
        reasons.append("sharing fairly")
    reasons.append("full by departure" if short_kwh < 0.01 else f"short by {short_kwh:.1f} kWh at departure")
    return tuple(reasons)
