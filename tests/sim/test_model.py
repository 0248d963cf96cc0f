"""The simulated car model: deterministic, physically sensible, always valid VSS, obedient to commands."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartev.agent import source
from smartev.sim import model as model_module
from smartev.sim.model import (
    CAR_MODELS,
    CENTRE_LATITUDE,
    CENTRE_LONGITUDE,
    TB,
    CarModel,
    CarState,
    SignalValue,
    car_spec,
)
from smartev.vss import SignalRejected, default_catalog

MONDAY = datetime(2026, 11, 23, tzinfo=UTC)  # a weekday in late November: commutes and heating
SOC = f"{TB}.StateOfCharge.Current"
ENERGY = f"{TB}.StateOfCharge.CurrentEnergy"
POWER = f"{TB}.CurrentPower"
LOCKED = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"
LAT = "Vehicle.CurrentLocation.Latitude"
LON = "Vehicle.CurrentLocation.Longitude"


def assert_valid(signals: dict[str, SignalValue]) -> None:
    """Every value passes the platform's VSS validation, unchanged by coercion."""
    catalog = default_catalog()
    for path, value in signals.items():
        try:
            coerced = catalog.validate(path, value)
        except SignalRejected as exc:
            raise AssertionError(f"{path}={value!r} rejected: {exc.reason}") from None
        assert coerced == value, path


def num(signals: dict[str, SignalValue], path: str) -> float:
    """A numeric signal's value (fails the test for any other type)."""
    value = signals[path]
    assert isinstance(value, int | float) and not isinstance(value, bool), (path, value)
    return float(value)


def run(model: CarModel, seconds: float, dt: float = 1.0) -> list[dict[str, SignalValue]]:
    """Step `model` for `seconds` in steps of `dt`, returning every step's signals."""
    return [model.step(dt) for _ in range(round(seconds / dt))]


def at_home(soc: float) -> CarModel:
    """A car with a wallbox, at home and plugged in, at 23:00 local on a Sunday (nobody leaves before Monday)."""
    for seed in range(3, 50):
        model = CarModel(seed, MONDAY - timedelta(hours=2), soc=soc)
        if model.home_charger:
            assert model.plugged_in and model.position == (model.home.latitude, model.home.longitude)
            return model
    raise AssertionError("no car with a wallbox among 47 seeds")


def away_from_home() -> CarModel:
    """A car parked at work at noon, not plugged in."""
    for seed in range(50):
        model = CarModel(seed, MONDAY + timedelta(hours=11), soc=70)
        if model.position == (model.work.latitude, model.work.longitude):
            assert not model.plugged_in and model.state is CarState.PARKED
            return model
    raise AssertionError("no commuter among 50 seeds")


# -- determinism -------------------------------------------------------------------------------------------


def test_same_seed_and_steps_give_the_same_car() -> None:
    a, b = CarModel(7, MONDAY), CarModel(7, MONDAY)
    assert run(a, 6 * 3600, 5.0) == run(b, 6 * 3600, 5.0)


def test_different_seeds_give_different_cars() -> None:
    homes = {CarModel(seed, MONDAY).home for seed in range(20)}
    assert len(homes) == 20


def test_routine_does_not_depend_on_step_size() -> None:
    fine, coarse = CarModel(11, MONDAY), CarModel(11, MONDAY)
    assert fine.upcoming_trips == coarse.upcoming_trips
    run(fine, 12 * 3600, 1.0)
    run(coarse, 12 * 3600, 30.0)
    assert fine.upcoming_trips == coarse.upcoming_trips
    assert fine.position == pytest.approx(coarse.position)


def test_homes_and_workplaces_are_within_about_ten_km_of_berlin_centre() -> None:
    for seed in range(200):
        model = CarModel(seed, MONDAY)
        for place in (model.home, model.work):
            north_km = (place.latitude - CENTRE_LATITUDE) * 111.32
            east_km = (place.longitude - CENTRE_LONGITUDE) * 111.32 * math.cos(math.radians(CENTRE_LATITUDE))
            assert math.hypot(north_km, east_km) <= 10.01


