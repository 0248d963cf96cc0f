"""The planner's promises: limits, energy, departure, whole amps, and what it prefers when it has the choice."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartev.energy import ALL_PHASES, Limit, Objective, Phase, Plan, Session, Tariff, plan
from smartev.energy import planner as planner_module
from smartev.energy.fallback import solve_llf
from smartev.energy.lp import solve_lp
from smartev.energy.problem import compile_problem

PERIOD_S = 900
TOL = 1e-6


def kwh_per_a(session: Session, period_s: int = PERIOD_S) -> float:
    return session.voltage_v * len(session.phases) * period_s / 3_600_000


def assert_plan_keeps_promises(result: Plan, sessions: list[Session], site: Limit, periods: int) -> None:
    """Check a plan against the inputs directly, without the planner's own bookkeeping."""
    by_id = {s.id: s for s in sessions}
    for node in site.nodes():
        below = {n.id for n in node.nodes()}
        members = [s for s in sessions if (s.circuit or site.id) in below]
        for phase in Phase:
            for t in range(periods):
                load = sum(result.currents_a[s.id][t] for s in members if phase in s.phases)
                assert load <= node.limit_a(phase) + TOL, (node.id, phase, t, load)
    for sid, currents in result.currents_a.items():
        session = by_id[sid]
        assert len(currents) == periods
        assert all(-TOL <= a <= session.max_a + TOL for a in currents)
        assert sum(currents) * kwh_per_a(session, result.period_s) <= session.energy_wanted_kwh + TOL
        assert isinstance(session.departure, int)
        assert all(a == 0 for a in currents[max(session.departure, 0) :]), "current after departure"
        first = result.first_a[sid]
        assert currents[0] == first
        assert first == 0 or session.min_a <= first <= session.max_a


@st.composite
def sites(draw: st.DrawFn) -> Limit:
    def node(name: str, depth: int) -> Limit:
        children = (
            ()
            if depth == 0
            else tuple(node(f"{name}.{i}", depth - 1) for i in range(draw(st.integers(0, 2))))
        )
        unbalanced = draw(st.booleans())
        return Limit(
            id=name,
            max_a=draw(st.integers(0, 80)),
            children=children,
            phase_max_a=tuple(draw(st.integers(0, 80)) for _ in range(3)) if unbalanced else None,  # type: ignore[arg-type]
        )

    return node("site", 2)


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[Session], Limit, Tariff, int]:
    site = draw(sites())
    circuits = [n.id for n in site.nodes()]
    periods = draw(st.integers(1, 16))
    sessions = []
    for i in range(draw(st.integers(0, 8))):
        max_a = draw(st.integers(6, 32))
        sessions.append(
            Session(
                id=f"s{i}",
                station="CA-1",
                connector=i,
                energy_wanted_kwh=draw(st.floats(0, 60)),
                departure=draw(st.integers(-1, periods + 2)),
                max_a=max_a,
                min_a=draw(st.sampled_from([0, 6, min(max_a, 10)])),
                phases=frozenset(draw(st.sets(st.sampled_from(list(Phase)), min_size=1))),
                circuit=draw(st.sampled_from([None, *circuits])),
            )
        )
    prices = Tariff(tuple(draw(st.lists(st.floats(-0.1, 1), min_size=periods, max_size=periods))))
    return sessions, site, prices, periods


@settings(max_examples=80, deadline=None)
@given(case=cases(), objective=st.sampled_from(list(Objective)))
def test_plans_keep_limits_energy_departure_and_whole_amps(
    case: tuple[list[Session], Limit, Tariff, int], objective: Objective
) -> None:
    sessions, site, prices, periods = case
    result = plan(sessions, site, prices, periods, PERIOD_S, objective, time_budget_s=10)
    assert result.solver == "highs"
    assert_plan_keeps_promises(result, sessions, site, periods)


@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_the_fallback_keeps_the_same_promises(case: tuple[list[Session], Limit, Tariff, int]) -> None:
    sessions, site, prices, periods = case
    # the solver failing (or running out of time) is simulated; everything after it is the real planner
    with pytest.MonkeyPatch.context() as m:
        m.setattr(planner_module, "solve_lp", lambda *_: None)
        result = plan(sessions, site, prices, periods, PERIOD_S)
    assert result.solver == "llf"
    assert_plan_keeps_promises(result, sessions, site, periods)


@settings(max_examples=40, deadline=None)
@given(case=cases())
def test_the_lp_delivers_at_least_as_much_as_least_laxity_first(
    case: tuple[list[Session], Limit, Tariff, int],
) -> None:
    sessions, site, prices, periods = case
    problem = compile_problem(sessions, site, prices, periods, PERIOD_S, None)
    lp = solve_lp(problem, Objective.MAX_ENERGY, 10)
    assert lp is not None
    lp_kwh = float((lp.sum(axis=1) * problem.kwh_per_a).sum())
    llf_kwh = float((solve_llf(problem).sum(axis=1) * problem.kwh_per_a).sum())
    assert lp_kwh >= llf_kwh * (1 - 1e-6) - TOL


