"""What an operator sees when choosing solar, fairness or a demand charge, and when the house takes its share."""

from __future__ import annotations

import os
import time

import pytest

from energy.test_planner import fifty_sessions
from smartev.energy import Limit, Objective, Phase, Session, SiteForecast, Tariff, plan

HOUR = 3600
ONE_PHASE = frozenset({Phase.A})


def kw(current_a: float, phases: int = 1) -> float:
    return current_a * 230 * phases / 1000


def test_with_solar_in_the_afternoon_a_car_leaving_at_18_charges_in_the_afternoon() -> None:
    # period 0 is 06:00; the panels make 7 kW from 10:00 to 16:00; the car leaves at 18:00 (period 12)
    solar = tuple(7.0 if 10 <= 6 + t < 16 else 0.0 for t in range(24))
    forecast = SiteForecast(house_kw=(0.5,) * 24, solar_kw=solar)
    car = Session("car", "home", 1, energy_wanted_kwh=20, departure=12, max_a=16, phases=ONE_PHASE)
    result = plan(
        [car], Limit("site", 25), Tariff((0.25,) * 24), 24, HOUR, Objective.SOLAR, forecast=forecast
    )
    currents = result.currents_a["car"]
    assert result.energy_kwh["car"] == pytest.approx(20)
    assert sum(currents[4:10]) == pytest.approx(sum(currents)), "all of it between 10:00 and 16:00"
    assert result.first_a["car"] == 0
    assert "waiting for solar" in result.explanations["car"]
    assert result.explanations["car"][-1] == "full by departure"
    # the same car under the default objective charges right away
    eager = plan([car], Limit("site", 25), Tariff((0.25,) * 24), 24, HOUR, forecast=forecast)
    assert eager.first_a["car"] == 16


def test_solar_first_then_the_grid_when_the_sun_is_not_enough() -> None:
    solar = tuple(2.0 if 4 <= t < 8 else 0.0 for t in range(12))
    car = Session("car", "home", 1, energy_wanted_kwh=20, departure=12, max_a=16, phases=ONE_PHASE)
    result = plan(
        [car],
        Limit("site", 25),
        Tariff((0.25,) * 12),
        12,
        HOUR,
        Objective.SOLAR,
        forecast=SiteForecast(solar_kw=solar),
    )
    currents = result.currents_a["car"]
    assert result.energy_kwh["car"] == pytest.approx(20)
    # every sunny hour uses at least the surplus (2 kW is 8.7 A)
    assert all(currents[t] >= 2000 / 230 - 1e-6 for t in range(4, 8))


def test_the_house_load_takes_its_share_of_the_connection_first() -> None:
    # 11.5 kW of house load is 16.7 A per phase of a 25 A connection: 8 A are left for the car now
    house = (11.5,) + (0.0,) * 7
    car = Session("car", "home", 1, energy_wanted_kwh=90, departure=8, max_a=16)
    result = plan(
        [car], Limit("site", 25), Tariff((0.25,) * 8), 8, HOUR, forecast=SiteForecast(house_kw=house)
    )
    assert result.first_a["car"] == 8
    assert result.currents_a["car"][1:] == pytest.approx((16,) * 7)
    assert "limited by house load" in result.explanations["car"]
    assert "limited by circuit site (phase A)" in result.explanations["car"]


def peak_kw(result_currents: dict[str, tuple[float, ...]], house: tuple[float, ...]) -> float:
    periods = len(house)
    return max(sum(kw(c[t], 3) for c in result_currents.values()) + house[t] for t in range(periods))


