"""Our planner as an ACN-Sim scheduling algorithm, so researchers can drop it into their own experiments.

    from acnportal import acnsim
    from smartev.energy.acn import SmartevAlgorithm

    sim = acnsim.Simulator(acnsim.sites.caltech_acn(), SmartevAlgorithm(), events, start, period=5)
    sim.run()

Needs the optional extra: `pip install smartev[acn]` (acnportal, the Caltech ACN's simulator, Lee et al.).

Every period (`max_recompute = 1`) the algorithm sees only the sessions that have arrived, each with its
declared departure (`estimated_departure`, the one ACN-Sim's own least-laxity-first uses) and its energy
request, and plans them with `smartev.energy.plan` over the hours until the last declared departure. It
applies the plan's first period: pilots each charger accepts (a discrete set like 8/16/24/32 A, or whole amps
from 6 A), never more than the energy still wanted.

ACN-Sim's network constraints are on the magnitude of phasor sums, |Σ_j A_ij r_j ∠φ_j| ≤ c_i (chargers wired
line-to-line behind a delta–wye transformer): second-order cones, which the planner's linear programme cannot
hold. `phasor_limits` replaces each cone by a few linear rows (see there); the default inner approximation
can never exceed a limit, and every schedule is checked against the exact constraint before it is returned.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from acnportal import acnsim
from acnportal.acnsim.interface import InfrastructureInfo, SessionInfo
from acnportal.acnsim.models.battery import batt_cap_fn
from acnportal.algorithms import BaseAlgorithm, SimpleRampdown

from smartev.energy.domain import Limit, LinearLimit, Objective, Phase, Session, Tariff
from smartev.energy.planner import plan
from smartev.energy.problem import FloatArray

Linearisation = Literal["inner", "outer"]

_UNLIMITED = Limit("network", max_a=1e12)
_ONE_PHASE = frozenset({Phase.A})


def network_infrastructure(network: acnsim.ChargingNetwork) -> InfrastructureInfo:
    """What ACN-Sim's interface tells an algorithm about `network`, without a simulation around it."""
    return InfrastructureInfo(
        network.constraint_matrix,
        network.magnitudes,
        network._phase_angles,
        network._voltages,
        network.constraint_index,
        network.station_ids,
        network.max_pilot_signals,
        network.min_pilot_signals,
        network.allowable_rates,
        network.is_continuous,
    )


def phasor_limits(
    infrastructure: InfrastructureInfo,
    stations: Sequence[str],
    *,
    mode: Linearisation = "inner",
    chord_deg: float = 10.0,
) -> list[LinearLimit]:
    """Linear rows that stand for the network's constraints |Σ_j A_ij r_j ∠φ_j| ≤ c_i over `stations`.

    With every current r_j ≥ 0, the phasor sum of constraint i stays inside the cone spanned by its terms
    A_ij ∠φ_j (e.g. −30°…30° for a secondary line current I_ab − I_ca). Where that cone is narrower than a
    half-turn, only its arc of the circle |I| = c_i matters, and it is cut into chords of at most `chord_deg`:

    - `inner`: one row per chord, ⟨u_mid, I⟩ ≤ c_i cos(Δ/2), the polygon inscribed in the arc. Every
      schedule that keeps these rows keeps the exact limit; at worst it gives up 1 − cos(Δ/2) of the limit
      (0.4 % for 10° chords).
    - `outer`: one tangent at each chord end, ⟨u_k, I⟩ ≤ c_i, a polygon around the arc. It gives up nothing
      but may exceed the limit by up to 1/cos(Δ/2) − 1, so its schedules must be checked and scaled back.

    A cone as wide as a half-turn or more gets the whole circle cut the same way. Only the `stations` given
    are kept (idle stations carry no current), which also narrows the cones.
    """
    index = np.array([infrastructure.get_station_index(s) for s in stations], dtype=np.int64)
    if not index.size:
        return []
    phasors = np.exp(1j * np.deg2rad(np.asarray(infrastructure.phases, dtype=np.float64)[index]))
    chord = math.radians(chord_deg)
    rows: list[LinearLimit] = []
    for i, name in enumerate(infrastructure.constraint_ids):
        terms = np.asarray(infrastructure.constraint_matrix[i], dtype=np.float64)[index] * phasors
        used = np.flatnonzero(np.abs(terms) > 1e-12)
        if not used.size:
            continue
        start, width = _arc(np.angle(terms[used]))
        directions, bound = _directions(start, width, chord, mode)
        limit = float(infrastructure.constraint_limits[i])
        for theta in directions:
            weights = (terms[used] * np.exp(-1j * theta)).real
            rows.append(
                LinearLimit(
                    id=str(name),
                    weights={stations[int(j)]: float(w) for j, w in zip(used, weights, strict=True)},
                    max_a=limit * bound,
                )
            )
    return rows