def test_the_lp_beats_least_laxity_first_where_greed_strands_energy() -> None:
    # the three-phase car departs later but least-laxity-first serves it first and blocks phase A
    sessions = [
        Session("three", "CA-1", 1, energy_wanted_kwh=3 * 230 * 32 * 4 / 3.6e6 * PERIOD_S, departure=4),
        Session(
            "one",
            "CA-2",
            1,
            energy_wanted_kwh=230 * 16 * 2 / 3.6e6 * PERIOD_S,
            departure=2,
            phases=frozenset({Phase.A}),
            max_a=16,
        ),
    ]
    problem = compile_problem(sessions, Limit("site", 32), Tariff((0.2,) * 4), 4, PERIOD_S, None)
    lp = solve_lp(problem, Objective.MAX_ENERGY, 10)
    assert lp is not None
    llf = solve_llf(problem)
    assert (lp.sum(axis=1) * problem.kwh_per_a).sum() >= (llf.sum(axis=1) * problem.kwh_per_a).sum()


def one_car(kwh: float, departure: int | datetime = 8) -> Session:
    return Session("car", "home", 1, energy_wanted_kwh=kwh, departure=departure, max_a=16)


EXPENSIVE_THEN_CHEAP = Tariff((0.40,) * 4 + (0.10,) * 4)


def test_cheapest_waits_for_the_cheap_periods_when_there_is_slack() -> None:
    car = one_car(kwh=3 * 230 * 16 * 3 / 3.6e6 * PERIOD_S)  # three periods at full current
    result = plan([car], Limit("site", 32), EXPENSIVE_THEN_CHEAP, 8, PERIOD_S, Objective.CHEAPEST)
    assert result.first_a["car"] == 0
    assert result.currents_a["car"][:4] == (0, 0, 0, 0)
    assert result.energy_kwh["car"] == pytest.approx(car.energy_wanted_kwh)
    assert result.explanations["car"] == ("cheaper later", "full by departure")


def test_cheapest_still_buys_expensive_energy_when_the_cheap_periods_are_not_enough() -> None:
    car = one_car(kwh=3 * 230 * 16 * 6 / 3.6e6 * PERIOD_S)  # six periods at full current, four are cheap
    result = plan([car], Limit("site", 32), EXPENSIVE_THEN_CHEAP, 8, PERIOD_S, Objective.CHEAPEST)
    assert result.energy_kwh["car"] == pytest.approx(car.energy_wanted_kwh)
    assert result.currents_a["car"][4:] == pytest.approx((16, 16, 16, 16))


def test_max_energy_charges_now_whatever_the_price() -> None:
    car = one_car(kwh=3 * 230 * 16 * 3 / 3.6e6 * PERIOD_S)
    result = plan([car], Limit("site", 32), EXPENSIVE_THEN_CHEAP, 8, PERIOD_S, Objective.MAX_ENERGY)
    assert result.currents_a["car"][:3] == pytest.approx((16, 16, 16))
    assert result.explanations["car"] == ("at its maximum current", "full by departure")


def test_three_phase_unbalance_limits_each_phase_on_its_own() -> None:
    # phase B allows 16 A: three single-phase cars on B cannot all get 6 A; the car on A is unaffected
    site = Limit("site", 32, phase_max_a=(32, 16, 32))
    on_b = [
        Session(f"b{i}", "CA-1", i, energy_wanted_kwh=30, departure=8, phases=frozenset({Phase.B}))
        for i in range(3)
    ]
    on_a = Session("a", "CA-2", 1, energy_wanted_kwh=30, departure=8, phases=frozenset({Phase.A}))
    sessions = [*on_b, on_a]
    result = plan(sessions, site, Tariff((0.2,) * 8), 8, PERIOD_S)
    assert_plan_keeps_promises(result, sessions, site, 8)
    assert sum(result.first_a[s.id] for s in on_b) == 16
    assert sum(sum(result.currents_a[s.id]) for s in on_b) == pytest.approx(16 * 8)
    assert result.first_a["a"] == 32
    for paused in (s.id for s in on_b if result.first_a[s.id] == 0):
        assert "limited by circuit site (phase B)" in result.explanations[paused]


def test_a_car_whose_share_is_below_its_minimum_is_paused_and_told_why() -> None:
    site = Limit("site", 32, phase_max_a=(32, 4, 32))
    car = Session("car", "CA-1", 1, energy_wanted_kwh=30, departure=8, phases=frozenset({Phase.B}))
    result = plan([car], site, Tariff((0.2,) * 8), 8, PERIOD_S)
    assert result.first_a["car"] == 0
    assert result.explanations["car"][:2] == ("paused: below 6 A", "limited by circuit site (phase B)")