# -- validity ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_name", sorted(CAR_MODELS))
def test_every_signal_over_a_simulated_day_is_valid_vss(model_name: str) -> None:
    model = CarModel(1, MONDAY, car_spec(model_name))
    seen_states = set()
    for _ in range(24 * 1800):
        assert_valid(model.step(2.0))
        seen_states.add(model.state)
    assert CarState.DRIVING in seen_states


def test_the_command_vocabulary_is_the_agents() -> None:
    # One definition of commands, outcomes and limits, shared by the simulator and the in-car agent.
    assert model_module.COMMAND_NAMES is source.COMMAND_NAMES
    assert model_module.CommandOutcome is source.CommandOutcome
    assert model_module.SignalValue is source.SignalValue
    assert (model_module.MIN_CHARGE_LIMIT, model_module.MAX_TARGET_C) == (
        source.MIN_CHARGE_LIMIT,
        source.MAX_TARGET_C,
    )
    model = CarModel(1, MONDAY)
    for name in source.COMMAND_NAMES:
        assert not model.apply_command(name, {}).detail.startswith("unknown command"), name
    assert model.apply_command("fly", {}).detail.startswith("unknown command")


def test_unknown_car_model_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="smartev S1"):
        car_spec("Trabant")


command_args = st.dictionaries(
    st.sampled_from(["on", "target_temperature", "action", "limit"]),
    st.one_of(st.booleans(), st.integers(0, 120), st.floats(10.0, 35.0), st.sampled_from(["start", "stop"])),
    max_size=2,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    start=st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)),
    soc=st.one_of(st.none(), st.floats(0.0, 100.0)),
    model_name=st.sampled_from(sorted(CAR_MODELS)),
    steps=st.lists(
        st.tuples(
            st.floats(0.0, 900.0),
            st.none()
            | st.tuples(st.sampled_from(["lock", "unlock", "climate", "charge", "honk_flash"]), command_args),
        ),
        min_size=1,
        max_size=150,
    ),
)
def test_any_seed_start_steps_and_commands_give_valid_signals(
    seed: int,
    start: datetime,
    soc: float | None,
    model_name: str,
    steps: list[tuple[float, tuple[str, dict[str, Any]] | None]],
) -> None:
    model = CarModel(seed, start, car_spec(model_name), soc=soc)
    assert_valid(model.signals())
    for dt, command in steps:
        if command is not None:
            status, detail = model.apply_command(*command)
            assert status in ("succeeded", "failed", "rejected") and detail
        before = model.time
        signals = model.step(dt)
        assert model.time == before + dt
        assert_valid(signals)
        assert 0.0 <= model.soc <= 100.0


def test_negative_or_infinite_steps_are_refused() -> None:
    model = CarModel(1, MONDAY)
    for dt in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            model.step(dt)


# -- physics -----------------------------------------------------------------------------------------------


def drive_one_trip(model: CarModel) -> list[dict[str, SignalValue]]:
    """Step until the car has driven one whole trip; the signals from departure to arrival."""
    trip: list[dict[str, SignalValue]] = []
    for _ in range(48 * 3600):
        signals = model.step(1.0)
        if model.state is CarState.DRIVING or trip:
            trip.append(signals)
            if model.state is not CarState.DRIVING:
                return trip
    raise AssertionError("the car never drove")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_driving_uses_energy_and_moves_the_car_the_way_it_heads(seed: int) -> None:
    model = CarModel(seed, MONDAY, soc=90)
    trip = drive_one_trip(model)
    first, last = trip[0], trip[-1]
    assert num(last, ENERGY) < num(first, ENERGY)
    assert num(last, SOC) < num(first, SOC)
    km = (num(last, "Vehicle.TraveledDistance") - num(first, "Vehicle.TraveledDistance")) / 1000
    kwh = num(first, ENERGY) - num(last, ENERGY)
    assert 0.08 < kwh / km < 0.40  # an EV in November
    speeds = [num(s, "Vehicle.Speed") for s in trip]
    assert max(speeds) <= 131.0  # the WLTC's top speed; city streets are checked by road class elsewhere
    assert 15.0 < sum(speeds) / len(speeds) < 100.0
    for before, after in itertools.pairwise(trip):
        # Energy only rises through regenerative braking, which shows as power into the battery.
        if num(after, ENERGY) > num(before, ENERGY):
            assert num(after, POWER) > 0
        # Streets run north-south or east-west, the motorway ring also diagonally; the car goes where it heads.
        heading = num(after, "Vehicle.CurrentLocation.Heading")
        assert heading % 45 == 0
        north_m = (num(after, LAT) - num(before, LAT)) * 111_320
        east_m = (num(after, LON) - num(before, LON)) * 111_320 * math.cos(math.radians(CENTRE_LATITUDE))
        if heading == before["Vehicle.CurrentLocation.Heading"] and math.hypot(north_m, east_m) > 3:
            direction = math.degrees(math.atan2(east_m, north_m)) % 360
            assert min(abs(direction - heading), 360 - abs(direction - heading)) < 3
            if heading % 90 == 0:
                assert after[LAT] == before[LAT] or after[LON] == before[LON]
        # Acceleration and braking stay within what drivers do (m/s per second).
        change = abs(num(after, "Vehicle.Speed") - num(before, "Vehicle.Speed")) / 3.6
        assert change <= 2.6
    assert last["Vehicle.Speed"] == 0.0 and last["Vehicle.IsMoving"] is False