def _arc(angles: FloatArray) -> tuple[float, float]:
    """The shortest arc (start, width) holding all `angles`, or the whole circle (0, 2π)."""
    ordered = np.sort(np.mod(angles, 2 * math.pi))
    gaps = np.diff(np.append(ordered, ordered[0] + 2 * math.pi))
    widest = int(np.argmax(gaps))
    width = 2 * math.pi - float(gaps[widest])
    if width >= math.pi - 1e-9:
        return 0.0, 2 * math.pi
    return float(ordered[(widest + 1) % len(ordered)]), max(width, 0.0)


def _directions(start: float, width: float, chord: float, mode: Linearisation) -> tuple[FloatArray, float]:
    """The row directions for an arc and the fraction of the limit they allow."""
    full = width >= 2 * math.pi - 1e-9
    if width < 1e-9:
        return np.array([start]), 1.0
    n = max(1, math.ceil(width / chord))
    step = width / n
    if mode == "inner":
        return start + (np.arange(n, dtype=np.float64) + 0.5) * step, math.cos(step / 2)
    ends = np.arange(n if full else n + 1, dtype=np.float64)
    return start + ends * step, 1.0


class SmartevAlgorithm(BaseAlgorithm):  # type: ignore[misc]
    """smartev's planner as an ACN-Sim `BaseAlgorithm`; every argument has a default.

    Args:
        objective: what the plan favours once energy is maximal (prices come from the simulation's
            `tariff` signal when there is one).
        horizon: the most periods planned ahead; the plan reaches the last declared departure up to this.
        time_budget_s: HiGHS's time limit per plan; past it, least-laxity-first plans instead.
        estimate_max_rate: learn each car's taper from how far its draw falls short of its pilot (ACN-Sim's
            `SimpleRampdown`), so the current a full battery cannot take goes to the other cars.
        linearisation: `inner` or `outer` polygon for the phasor constraints (see `phasor_limits`).
        chord_deg: the widest chord of those polygons, in degrees.
    """

    def __init__(
        self,
        objective: Objective = Objective.MAX_ENERGY,
        *,
        horizon: int = 288,
        time_budget_s: float = 0.5,
        estimate_max_rate: bool = True,
        linearisation: Linearisation = "inner",
        chord_deg: float = 10.0,
    ) -> None:
        super().__init__()
        self.max_recompute = 1
        self.objective = objective
        self.horizon = horizon
        self.time_budget_s = time_budget_s
        self.linearisation: Linearisation = linearisation
        self.chord_deg = chord_deg
        self.estimator = SimpleRampdown() if estimate_max_rate else None
        self.solvers: list[str] = []
        self.repairs = 0

    def register_interface(self, interface: object) -> None:
        """Register ACN-Sim's interface (and hand it to the taper estimator)."""
        self._interface = interface
        if self.estimator is not None:
            self.estimator.register_interface(interface)

    def schedule(self, active_sessions: list[SessionInfo]) -> dict[str, list[float]]:
        """The pilot of every station for the next `max_recompute` periods (held, then re-planned)."""
        if self.max_recompute is None or self.max_recompute < 1:
            raise ValueError("SmartevAlgorithm re-plans every period: set max_recompute to 1 (or more)")
        infrastructure = self.interface.infrastructure_info()
        pilots = dict.fromkeys(infrastructure.station_ids, 0.0)
        if active_sessions:
            pilots.update(self._plan(active_sessions, infrastructure))
        return {station: [pilot] * self.max_recompute for station, pilot in pilots.items()}

    def _plan(self, active: list[SessionInfo], infrastructure: InfrastructureInfo) -> dict[str, float]:
        now = int(self.interface.current_time)
        period_s = round(float(self.interface.period) * 60)
        tapers = self.estimator.get_maximum_rates(active) if self.estimator is not None else {}
        sessions = [
            _session(info, infrastructure, now, tapers.get(info.session_id, math.inf), period_s / 3600)
            for info in active
        ]
        periods = max(1, min(self.horizon, max(_periods_left(s) for s in sessions)))
        try:
            prices = tuple(float(p) for p in self.interface.get_prices(periods))
        except (ValueError, TypeError):  # the simulation has no tariff (TypeError: no signals at all)
            prices = (0.0,) * periods
        stations = [s.station for s in sessions]
        result = plan(
            sessions,
            _UNLIMITED,
            Tariff(prices),
            periods,
            period_s,
            self.objective,
            time_budget_s=self.time_budget_s,
            constraints=phasor_limits(
                infrastructure, stations, mode=self.linearisation, chord_deg=self.chord_deg
            ),
        )
        self.solvers.append(result.solver)
        pilots = {s.station: float(result.first_a[s.id]) for s in sessions}
        exact = _Exact(infrastructure, pilots, period_s / 3600)
        self._make_feasible(exact, pilots, sessions)
        if self.estimator is not None:
            self._top_up(
                exact,
                pilots,
                [_session(info, infrastructure, now, math.inf, period_s / 3600) for info in active],
            )
        return pilots

    @staticmethod
    def _top_up(exact: _Exact, pilots: dict[str, float], uncapped: list[Session]) -> None:
        """Raise the pilots the taper estimate held back, as far as the exact limits still allow.

        The estimate makes the plan give the current a full battery cannot take to other cars; whatever room
        is left after that costs nothing, and a battery that can take more than estimated then gets it.
        """
        for session in sorted(uncapped, key=lambda s: (_periods_left(s), s.id)):
            station = session.station
            need = session.energy_wanted_kwh / (session.voltage_v / 1000 * exact.period_h)
            for level in reversed(_levels(session)):
                if level <= pilots[station] or level > need + 1e-9:
                    continue
                if exact.fits(station, level):
                    pilots[station] = level
                    break

    def _make_feasible(self, exact: _Exact, pilots: dict[str, float], sessions: list[Session]) -> None:
        """Check the exact phasor limits; lower the pilot that loads the worst one most until all hold."""
        levels = {s.station: sorted({0.0, *_levels(s)}) for s in sessions}
        index, matrix, limits, rates = exact.index, exact.matrix, exact.limits, exact.rates
        while True:
            currents = matrix @ rates
            excess = np.abs(currents) - limits
            worst = int(np.argmax(excess))
            if excess[worst] <= 1e-6:
                return
            self.repairs += 1
            # how much one amp more at each station grows the worst magnitude
            growth = (matrix[worst] * np.conj(currents[worst])).real / max(abs(currents[worst]), 1e-12)
            station = max(pilots, key=lambda st: growth[index[st]] if pilots[st] > 0 else -math.inf)
            lower = [level for level in levels[station] if level < pilots[station]]
            pilots[station] = lower[-1] if lower else 0.0
            rates[index[station]] = pilots[station]


