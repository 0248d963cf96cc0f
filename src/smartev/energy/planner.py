"""Plan the charging current of every session: solve, make the first period whole amps, explain.

`plan()` is a pure function of its inputs (apart from the time budget): re-run it on every event (arrival,
departure, meter value, price change) and periodically, and apply `Plan.first_a` to the stations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from smartev.energy.fallback import laxity_order, solve_llf
from smartev.energy.lp import solve_lp
from smartev.energy.domain import Limit, Objective, Plan, Session, Tariff
from smartev.energy.problem import BoolArray, FloatArray, IntArray, Problem, compile_problem

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
) -> Plan:
    """Plan the current of each session over `periods` periods of `period_s` seconds, from now.

    The LP (HiGHS) plans the whole horizon; if it fails or exceeds `time_budget_s`, least-laxity-first does.
    The first period is then made applicable: whole amps, each session either at or above its `min_a` or
    paused at 0 A, without exceeding any limit or the energy a session still wants.

    Args:
        limits: the root of the limit tree, i.e. the site connection.
        prices: the price of each period; it must cover at least `periods` periods.
        start: the time of period 0, needed only when a departure is given as a datetime.

    Raises:
        ValueError: the inputs contradict each other (unknown circuit, duplicate ids, tariff too short).
    """
    began = time.perf_counter()
    problem = compile_problem(sessions, limits, prices, periods, period_s, start)
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
    _trim_to_need(schedule, problem.need)
    energy = schedule.sum(axis=1) * problem.kwh_per_a
    return Plan(
        period_s=period_s,
        currents_a={sid: tuple(float(a) for a in schedule[s]) for s, sid in enumerate(problem.ids)},
        first_a={sid: int(first[s]) for s, sid in enumerate(problem.ids)},
        energy_kwh={sid: float(energy[s]) for s, sid in enumerate(problem.ids)},
        explanations={sid: explain(problem, schedule, targets, s) for s, sid in enumerate(problem.ids)},
        solver=solver,
        solve_s=time.perf_counter() - began,
    )


def quantise_first_period(problem: Problem, targets: FloatArray, fill: BoolArray) -> IntArray:
    """Whole-amp currents for period 0, each 0 or within [min_a, max_a], that respect every limit.

    Sessions are served least laxity first. Each gets its target rounded down; one whose share falls below
    its minimum is paused, and the current that frees is offered again: first to lift paused sessions to
    their minimum, then to give back what rounding took. Whatever is still free then goes to the sessions
    marked in `fill` that can take more.
    """
    n = len(problem.ids)
    cap = np.where(problem.departure > 0, np.floor(np.minimum(problem.max_a, problem.need) + EPS), 0)
    floor_min = np.maximum(np.ceil(problem.min_a - EPS), 1)
    headroom = problem.row_limit.copy()
    current = np.zeros(n, dtype=np.int64)
    session_rows = [problem.session_rows(s) for s in range(n)]
    order = laxity_order(problem, problem.need, 0)

    def room(s: int) -> float:
        rows = session_rows[s]
        return math.floor(float(headroom[rows].min()) + EPS) if rows.size else math.inf

    def give(s: int, amps: float) -> None:
        amps = int(min(amps, cap[s] - current[s], room(s)))
        if amps > 0 and current[s] + amps >= floor_min[s]:
            current[s] += amps
            headroom[session_rows[s]] -= amps

    for s in order:
        give(s, math.floor(targets[s] + EPS))
    for s in order:
        if current[s] == 0 and targets[s] > EPS:
            give(s, floor_min[s])
    for s in order:
        if current[s] > 0:
            give(s, math.ceil(targets[s] - EPS) - current[s])
    for s in order:
        if fill[s]:
            give(s, cap[s] - current[s])
    return current


def _trim_to_need(schedule: FloatArray, need: FloatArray) -> None:
    """Cut each session's latest currents so that the schedule never delivers more than it wants.

    Period 0 may have been rounded up to a whole amp or to a minimum; the LP's later periods did not know.
    Only lowering currents keeps every limit, so this cannot break one.
    """
    for s in range(schedule.shape[0]):
        excess = float(schedule[s].sum() - need[s])
        for t in range(schedule.shape[1] - 1, 0, -1):
            if excess <= EPS:
                break
            cut = min(excess, float(schedule[s, t]))
            schedule[s, t] -= cut
            excess -= cut


def explain(problem: Problem, schedule: FloatArray, targets: FloatArray, s: int) -> tuple[str, ...]:
    """Why session `s` gets what it gets now, and whether it will be full by departure."""
    if problem.departure[s] == 0:
        return ("departed",)
    if problem.need[s] <= EPS:
        return ("full",)
    now = schedule[s, 0]
    reasons: list[str] = []
    if now >= problem.max_a[s] - EPS:
        reasons.append("at its maximum current")
    else:
        headroom = problem.row_limit - problem.rows @ schedule[:, 0]
        step = 1.0 if now > 0 else max(float(problem.min_a[s]), 1.0)
        binding = [r for r in problem.session_rows(s) if headroom[r] < step - EPS]
        if now == 0 and targets[s] > EPS:
            reasons.append(f"paused: below {problem.min_a[s]:g} A")
        if binding:
            tightest = min(binding, key=lambda r: headroom[r])
            reasons.append(f"limited by {problem.row_names[tightest]}")
        later = schedule[s, 1:] > EPS
        if not binding and later.any() and problem.prices[1:][later].min() < problem.prices[0]:
            reasons.append("cheaper later")
    short_kwh = (problem.need[s] - schedule[s].sum()) * problem.kwh_per_a[s]
    reasons.append("full by departure" if short_kwh < 0.01 else f"short by {short_kwh:.1f} kWh at departure")
    return tuple(reasons)