def test_a_demand_charge_flattens_the_peak() -> None:
    # two cars that could be full in 2 hours at full power, with 8 hours to go; the house peaks at hour 1
    house = (1.0, 6.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    cars = [
        Session(f"car{i}", "garage", i, energy_wanted_kwh=2 * kw(16, 3), departure=8, max_a=16)
        for i in range(2)
    ]
    site = Limit("site", 63)
    forecast = SiteForecast(house_kw=house)
    flat = Tariff((0.25,) * 8)
    charged = Tariff((0.25,) * 8, demand_charge_per_kw=10.0)
    without = plan(cars, site, flat, 8, HOUR, Objective.CHEAPEST, forecast=forecast)
    with_charge = plan(cars, site, charged, 8, HOUR, Objective.CHEAPEST, forecast=forecast)
    for result in (without, with_charge):
        assert sum(result.energy_kwh.values()) == pytest.approx(4 * kw(16, 3))
    # all the energy spread over the 8 hours, on top of the house, gives the lowest peak possible
    lowest = (4 * kw(16, 3) + sum(house)) / 8
    assert peak_kw(dict(without.currents_a), house) > 20
    # period 0 is whole amps (rounded), the rest is the LP's plan
    assert peak_kw(dict(with_charge.currents_a), house) <= lowest + kw(2, 3)
    assert max(
        sum(c[t] for c in with_charge.currents_a.values()) for t in range(1, 8)
    ) * 3 * 0.23 == pytest.approx(lowest - 1.0, abs=1e-3) or peak_kw(
        dict(with_charge.currents_a), house
    ) == pytest.approx(lowest, abs=kw(2, 3))


def test_fairness_gives_two_equal_cars_equal_shares() -> None:
    # a 16 A circuit cannot fill both: each gets half of what gets through
    cars = [
        Session(f"car{i}", f"CP-{i}", 1, energy_wanted_kwh=40, departure=6, max_a=16, circuit="garage")
        for i in range(2)
    ]
    site = Limit("site", 63, children=(Limit("garage", 16),))
    result = plan(cars, site, Tariff((0.25,) * 6), 6, HOUR, Objective.FAIRNESS)
    assert result.energy_kwh["car0"] == pytest.approx(result.energy_kwh["car1"], abs=1e-6)
    assert sum(result.energy_kwh.values()) == pytest.approx(kw(16, 3) * 6)
    assert all("sharing fairly" in why for why in result.explanations.values())


def test_fairness_gives_every_driver_the_same_fraction_of_what_they_want() -> None:
    cars = [
        Session("small", "CP-1", 1, energy_wanted_kwh=10, departure=4, max_a=32, circuit="garage"),
        Session("big", "CP-2", 1, energy_wanted_kwh=30, departure=4, max_a=32, circuit="garage"),
    ]
    site = Limit("site", 63, children=(Limit("garage", 20 / (4 * 0.69)),))  # 20 kWh get through in 4 h
    result = plan(cars, site, Tariff((0.25,) * 4), 4, HOUR, Objective.FAIRNESS)
    # period 0 is rounded to whole amps; the shares are those of the plan
    assert sum(result.energy_kwh.values()) == pytest.approx(20, abs=0.5)
    assert result.energy_kwh["small"] / 10 == pytest.approx(result.energy_kwh["big"] / 30, abs=0.03)


@pytest.mark.parametrize("objective", list(Objective))
def test_fifty_sessions_over_a_day_with_solar_house_load_and_a_demand_charge(objective: Objective) -> None:
    """Prints the solve time of 50 sessions × 288 five-minute periods with every input in use."""
    sessions, site = fifty_sessions()
    prices = Tariff(tuple(0.30 if 84 <= t < 252 else 0.15 for t in range(288)), demand_charge_per_kw=12.0)
    forecast = SiteForecast(
        house_kw=tuple(20.0 + 10 * (96 <= t < 120) for t in range(288)),
        solar_kw=tuple(max(0.0, 60 * (1 - abs(t - 156) / 60)) for t in range(288)),
    )
    began = time.perf_counter()
    result = plan(sessions, site, prices, 288, 300, objective, time_budget_s=30, forecast=forecast)
    took = time.perf_counter() - began
    print(
        f"\n50 sessions × 288 periods, {objective}, solar + house + demand charge: {took:.3f} s ({os.cpu_count()} cores)"
    )
    assert result.solver == "highs"
