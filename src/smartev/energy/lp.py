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

The objectives pick the MAJOR tier: earliness (MAX_ENERGY), money (CHEAPEST: energy price, plus the demand
charge on a peak variable P ≥ chargers + house − solar in every period), grid energy beyond the solar surplus
(SOLAR: a variable g per period with chargers − g ≤ surplus), or, for FAIRNESS, the fraction z of what it
wanted that every session gets at least (a max-min, weighed in the fairness tier), with slices that are
fractions of what each session wants rather than of what it could get.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]
from scipy.optimize import linprog  # type: ignore[import-untyped]

from smartev.energy.domain import Objective
from smartev.energy.problem import FloatArray, Problem

SLICES = 8
FAIRNESS = 0.005
MAJOR = 1e-3
MINOR = 1e-5


def _tiers(objective: Objective) -> tuple[float, float]:
    """The weights of (price, earliness) under `objective`; SOLAR puts grid energy in the MAJOR tier."""
    if objective is Objective.CHEAPEST:
        return MAJOR, MINOR
    if objective is Objective.MAX_ENERGY:
        return MINOR, MAJOR
    return MINOR, MINOR


def solve_lp(problem: Problem, objective: Objective, time_limit_s: float) -> FloatArray | None:
    """The LP schedule (session × period, amps), or `None` when HiGHS fails or runs out of time."""
    n_sessions, periods = len(problem.ids), problem.periods
    arr, dep = problem.arrival, problem.departure
    span_of = np.maximum(dep - arr, 0)
    n_x = int(span_of.sum())
    if n_x == 0:
        return np.zeros((n_sessions, periods))
    x_session = np.repeat(np.arange(n_sessions), span_of)
    x_period = np.arange(n_x) - np.repeat(np.cumsum(span_of) - span_of, span_of) + arr[x_session]

    # energy weight per amp-period, relative to the session that gets the most energy out of an amp
    weight = problem.kwh_per_a / problem.kwh_per_a.max()
    price_w, late_w = _tiers(objective)
    lateness = (x_period - arr[x_session] + 1) / span_of[x_session]
    cost_x = weight[x_session] * late_w * lateness
    n_y = n_sessions * SLICES
    slice_bonus = 1 + FAIRNESS * (SLICES - np.arange(SLICES)) / SLICES
    cost_y = -(weight[:, None] * slice_bonus[None, :]).ravel()

    # the extra variables, after x and y: grid power beyond the solar surplus (g, per period) under SOLAR,
    # the peak grid import (P) with a demand charge, the fraction every driver gets at least (z) under FAIRNESS
    solar = objective is Objective.SOLAR
    peak = problem.demand_charge > 0
    fair = objective is Objective.FAIRNESS
    n_g = periods if solar else 0
    n_vars = n_x + n_y + n_g + int(peak) + int(fair)
    g0, p0 = n_x + n_y, n_x + n_y + n_g
    z0 = p0 + int(peak)
    extra_cost = np.zeros(n_vars - n_x - n_y)
    extra_upper = np.full(n_vars - n_x - n_y, np.inf)
    blocks: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], FloatArray, FloatArray]] = []
    power_x = problem.kw_per_a[x_session]  # kW per amp of each x

    if peak:
        # money in the price tier: energy price and demand charge on one scale, at most `price_w` per amp-period
        ref = problem.kw_per_a.max() * (
            np.abs(problem.prices).max() * problem.period_h + problem.demand_charge
        )
        money = price_w / ref
        cost_x += money * (problem.prices[x_period] - problem.prices.min()) * problem.kwh_per_a[x_session]
        extra_cost[p0 - g0] = money * problem.demand_charge
        # Σ kW of the chargers − P ≤ solar − house, in every period
        base = problem.house_kw - problem.solar_kw
        blocks.append(
            (
                np.concatenate([x_period, np.arange(periods)]),
                np.concatenate([np.arange(n_x), np.full(periods, p0)]),
                np.concatenate([power_x, -np.ones(periods)]),
                -base,
            )
        )
    else:
        span = float(np.ptp(problem.prices))
        price = (problem.prices - problem.prices.min()) / span if span > 0 else np.zeros(periods)
        cost_x += weight[x_session] * price_w * price[x_period]
    if solar:
        # Σ kW of the chargers − g ≤ the solar surplus; each kWh from the grid costs MAJOR per amp-period
        surplus = np.maximum(problem.solar_kw - problem.house_kw, 0)
        extra_cost[:n_g] = MAJOR / problem.kw_per_a.max()
        blocks.append(
            (
                np.concatenate([x_period, np.arange(periods)]),
                np.concatenate([np.arange(n_x), g0 + np.arange(periods)]),
                np.concatenate([power_x, -np.ones(periods)]),
                surplus,
            )
        )
    if fair:
        # z × (what session s wants) − Σ_t x[s, t] ≤ 0: everyone gets at least the fraction z of it
        extra_upper[z0 - g0] = 1.0
    # limits: one row per (limit row, period), over the sessions present in that period
    ub_rows, ub_cols, ub_vals = [], [], []
    for r in range(len(problem.row_limit)):
        weights = problem.rows[r, x_session]
        counted = weights != 0
        ub_rows.append(r * periods + x_period[counted])
        ub_cols.append(np.flatnonzero(counted))
        ub_vals.append(weights[counted])
    n_ub = len(problem.row_limit) * periods
    rows_i = np.concatenate(ub_rows) if ub_rows else np.zeros(0, dtype=np.int64)
    cols_i = np.concatenate(ub_cols) if ub_cols else np.zeros(0, dtype=np.int64)
    vals = np.concatenate(ub_vals) if ub_vals else np.zeros(0)
    limits = problem.period_limits()
    b_parts = [limits.ravel()]

    # an upper bound on what each session can get; rows with negative weights may be relieved, so skip them
    plain = np.where((problem.rows >= 0).all(axis=1, keepdims=True), problem.rows, 0.0)
    loosest = limits.max(axis=1, initial=0.0)
    with np.errstate(divide="ignore"):
        per_row = np.where(plain > 0, loosest[:, None] / np.where(plain > 0, plain, 1), np.inf)
    tightest = per_row.min(axis=0, initial=np.inf)
    reachable = np.minimum(problem.need, np.minimum(problem.max_a, tightest) * span_of)

    if fair:
        wanting = np.flatnonzero(reachable > 1e-9)
        # its fraction is only weighed when it can be raised without losing energy: FAIRNESS per driver
        extra_cost[z0 - g0] = -FAIRNESS * (float(problem.need[wanting].min()) if wanting.size else 0.0)
        in_wanting = np.isin(x_session, wanting)
        position = np.searchsorted(wanting, x_session[in_wanting])
        blocks.append(
            (
                np.concatenate([position, np.arange(len(wanting))]),
                np.concatenate([np.flatnonzero(in_wanting), np.full(len(wanting), z0)]),
                np.concatenate([-np.ones(int(in_wanting.sum())), problem.need[wanting]]),
                np.zeros(len(wanting)),
            )
        )
    for block_rows, block_cols, block_vals, block_b in blocks:
        rows_i = np.concatenate([rows_i, n_ub + block_rows])
        cols_i = np.concatenate([cols_i, block_cols])
        vals = np.concatenate([vals, block_vals])
        b_parts.append(block_b)
        n_ub += len(block_b)
    a_ub = sp.csr_array((vals, (rows_i, cols_i)), shape=(n_ub, n_vars))
    b_ub = np.concatenate(b_parts)

    # per session: the current it gets over the horizon equals the energy in its slices
    a_eq = sp.csr_array(
        (
            np.concatenate([np.ones(n_x), -np.ones(n_y)]),
            (
                np.concatenate([x_session, np.repeat(np.arange(n_sessions), SLICES)]),
                np.arange(n_x + n_y),
            ),
        ),
        shape=(n_sessions, n_vars),
    )
    # the slices share what each could get; under FAIRNESS they are fractions of what each wants instead
    sliced = problem.need if fair else reachable
    bounds = np.column_stack(
        [
            np.zeros(n_vars),
            np.concatenate([problem.max_a[x_session], np.repeat(sliced / SLICES, SLICES), extra_upper]),
        ]
    )
    result = linprog(
        np.concatenate([cost_x, cost_y, extra_cost]),
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
