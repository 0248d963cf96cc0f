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
    present = np.flatnonzero((problem.departure > period) & (remaining > 1e-9))
    laxity = (problem.departure[present] - period) - remaining[present] / np.maximum(
        problem.max_a[present], 1e-9
    )
    return present[np.lexsort((present, problem.departure[present], laxity))]


def solve_llf(problem: Problem) -> FloatArray:
    """A schedule (session × period, amps) that respects every limit, built greedily by least laxity."""
    remaining = problem.need.copy()
    schedule = np.zeros((len(problem.ids), problem.periods))
    session_rows = [problem.session_rows(s) for s in range(len(problem.ids))]
    for period in range(problem.periods):
        headroom = problem.row_limit.copy()
        for s in laxity_order(problem, remaining, period):
            rows = session_rows[s]
            room = float(headroom[rows].min()) if rows.size else np.inf
            current = min(problem.max_a[s], remaining[s], room)
            if current > 0:
                schedule[s, period] = current
                headroom[rows] -= current
                remaining[s] -= current
    return schedule
