"""The planner's plain data (its domain): sessions, the site's tree of limits, the tariff and the plan.

Everything here is a frozen dataclass with no behaviour beyond checking its own invariants, so that the planner
stays a pure function that the central system, the home controller and the ACN-Sim benchmark all feed alike.
Currents are in amperes per phase, energy in kWh, prices per kWh; time is counted in planning periods.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Phase(StrEnum):
    """One conductor of the three-phase supply."""

    A = "A"
    B = "B"
    C = "C"


ALL_PHASES: frozenset[Phase] = frozenset(Phase)


class Objective(StrEnum):
    """What the operator wants the plan to favour; every objective delivers the most energy first."""

    MAX_ENERGY = "max_energy"
    """The most energy by departure, delivered as early as possible (robust to arrivals nobody announced)."""
    CHEAPEST = "cheapest"
    """The most energy by departure, bought in the cheapest periods that still allow it."""
    SOLAR = "solar"
    """The most energy by departure, drawn from the solar surplus first (self-consumption), then the grid."""
    FAIRNESS = "fairness"
    """The most energy by departure, shared so that every driver gets the same fraction of what they want."""


@dataclass(frozen=True, slots=True)
class Session:
    """A car plugged into a connector, with what its driver still wants and when they leave.

    Args:
        circuit: id of the node of the limit tree the connector hangs from; `None` means the site connection.
        phases: the phases the car draws on; it draws the same current on each of them.
        min_a: the lowest pilot current the car accepts; 0 means any whole amp will do.
        departure: the first period the car is gone (an index from 0 = now), or the departure time.
        voltage_v: the voltage each phase's current is drawn at (phase-to-neutral, or line-to-line for a
            charger wired between two phases), used to turn current into energy.
        arrival: the first period the car is there; 0 (now) for a car that is plugged in. Only a plan that
            knows the future (the offline optimum of the benchmark) has sessions arriving later.
        pilots_a: the non-zero pilot currents the charger accepts when it only takes a few (e.g. 8, 16, 24,
            32 A); `None` means any whole amp from `min_a` to `max_a`.
    """

    id: str
    station: str
    connector: int
    energy_wanted_kwh: float
    departure: int | datetime
    max_a: float = 32.0
    min_a: float = 6.0
    phases: frozenset[Phase] = ALL_PHASES
    voltage_v: float = 230.0
    circuit: str | None = None
    arrival: int = 0
    pilots_a: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.phases or not self.phases <= ALL_PHASES:
            raise ValueError(f"session {self.id}: phases must be a non-empty subset of A, B, C")
        if not 0 <= self.min_a <= self.max_a or not math.isfinite(self.max_a):
            raise ValueError(f"session {self.id}: need 0 <= min_a <= max_a, got {self.min_a}, {self.max_a}")
        if not self.energy_wanted_kwh >= 0 or not math.isfinite(self.energy_wanted_kwh):
            raise ValueError(f"session {self.id}: energy_wanted_kwh must be finite and >= 0")
        if not self.voltage_v > 0:
            raise ValueError(f"session {self.id}: voltage_v must be > 0")
        if self.arrival < 0:
            raise ValueError(f"session {self.id}: arrival must be >= 0")
        if self.pilots_a is not None and not all(p > 0 and float(p).is_integer() for p in self.pilots_a):
            raise ValueError(f"session {self.id}: pilots_a must be whole amps > 0")


@dataclass(frozen=True, slots=True)
class Limit:
    """A node of the site's limits: the site connection, a feeder or circuit, with the nodes below it.

    `max_a` caps the current on each phase; `phase_max_a` (A, B, C) caps phases separately where they differ,
    which is how an unbalanced supply (or an unbalance rule) is described. Every session hanging from this
    node or from a node below it counts against it, on each phase it draws from.
    """

    id: str
    max_a: float
    children: tuple[Limit, ...] = ()
    phase_max_a: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        caps = (self.max_a, *(self.phase_max_a or ()))
        if not all(c >= 0 and math.isfinite(c) for c in caps):
            raise ValueError(f"limit {self.id}: current limits must be finite and >= 0")

    def nodes(self) -> Iterator[Limit]:
        """This node and every node below it, parents first."""
        yield self
        for child in self.children:
            yield from child.nodes()

    def limit_a(self, phase: Phase) -> float:
        """The current this node allows on `phase`."""
        if self.phase_max_a is None:
            return self.max_a
        return min(self.max_a, self.phase_max_a[list(Phase).index(phase)])


@dataclass(frozen=True, slots=True)
class LinearLimit:
    """A limit on a weighted sum of the currents of some stations: Σ weight × current ≤ `max_a`.

    The tree of `Limit`s covers the usual site (each car adds its current to each phase it draws on). Wiring
    that the tree cannot describe — chargers connected line-to-line behind a transformer, where a line current
    is a difference of charger currents — is described by such rows; a negative weight means that charging
    that station relieves the line. The ACN-Sim adapter (`smartev.energy.acn`) builds them from a network's
    phasor constraints. Every session at a station counts with the station's weight.
    """

    id: str
    weights: Mapping[str, float]
    max_a: float

    def __post_init__(self) -> None:
        if not self.max_a >= 0 or not math.isfinite(self.max_a):
            raise ValueError(f"limit {self.id}: max_a must be finite and >= 0")
        if not all(math.isfinite(w) for w in self.weights.values()):
            raise ValueError(f"limit {self.id}: weights must be finite")


@dataclass(frozen=True, slots=True)
class Tariff:
    """The energy price of each planning period, from now on, and the demand charge.

    Args:
        demand_charge_per_kw: the price of each kW of the highest grid import over the horizon (the site's
            power drawn from the grid: chargers plus house load minus solar production).
    """

    prices_per_kwh: tuple[float, ...]
    demand_charge_per_kw: float = 0.0

    def __post_init__(self) -> None:
        if not all(math.isfinite(p) for p in self.prices_per_kwh):
            raise ValueError("tariff prices must be finite")
        if not 0 <= self.demand_charge_per_kw < math.inf:
            raise ValueError("the demand charge must be finite and >= 0")


@dataclass(frozen=True, slots=True)
class SiteForecast:
    """What else happens at the site connection, per planning period from now on, in kW.

    The house load takes its share of the site connection (the root `Limit`) before the chargers, and solar
    production adds to what the chargers may draw; both are taken as spread evenly over the three phases at
    `voltage_v` phase-to-neutral. Periods past the end of a forecast count as 0 kW.
    """

    house_kw: tuple[float, ...] = ()
    solar_kw: tuple[float, ...] = ()
    voltage_v: float = 230.0

    def __post_init__(self) -> None:
        if not all(0 <= p < math.inf for p in (*self.house_kw, *self.solar_kw)):
            raise ValueError("forecast powers must be finite and >= 0")
        if not self.voltage_v > 0:
            raise ValueError("voltage_v must be > 0")


@dataclass(frozen=True, slots=True)
class Plan:
    """The schedule of current per session per period, and the part to apply now.

    Args:
        currents_a: per session, the current of every period; period 0 is in whole amps, later periods are
            the solver's continuous forecast, which the next re-plan refines.
        first_a: per session, the whole-amp pilot current to apply now (0 = paused).
        energy_kwh: per session, the energy the schedule delivers by departure.
        explanations: per session, why it gets what it gets, in words for the driver and the operator.
        solver: "highs" when the LP was solved, "llf" when the least-laxity-first fallback made the plan.
        solve_s: wall time spent planning, in seconds.
    """

    period_s: int
    currents_a: Mapping[str, tuple[float, ...]]
    first_a: Mapping[str, int]
    energy_kwh: Mapping[str, float]
    explanations: Mapping[str, tuple[str, ...]]
    solver: str
    solve_s: float
