"""The planner inside ACN-Sim (Caltech's simulator): exact network limits, pilots, departures, vs its LLF."""

from __future__ import annotations

import math
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

acnportal = pytest.importorskip("acnportal")
from acnportal import acnsim, algorithms  # noqa: E402

from smartev.energy import Limit, Objective, Phase, Session, Tariff, plan  # noqa: E402
from smartev.energy.acn import (  # noqa: E402
    SmartevAlgorithm,
    make_events,
    network_infrastructure,
    phasor_limits,
    read_sessions,
)

DATA = Path("/work/shared/acn")
TZ = ZoneInfo("America/Los_Angeles")
PERIOD_MIN = 5


def exact_currents(network: acnsim.ChargingNetwork, rates: dict[str, np.ndarray]) -> np.ndarray:
    """|Σ_j A_ij r_j ∠φ_j| per constraint and period, computed by ACN-Sim itself."""
    width = len(next(iter(rates.values())))
    matrix = np.array([rates.get(s, np.zeros(width)) for s in network.station_ids])
    return np.abs(network.constraint_current(matrix))


@st.composite
def caltech_cases(draw: st.DrawFn) -> tuple[float, list[Session], int]:
    capacity = draw(st.sampled_from([5.0, 20.0, 40.0, 80.0, 150.0]))
    network = acnsim.sites.caltech_acn(transformer_cap=capacity)
    stations = draw(st.lists(st.sampled_from(network.station_ids), min_size=1, max_size=30, unique=True))
    periods = draw(st.integers(1, 24))
    sessions = []
    for i, station in enumerate(stations):
        arrival = draw(st.integers(0, periods - 1))
        sessions.append(
            Session(
                id=f"s{i}",
                station=station,
                connector=1,
                energy_wanted_kwh=draw(st.floats(0, 40)),
                departure=draw(st.integers(arrival, periods + 2)),
                arrival=arrival,
                max_a=draw(st.sampled_from([8.0, 16.0, 32.0])),
                min_a=draw(st.sampled_from([0.0, 6.0, 8.0])),
                phases=frozenset({Phase.A}),
                voltage_v=208,
                pilots_a=draw(st.sampled_from([None, (8.0, 16.0, 24.0, 32.0)])),
            )
        )
    return capacity, sessions, periods


@settings(max_examples=60, deadline=None)
@given(case=caltech_cases(), mode=st.sampled_from(["inner", "outer"]), fallback=st.booleans())
def test_plans_on_the_caltech_network_keep_its_exact_limits_levels_and_stays(
    case: tuple[float, list[Session], int], mode: str, fallback: bool
) -> None:
    capacity, sessions, periods = case
    network = acnsim.sites.caltech_acn(transformer_cap=capacity)
    rows = phasor_limits(
        network_infrastructure(network),
        [s.station for s in sessions],
        mode=mode,  # type: ignore[arg-type]
    )
    with pytest.MonkeyPatch.context() as m:
        if fallback:
            m.setattr("smartev.energy.planner.solve_lp", lambda *_: None)
        result = plan(
            sessions,
            Limit("network", 1e12),
            Tariff((0.1,) * periods),
            periods,
            PERIOD_MIN * 60,
            constraints=rows,
            time_budget_s=10,
        )
    currents = {s.station: np.array(result.currents_a[s.id]) for s in sessions}
    load = exact_currents(network, currents)
    # the inner polygon keeps the exact limit in every period; the outer one may exceed it by 1/cos(5°) − 1
    slack = 1.0 if mode == "inner" else 1 / math.cos(math.radians(5))
    assert np.all(load <= network.magnitudes[:, None] * slack + 1e-6)
    for s in sessions:
        a = np.array(result.currents_a[s.id])
        assert np.all(a >= -1e-9) and np.all(a <= s.max_a + 1e-9)
        assert np.all(a[: s.arrival] == 0), "current before arrival"
        assert np.all(a[max(int(s.departure), 0) :] == 0), "current after departure"
        assert a.sum() * 208 * PERIOD_MIN / 60 / 1000 <= s.energy_wanted_kwh + 1e-6
        first = result.first_a[s.id]
        if s.pilots_a is not None:
            assert first == 0 or (first in s.pilots_a and s.min_a <= first <= s.max_a)
        else:
            assert first == 0 or s.min_a <= first <= s.max_a


def day_of_sessions(day: datetime, hours: int) -> list:  # type: ignore[type-arg]
    recorded = read_sessions(DATA / "caltech_2019-09-01_2019-12-31.csv.gz")
    return [r for r in recorded if day <= r.arrival < day + timedelta(hours=hours)]


