"""The fast fallback: least-laxity-first, period by period, when the LP fails or runs out of time.

Laxity is the slack a session has left: periods until departure minus the periods it still needs at full
current. Serving the least slack first is the classic online heuristic (and one of ACN-Sim's baselines); it
needs no solver and runs in milliseconds, so the station always gets a plan.
"""

from __future__ import annotations

import numpy as np

from smartev.energy.problem import FloatArray, IntArray, Problem


def laxity_order(problem: Problem, remaining: FloatArray, period: int) -> IntArray:
    """Sessions present in `period` that still want energy, least laxity first (then earliest departure, id)."""
    present = np.flatnonzero(problem.present(period) & (remaining > 1e-9))
    laxity = (problem.departure[present] - period) - remaining[present] / np.maximum(
        problem.max_a[present], 1e-9
    )
    return present[np.lexsort((present, problem.departure[present], laxity))]


def solve_llf(problem: Problem, row_limit: FloatArray | None = None) -> FloatArray:
    """A schedule (session × period, amps) that respects every limit, built greedily by least laxity.

    Every session starts at 0 A, which every row allows; adding current to a session only uses up the rows
    it has a positive weight in (a negative weight relieves the row), so checking those keeps every limit.
    `row_limit` (row × period) overrides the problem's limits per period.
    """
    limits = problem.period_limits() if row_limit is None else row_limit
    remaining = problem.need.copy()
    schedule = np.zeros((len(problem.ids), problem.periods))
    for period in range(problem.periods):
        headroom = limits[:, period].copy()
        for s in laxity_order(problem, remaining, period):
            current = min(problem.max_a[s], remaining[s], problem.room(headroom, s))
            if current > 0:
                schedule[s, period] = current
                headroom -= problem.rows[:, s] * current
                remaining[s] -= current
    return schedule