def test_arriving_home_low_starts_charging() -> None:
    model = CarModel(2, MONDAY + timedelta(hours=12), soc=45)
    assert (model.state, model.plugged_in) == (CarState.PARKED, False)
    for _ in range(24 * 60):
        model.step(60.0)
        if model.plugged_in:
            break
    assert model.position == (model.home.latitude, model.home.longitude)
    assert model.state is CarState.CHARGING


def test_charging_fills_the_battery_and_tapers_above_80_percent() -> None:
    model = at_home(soc=30.0)
    assert model.apply_command("charge", {"limit": 100}).status == "succeeded"
    assert model.state is CarState.CHARGING
    estimate_s = model.signals()[f"{TB}.Charging.TimeToComplete"]
    power_at: dict[int, float] = {}
    elapsed = 0.0
    previous = model.energy_kwh
    while model.state is CarState.CHARGING:
        signals = model.step(60.0)
        elapsed += 60.0
        assert model.energy_kwh >= previous
        previous = model.energy_kwh
        power_at.setdefault(int(model.soc) // 10 * 10, num(signals, POWER))
        assert_valid(signals)
    assert model.soc == pytest.approx(100.0, abs=0.01)
    assert power_at[50] > 9_000  # 11 kW AC, less charger losses and the car's own load
    assert power_at[90] < 0.75 * power_at[50]
    assert elapsed == pytest.approx(estimate_s, rel=0.05)
    done = model.signals()
    assert done[f"{TB}.Charging.IsCharging"] is False
    assert done[f"{TB}.Charging.TimeToComplete"] == 0
    assert 8.0 < num(done, f"{TB}.Charging.AveragePower") <= 11.0


def test_charging_stops_at_the_charge_limit() -> None:
    model = at_home(soc=40.0)
    model.apply_command("charge", {"limit": 70})
    socs = [num(signals, SOC) for signals in run(model, 4 * 3600, 60.0)]
    assert model.state is CarState.PARKED
    assert max(socs) == 70.0
    assert socs[-1] < 70.0  # parked, a little drain, no restart


def test_a_parked_car_drains_slowly() -> None:
    model = away_from_home()
    before = model.energy_kwh
    run(model, 3600, 60.0)
    assert before - model.energy_kwh == pytest.approx(0.030, rel=0.01)


# -- commands ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "reason"),
    [
        ("fly", {}, "unknown command 'fly'"),
        ("lock", {"force": True}, "lock takes no arguments"),
        ("lock", [], "args must be a JSON object"),
        ("climate", {}, "'on'"),
        ("climate", {"on": "yes"}, "'on'"),
        ("climate", {"on": True, "target_temperature": 40}, "between 15 and 30"),
        ("climate", {"on": True, "target_temperature": True}, "number"),
        ("climate", {"on": True, "fan": 3}, "unexpected argument(s) fan"),
        ("charge", {}, "action"),
        ("charge", {"action": "pause"}, "'start' or 'stop'"),
        ("charge", {"limit": 30}, "between 50 and 100"),
        ("charge", {"limit": 80.5}, "whole number"),
        ("charge", {"limit": True}, "whole number"),
        ("honk_flash", {"times": 3}, "honk_flash takes no arguments"),
    ],
)
def test_bad_commands_are_rejected_with_a_reason_and_change_nothing(
    name: str, args: Any, reason: str
) -> None:
    model = at_home(soc=70.0)
    before = model.signals()
    status, detail = model.apply_command(name, args)
    assert status == "rejected"
    assert reason in detail
    assert model.signals() == before