@pytest.mark.parametrize("objective", list(Objective))
def test_current_freed_by_a_paused_car_goes_to_the_others(objective: Objective) -> None:
    # 16 A shared by three cars is 5.3 A each: one is paused so that the other two reach their 6 A
    site = Limit("site", 32, phase_max_a=(32, 16, 32))
    cars = [
        Session(f"b{i}", "CA-1", i, energy_wanted_kwh=1.5, departure=4, phases=frozenset({Phase.B}))
        for i in range(3)
    ]
    result = plan(cars, site, Tariff((0.2,) * 4), 4, PERIOD_S, objective)
    first = sorted(result.first_a.values())
    assert first[0] == 0 and first[1] >= 6 and sum(first) >= 12


def test_a_full_circuit_is_named_in_the_explanation() -> None:
    site = Limit("site", 63, children=(Limit("garage", 20),))
    sessions = [
        Session(f"g{i}", "CA-1", i, energy_wanted_kwh=50, departure=8, circuit="garage") for i in range(2)
    ]
    result = plan(sessions, site, Tariff((0.2,) * 8), 8, PERIOD_S)
    assert sum(result.first_a.values()) == 20
    assert all("limited by circuit garage (phase A)" in why for why in result.explanations.values())


def test_departure_may_be_a_time() -> None:
    start = datetime(2026, 1, 1, 22, tzinfo=UTC)
    car = one_car(kwh=100, departure=start + timedelta(seconds=2.5 * PERIOD_S))
    result = plan([car], Limit("site", 32), EXPENSIVE_THEN_CHEAP, 8, PERIOD_S, start=start)
    # it leaves during period 2, so only periods 0 and 1 count
    assert result.currents_a["car"] == pytest.approx((16, 16, 0, 0, 0, 0, 0, 0))


def test_the_same_inputs_give_the_same_plan() -> None:
    sessions = [
        Session(f"s{i}", "CA-1", i, energy_wanted_kwh=5 + 3 * i, departure=2 + i, phases=frozenset({Phase.A}))
        for i in range(6)
    ]
    first = plan(sessions, Limit("site", 40), EXPENSIVE_THEN_CHEAP, 8, PERIOD_S)
    again = plan(sessions, Limit("site", 40), EXPENSIVE_THEN_CHEAP, 8, PERIOD_S)
    assert (first.currents_a, first.explanations) == (again.currents_a, again.explanations)


@pytest.mark.parametrize(
    ("sessions", "tariff_periods", "message"),
    [
        ([Session("x", "CA-1", 1, 10, 4, circuit="nowhere")], 8, "unknown circuits"),
        ([Session("x", "CA-1", 1, 10, 4), Session("x", "CA-2", 1, 10, 4)], 8, "unique"),
        ([Session("x", "CA-1", 1, 10, 4)], 4, "tariff covers 4 periods"),
        ([Session("x", "CA-1", 1, 10, datetime(2026, 1, 1, tzinfo=UTC))], 8, "needs `start`"),
    ],
)
def test_inputs_that_contradict_each_other_are_refused(
    sessions: list[Session], tariff_periods: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plan(sessions, Limit("site", 32), Tariff((0.2,) * tariff_periods), 8, PERIOD_S)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Session("x", "CA-1", 1, 10, 4, min_a=10, max_a=6),
        lambda: Session("x", "CA-1", 1, -1, 4),
        lambda: Session("x", "CA-1", 1, 10, 4, phases=frozenset()),
        lambda: Limit("site", -1),
    ],
)
def test_impossible_data_cannot_be_built(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def fifty_sessions() -> tuple[list[Session], Limit]:
    """50 sessions of mixed phases, needs and departures on four 100 A feeders of a 250 A site (24 h of 5 min)."""
    sessions = [
        Session(
            f"s{i}",
            f"CA-{i}",
            1,
            energy_wanted_kwh=5 + (i * 7) % 35,
            departure=12 + (i * 37) % 276,
            phases=ALL_PHASES if i % 3 == 0 else frozenset({list(Phase)[i % 3]}),
            circuit=f"feeder{i % 4}",
        )
        for i in range(50)
    ]
    return sessions, Limit("site", 250, children=tuple(Limit(f"feeder{j}", 100) for j in range(4)))


def test_fifty_sessions_over_a_day_of_five_minute_periods() -> None:
    """Plans 50 sessions × 288 periods and prints the solve time (speed is measured in bench/, not here)."""
    sessions, site = fifty_sessions()
    prices = Tariff(tuple(0.30 if 84 <= t < 252 else 0.15 for t in range(288)))
    for objective in Objective:
        result = plan(sessions, site, prices, 288, 300, objective, time_budget_s=30)
        print(f"\n50 sessions × 288 periods, {objective}: {result.solve_s:.3f} s ({os.cpu_count()} cores)")
        assert result.solver == "highs"
        assert_plan_keeps_promises(result, sessions, site, 288)
