"""The model-predictive LP: current per session per period that delivers the most energy, solved by HiGHS.

Variables are x[s, t], the current of session s in period t (only for periods before its departure, so
"nothing after departure" holds by construction), plus y[s, j], the energy delivered in the j-th slice of what
the session could get at most (its request, capped by its own and its circuits' current until departure).
Rewarding the first slices a little more than the last ones is a concave, piecewise-linear utility: with equal
energy on the table, the LP shares it between sessions (to within one slice) instead of starving one of them.
The lateness penalty is scaled by each session's own time to departure, so that in the periods everyone wants
the session leaving first is served first. The weights are ordered so that energy dominates everything else:

    energy (1)  >>  fairness (FAIRNESS)  >>  price or earliness (MAJOR)  >>  the other one (MINOR)

Fairness can only trade energy between sessions whose energy per amp differs by less than FAIRNESS (0.5 %);
on one site with one voltage that never happens, so the plan then delivers the maximum energy exactly.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]
from scipy.optimize import linprog  # type: ignore[import-untyped]

from smartev.energy.domain import Objective
from smartev.energy.problem import FloatArray, Problem

SLICES = 8
FAIRNESS = 0.005
MAJOR = 1e-3
MINOR = 1e-5


def solve_lp(problem: Problem, objective: Objective, time_limit_s: float) -> FloatArray | None:
    """The LP schedule (session × period, amps), or `None` when HiGHS fails or runs out of time."""
    n_sessions, periods = len(problem.ids), problem.periods
    dep = problem.departure
    n_x = int(dep.sum())
    if n_x == 0:
        return np.zeros((n_sessions, periods))
    x_session = np.repeat(np.arange(n_sessions), dep)
    x_period = np.arange(n_x) - np.repeat(np.cumsum(dep) - dep, dep)

    # energy weight per amp-period, relative to the session that gets the most energy out of an amp
    weight = problem.kwh_per_a / problem.kwh_per_a.max()
    span = float(np.ptp(problem.prices))
    price = (problem.prices - problem.prices.min()) / span if span > 0 else np.zeros(periods)
    price_w, late_w = (MAJOR, MINOR) if objective is Objective.CHEAPEST else (MINOR, MAJOR)
    lateness = (x_period + 1) / dep[x_session]
    cost_x = weight[x_session] * (price_w * price[x_period] + late_w * lateness)
    slice_bonus = 1 + FAIRNESS * (SLICES - np.arange(SLICES)) / SLICES
    cost_y = -(weight[:, None] * slice_bonus[None, :]).ravel()

    # limits: one row per (limit row, period), over the sessions present in that period
    ub_rows, ub_cols = [], []
    for r in range(len(problem.row_limit)):
        counted = problem.rows[r, x_session] > 0
        ub_rows.append(r * periods + x_period[counted])
        ub_cols.append(np.flatnonzero(counted))
    n_ub = len(problem.row_limit) * periods
    rows_i = np.concatenate(ub_rows) if ub_rows else np.zeros(0, dtype=np.int64)
    cols_i = np.concatenate(ub_cols) if ub_cols else np.zeros(0, dtype=np.int64)
    a_ub = sp.csr_array((np.ones(len(rows_i)), (rows_i, cols_i)), shape=(n_ub, n_x + n_sessions * SLICES))
    b_ub = np.repeat(problem.row_limit, periods)

    # per session: the current it gets over the horizon equals the energy in its slices
    a_eq = sp.csr_array(
        (
            np.concatenate([np.ones(n_x), -np.ones(n_sessions * SLICES)]),
            (
                np.concatenate([x_session, np.repeat(np.arange(n_sessions), SLICES)]),
                np.arange(n_x + n_sessions * SLICES),
            ),
        ),
        shape=(n_sessions, n_x + n_sessions * SLICES),
    )
    tightest = np.array(
        [problem.row_limit[problem.session_rows(s)].min(initial=np.inf) for s in range(n_sessions)]
    )
    reachable = np.minimum(problem.need, np.minimum(problem.max_a, tightest) * dep)
    bounds = np.column_stack(
        [
            np.zeros(n_x + n_sessions * SLICES),
            np.concatenate([problem.max_a[x_session], np.repeat(reachable / SLICES, SLICES)]),
        ]
    )
    result = linprog(
        np.concatenate([cost_x, cost_y]),
        A_ub=a_ub if n_ub else None,
        b_ub=b_ub if n_ub else None,
        A_eq=a_eq,
        b_eq=np.zeros(n_sessions),
        bounds=bounds,
        method="highs",
        options={"time_limit": max(time_limit_s, 0.01), "presolve": True},
    )
    if result.status != 0:
        return None
    schedule = np.zeros((n_sessions, periods))
    # HiGHS may overshoot a bound by its tolerance; the plan must not
    schedule[x_session, x_period] = np.clip(result.x[:n_x], 0, problem.max_a[x_session])
    return schedule