def test_lock_and_unlock() -> None:
    model = at_home(soc=70.0)
    assert model.apply_command("unlock", {}) == ("succeeded", "unlocked")
    assert model.signals()[LOCKED] is False
    assert model.apply_command("lock", {}) == ("succeeded", "locked")
    assert model.signals()[LOCKED] is True
    assert model.apply_command("lock", {}) == ("succeeded", "already locked")


def test_climate_heats_the_cabin_and_switches_itself_off() -> None:
    model = away_from_home()
    outside = num(model.signals(), "Vehicle.Exterior.AirTemperature")
    assert outside < 15
    assert model.apply_command("climate", {"on": True, "target_temperature": 22.5}).status == "succeeded"
    signals = model.signals()
    assert signals["Vehicle.Cabin.HVAC.IsAirConditioningActive"] is True
    assert signals["Vehicle.Cabin.HVAC.Station.Row1.Driver.Temperature"] == 22.5
    assert signals["Vehicle.LowVoltageSystemState"] == "ACC"
    signals = run(model, 15 * 60, 10.0)[-1]
    assert signals["Vehicle.Cabin.HVAC.AmbientAirTemperature"] == pytest.approx(22.5, abs=0.5)
    assert num(signals, POWER) < -1000
    signals = run(model, 20 * 60, 10.0)[-1]
    assert signals["Vehicle.Cabin.HVAC.IsAirConditioningActive"] is False  # preconditioning ends by itself


def test_charge_start_needs_a_cable() -> None:
    model = away_from_home()
    before = model.signals()
    assert model.apply_command("charge", {"action": "start", "limit": 90}) == (
        "failed",
        "no charging cable connected",
    )
    assert model.signals() == before  # not even the limit changed


def test_charge_start_stop_and_limit_at_home() -> None:
    model = at_home(soc=70.0)
    assert model.state is CarState.PARKED  # above 60 %: it did not start by itself
    assert model.apply_command("charge", {"limit": 65, "action": "start"}).status == "failed"
    assert model.apply_command("charge", {"action": "start", "limit": 90}) == (
        "succeeded",
        "charge limit 90 %, charging",
    )
    signals = model.step(10.0)
    assert signals[f"{TB}.Charging.IsCharging"] is True
    assert signals[f"{TB}.Charging.ChargeLimit"] == 90
    assert num(signals, f"{TB}.Charging.TimeToComplete") > 0
    assert model.apply_command("charge", {"action": "stop"}) == ("succeeded", "charging stopped")
    assert model.step(10.0)[f"{TB}.Charging.IsCharging"] is False
    assert model.apply_command("charge", {"action": "stop"}) == ("succeeded", "was not charging")


def test_lowering_the_limit_below_the_charge_ends_charging() -> None:
    model = at_home(soc=55.0)
    assert model.signals()[f"{TB}.Charging.IsCharging"] is True
    assert (
        model.apply_command("charge", {"limit": 50}).detail
        == "charge limit 50 %, limit reached, charging complete"
    )
    assert model.state is CarState.PARKED


def test_honk_flash_is_brief() -> None:
    model = at_home(soc=70.0)
    assert model.apply_command("honk_flash", {}).status == "succeeded"
    signals = model.signals()
    assert signals["Vehicle.Body.Horn.IsActive"] is True
    assert signals["Vehicle.Body.Lights.Hazard.IsSignaling"] is True
    assert model.step(5.0)["Vehicle.Body.Horn.IsActive"] is False
    assert model.step(10.0)["Vehicle.Body.Lights.Hazard.IsSignaling"] is False


def test_no_unlock_or_honk_while_driving() -> None:
    model = CarModel(1, MONDAY, soc=90)
    while model.state is not CarState.DRIVING:
        model.step(10.0)
    assert model.apply_command("unlock", {}).status == "failed"
    assert model.apply_command("honk_flash", {}).status == "failed"
    assert model.signals()[LOCKED] is True
    assert model.apply_command("lock", {}).status == "succeeded"