def _periods_left(session: Session) -> int:
    return session.departure if isinstance(session.departure, int) else 0


class _Exact:
    """The network's exact phasor constraints, with the rates of one schedule, to check changes against."""

    def __init__(self, infrastructure: InfrastructureInfo, pilots: dict[str, float], period_h: float = 1.0):
        self.index = {station: infrastructure.get_station_index(station) for station in pilots}
        phasors = np.exp(1j * np.deg2rad(np.asarray(infrastructure.phases, dtype=np.float64)))
        self.matrix = np.asarray(infrastructure.constraint_matrix, dtype=np.float64) * phasors
        self.limits = np.asarray(infrastructure.constraint_limits, dtype=np.float64)
        self.rates = np.zeros(len(infrastructure.station_ids))
        for station, pilot in pilots.items():
            self.rates[self.index[station]] = pilot
        self.period_h = period_h

    def fits(self, station: str, pilot: float) -> bool:
        """Whether `station` may run at `pilot` with the others as they are; if so, it now does."""
        j = self.index[station]
        change = pilot - self.rates[j]
        if np.all(np.abs(self.matrix @ self.rates + self.matrix[:, j] * change) <= self.limits * (1 - 1e-9)):
            self.rates[j] = pilot
            return True
        return False


def _levels(session: Session) -> list[float]:
    if session.pilots_a is not None:
        return [p for p in session.pilots_a if session.min_a <= p <= session.max_a]
    return [float(a) for a in range(max(math.ceil(session.min_a), 1), math.floor(session.max_a) + 1)]


def _session(
    info: SessionInfo, infrastructure: InfrastructureInfo, now: int, taper_a: float, period_h: float
) -> Session:
    """A `Session` for the planner from what ACN-Sim tells an online algorithm about one car."""
    j = infrastructure.get_station_index(info.station_id)
    allowed = [float(p) for p in np.asarray(infrastructure.allowable_pilots[j]).ravel()]
    max_a = float(min(infrastructure.max_pilot[j], float(np.min(info.max_rates, initial=math.inf))))
    if bool(infrastructure.is_continuous[j]):
        pilots = None
        min_a = max(float(allowed[0]) if allowed else 0.0, 0.0)
    else:
        pilots = tuple(sorted({p for p in allowed if p > 0}))
        min_a = pilots[0] if pilots else 0.0
    # the taper estimate lowers the maximum, never below the lowest pilot the charger takes
    max_a = max(min(max_a, taper_a), min_a)
    wanted = max(float(info.remaining_demand), 0.0)
    # a last bit smaller than one period at the lowest pilot could never be delivered: ask for that period
    # (the car stops drawing when it is full); a crumb under a quarter of it counts as done
    lowest_kwh = max(min_a, 1.0) * float(infrastructure.voltages[j]) / 1000 * period_h
    if 0.25 * lowest_kwh <= wanted < lowest_kwh:
        wanted = lowest_kwh
    return Session(
        id=str(info.session_id),
        station=str(info.station_id),
        connector=1,
        energy_wanted_kwh=wanted,
        departure=max(int(info.estimated_departure) - now, 1),
        max_a=max_a,
        min_a=min_a,
        phases=_ONE_PHASE,
        voltage_v=float(infrastructure.voltages[j]),
        pilots_a=pilots,
    )