def simulate(algorithm: object, capacity: float, recorded: list, start: datetime) -> acnsim.Simulator:  # type: ignore[type-arg]
    network = acnsim.sites.caltech_acn(transformer_cap=capacity)
    events = make_events(recorded, start, PERIOD_MIN, set(network.station_ids))
    sim = acnsim.Simulator(network, algorithm, events, start, period=PERIOD_MIN, verbose=False)
    with warnings.catch_warnings():
        # ACN-Sim warns "Invalid schedule provided" when a schedule breaks a network limit: make it fail
        warnings.simplefilter("error", UserWarning)
        sim.run()  # and an EVSE raises InvalidRateError for a pilot it does not accept
    return sim


def delivered_kwh(sim: acnsim.Simulator) -> float:
    return sum(min(ev.energy_delivered, ev.requested_energy) for ev in sim.ev_history.values())


@pytest.mark.skipif(not DATA.exists(), reason="needs the Caltech sessions in /work/shared/acn")
def test_inside_acn_sim_it_delivers_at_least_what_least_laxity_first_does_on_real_sessions() -> None:
    start = datetime(2019, 9, 10, 6, tzinfo=TZ)
    recorded = day_of_sessions(start, hours=5)  # the morning arrivals of a Tuesday: ~25 cars
    assert len(recorded) >= 15
    # a generous budget: on a loaded machine HiGHS could otherwise hand over to the fallback now and then
    ours = SmartevAlgorithm(time_budget_s=30)
    llf = algorithms.SortedSchedulingAlgo(algorithms.least_laxity_first)
    sim = simulate(ours, 30, recorded, start)
    baseline = simulate(llf, 30, recorded, start)
    assert delivered_kwh(sim) >= delivered_kwh(baseline)
    assert ours.repairs == 0, "the inner polygon should never need the exact check to step in"
    assert set(ours.solvers) == {"highs"}
    # every pilot: one the charger accepts, only while the car is there, never above the charger's maximum
    network = sim.network
    pilots = sim.pilot_signals
    occupied = np.zeros(pilots.shape, dtype=bool)
    for ev in sim.ev_history.values():
        occupied[network.station_ids.index(ev.station_id), ev.arrival : ev.departure] = True
    assert np.all(pilots[~occupied] == 0), "a pilot before arrival or after departure"
    for station, row in zip(network.station_ids, pilots, strict=True):
        evse = network._EVSEs[station]
        assert all(p == 0 or p in evse.allowable_pilot_signals for p in row), station
    load = np.abs(network.constraint_current(pilots))
    assert np.all(load <= network.magnitudes[:, None] + 1e-6)


@pytest.mark.skipif(not DATA.exists(), reason="needs the Caltech sessions in /work/shared/acn")
def test_the_same_simulation_gives_the_same_pilots() -> None:
    start = datetime(2019, 9, 10, 7, tzinfo=TZ)
    recorded = day_of_sessions(start, hours=2)
    # deterministic as long as HiGHS finishes within its budget (the fallback depends on the clock)
    first = simulate(SmartevAlgorithm(Objective.CHEAPEST, time_budget_s=30), 20, recorded, start)
    again = simulate(SmartevAlgorithm(Objective.CHEAPEST, time_budget_s=30), 20, recorded, start)
    assert np.array_equal(first.pilot_signals, again.pilot_signals)


def test_the_inner_polygon_never_exceeds_a_limit_and_gives_up_little() -> None:
    """Random schedules at the edge of the polygon stay within the exact limit, and close to it."""
    network = acnsim.sites.caltech_acn(transformer_cap=50)
    infrastructure = network_infrastructure(network)
    rows = phasor_limits(infrastructure, network.station_ids, mode="inner", chord_deg=10)
    weights = np.array([[row.weights.get(s, 0.0) for s in network.station_ids] for row in rows])
    bounds = np.array([row.max_a for row in rows])
    rng = np.random.default_rng(1)
    worst_use = 1.0
    for _ in range(300):
        direction = rng.random(len(network.station_ids)) * (rng.random(len(network.station_ids)) < 0.4)
        if not direction.any():
            continue
        scale = np.min(bounds[weights @ direction > 0] / (weights @ direction)[weights @ direction > 0])
        load = np.abs(network.constraint_current((direction * scale)[:, None]))[:, 0]
        assert np.all(load <= network.magnitudes + 1e-6)
        worst_use = min(worst_use, float(np.max(load / network.magnitudes)))
    assert worst_use >= 0.98  # on the binding line, within 2 % of the exact limit (10° chords: 0.4 %)


def test_the_algorithm_is_constructible_with_no_arguments_and_replans_every_period() -> None:
    algorithm = SmartevAlgorithm()
    assert isinstance(algorithm, algorithms.BaseAlgorithm)
    assert algorithm.max_recompute == 1
