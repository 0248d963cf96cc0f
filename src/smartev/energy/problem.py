"""The planning problem as arrays: what the LP, the fallback and the quantiser all work on.

Sessions become columns, and every (limit node, phase) that could actually bind becomes one row of a 0/1
matrix, so that "the current under this node on this phase" is a matrix product. Rows that no combination of
sessions can exceed are dropped here, once, instead of being carried through every period of the LP.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from smartev.energy.domain import ALL_PHASES, Limit, Session, Tariff

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Problem:
    """Sessions, limits and prices over the horizon, as arrays indexed by session and row.

    Args:
        departure: per session, the first period it may not draw (clipped to 0..periods).
        need: per session, the energy still wanted, in amp-periods (amps drawn over one period).
        kwh_per_a: per session, the energy of one amp over one period, in kWh.
        rows: 0/1 matrix (row × session): which sessions count against each (node, phase) limit.
        row_limit: the current each row allows.
        row_names: "circuit X (phase P)" for each row, for the explanations.
    """

    ids: tuple[str, ...]
    periods: int
    departure: IntArray
    max_a: FloatArray
    min_a: FloatArray
    need: FloatArray
    kwh_per_a: FloatArray
    rows: FloatArray
    row_limit: FloatArray
    row_names: tuple[str, ...]
    prices: FloatArray

    def session_rows(self, s: int) -> IntArray:
        """The rows session `s` counts against."""
        return np.flatnonzero(self.rows[:, s])


def compile_problem(
    sessions: Sequence[Session],
    limits: Limit,
    prices: Tariff,
    periods: int,
    period_s: int,
    start: datetime | None,
) -> Problem:
    """Check the inputs against each other and turn them into a `Problem`."""
    if periods < 1 or period_s < 1:
        raise ValueError("periods and period_s must be >= 1")
    if len(prices.prices_per_kwh) < periods:
        raise ValueError(f"the tariff covers {len(prices.prices_per_kwh)} periods, the plan {periods}")
    ids = tuple(s.id for s in sessions)
    if len(set(ids)) != len(ids):
        raise ValueError("session ids must be unique")
    nodes = {node.id: node for node in _walk(limits)}
    if len(nodes) != sum(1 for _ in _walk(limits)):
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

    row_vectors: list[FloatArray] = []
    row_limit: list[float] = []
    row_names: list[str] = []
    for node_id, members in _members(limits, sessions).items():
        node = nodes[node_id]
        for phase in sorted(ALL_PHASES):
            column = np.array([1.0 if s.id in members and phase in s.phases else 0.0 for s in sessions])
            # a row that every session at full current cannot exceed never binds
            if column @ max_a > node.limit_a(phase):
                row_vectors.append(column)
                row_limit.append(node.limit_a(phase))
                row_names.append(f"circuit {node.id} (phase {phase})")

    return Problem(
        ids=ids,
        periods=periods,
        departure=departure,
        max_a=max_a,
        min_a=np.array([s.min_a for s in sessions], dtype=np.float64),
        need=np.array([s.energy_wanted_kwh for s in sessions], dtype=np.float64) / kwh_per_a,
        kwh_per_a=kwh_per_a,
        rows=np.array(row_vectors).reshape(len(row_vectors), len(sessions)),
        row_limit=np.array(row_limit, dtype=np.float64),
        row_names=tuple(row_names),
        prices=np.array(prices.prices_per_kwh[:periods], dtype=np.float64),
    )


def _departure_period(session: Session, start: datetime | None, period_s: int) -> int:
    if isinstance(session.departure, int):
        return session.departure
    if start is None:
        raise ValueError(f"session {session.id} departs at a time; plan() then needs `start`")
    # only whole periods before departure count: the car must not be promised a period it leaves during
    return math.floor((session.departure - start).total_seconds() / period_s)


def _walk(node: Limit) -> Iterator[Limit]:
    yield node
    for child in node.children:
        yield from _walk(child)


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