@dataclass(frozen=True, slots=True)
class RecordedSession:
    """One row of an ACN-Data export (e.g. the Caltech sessions), times with their UTC offset."""

    session_id: str
    station_id: str
    arrival: datetime
    departure: datetime
    delivered_kwh: float
    requested_kwh: float
    estimated_departure: datetime | None
    claimed: bool


def read_sessions(*paths: str | Path) -> list[RecordedSession]:
    """The sessions of ACN-Data CSV exports (plain or gzipped), in order of arrival.

    Columns: arrival, departure, requested_energy (kWh), delivered_energy (kWh), station_id, session_id,
    estimated_departure, claimed.
    """
    sessions: list[RecordedSession] = []
    for path in paths:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", newline="") as handle:
            for row in csv.DictReader(handle):
                estimated = row.get("estimated_departure") or ""
                sessions.append(
                    RecordedSession(
                        session_id=row["session_id"],
                        station_id=row["station_id"],
                        arrival=datetime.fromisoformat(row["arrival"]),
                        departure=datetime.fromisoformat(row["departure"]),
                        delivered_kwh=float(row["delivered_energy (kWh)"]),
                        requested_kwh=float(row["requested_energy (kWh)"] or "nan"),
                        estimated_departure=datetime.fromisoformat(estimated) if estimated else None,
                        claimed=row.get("claimed", "").lower() == "true",
                    )
                )
    return sorted(sessions, key=lambda s: (s.arrival, s.session_id))


def make_events(
    recorded: Sequence[RecordedSession],
    start: datetime,
    period_min: float,
    stations: Collection[str],
    *,
    voltage_v: float = 208.0,
    max_power_kw: float = 32 * 208 / 1000,
    ideal_battery: bool = False,
) -> acnsim.EventQueue:
    """ACN-Sim's queue of plug-in events for the cars of `make_evs` (same arguments)."""
    evs = make_evs(
        recorded,
        start,
        period_min,
        stations,
        voltage_v=voltage_v,
        max_power_kw=max_power_kw,
        ideal_battery=ideal_battery,
    )
    return acnsim.EventQueue([acnsim.PluginEvent(ev.arrival, ev) for ev in evs])


def make_evs(
    recorded: Sequence[RecordedSession],
    start: datetime,
    period_min: float,
    stations: Collection[str],
    *,
    voltage_v: float = 208.0,
    max_power_kw: float = 32 * 208 / 1000,
    ideal_battery: bool = False,
) -> list[acnsim.EV]:
    """ACN-Sim cars for `recorded` sessions, like ACN-Sim's own ACN-Data loader (without its web API).

    Demand is the energy the session actually delivered (as in the ACN papers: the request in the app is
    missing for unclaimed sessions and often unrealistic), capped at what full power over the stay can
    deliver. Times become periods from `start`, rounded down; the declared departure is the real one. The
    battery is ACN-Sim's `Linear2StageBattery`, sized by its `batt_cap_fn` as in the ACN-Sim paper, so that
    charging at full rate from arrival just meets the demand (the most taper the data allows);
    `ideal_battery` uses the plain `Battery` instead. Sessions at stations outside `stations`, shorter than
    one period, or overlapping a previous session at the same station are left out.
    """

    evs = []
    busy_until: dict[str, int] = {}
    for r in recorded:
        arrival = math.floor((r.arrival - start).total_seconds() / 60 / period_min)
        departure = math.floor((r.departure - start).total_seconds() / 60 / period_min)
        if r.station_id not in stations or departure <= arrival or arrival < 0:
            continue
        if busy_until.get(r.station_id, -1) > arrival:
            continue
        busy_until[r.station_id] = departure
        # rounding to periods may leave less time than the energy needs at full power (ACN's force_feasible)
        demand = min(r.delivered_kwh, max_power_kw * (departure - arrival) * period_min / 60)
        battery: acnsim.Battery = acnsim.Battery(max(demand, 1e-6), 0, max_power_kw)
        if not ideal_battery and demand > 0:
            with contextlib.suppress(ValueError):  # no battery size fits: keep the ideal one
                capacity, init = batt_cap_fn(demand, departure - arrival, voltage_v, period_min)
                battery = acnsim.Linear2StageBattery(capacity, init, max_power_kw)
        evs.append(acnsim.EV(arrival, departure, demand, r.station_id, r.session_id, battery))
    return evs
