"""What a charging session costs: the sums a driver would check on the receipt, in any time zone and season."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartev.clock import EPOCH
from smartev.csms.tariffs import CostBreakdown, Tariff, TimeOfUse, session_cost
from smartev.errors import InvalidInput

BERLIN = "Europe/Berlin"
REGISTER = 1_234_567  # a station's meter does not start at zero; only differences count
MINUTE = 60_000
HOUR = 60 * MINUTE
D = Decimal


def at(text: str, zone: str = "UTC") -> int:
    """Epoch ms of a wall-clock time such as "2026-11-20 22:00" in a zone (the first, if the clocks repeat it)."""
    return (datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)) - EPOCH) // timedelta(milliseconds=1)


def steady(start_ms: int, stop_ms: int, wh: int, readings: int = 9) -> list[tuple[int, float]]:
    """Meter readings of a car drawing constant power from start to stop."""
    n = readings - 1
    return [(start_ms + (stop_ms - start_ms) * i // n, REGISTER + wh * i // n) for i in range(readings)]


def parts(cost: CostBreakdown) -> tuple[str, str, str, str, str]:
    return str(cost.energy), str(cost.time), str(cost.idle), str(cost.session), str(cost.total)


NIGHT = TimeOfUse(start=time(22, 0), end=time(6, 0), per_kwh=D("0.20"))
NIGHT_TARIFF = Tariff(currency="EUR", per_kwh=D("0.40"), periods=(NIGHT,))
NIGHT_BERLIN = Tariff(currency="EUR", per_kwh=D("0.40"), periods=(NIGHT,), timezone=BERLIN)


# --- simple prices ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wh", "per_kwh", "expected"),
    [
        (10_000, "0.30", "3.00"),  # 10 kWh at 0.30 EUR
        (7_500, "0.39", "2.93"),  # 2.925 rounds half up
        (22_170, "0.49", "10.86"),  # 10.8633
        (0, "0.30", "0.00"),
    ],
)
def test_energy_at_a_flat_price(wh: int, per_kwh: str, expected: str) -> None:
    start, stop = at("2026-11-20 10:00"), at("2026-11-20 12:00")
    cost = session_cost(Tariff(currency="EUR", per_kwh=D(per_kwh)), steady(start, stop, wh), start, stop)
    assert parts(cost) == (expected, "0.00", "0.00", "0.00", expected)
    assert cost.energy_wh == wh
    assert cost.currency == "EUR"


@pytest.mark.parametrize(
    ("minutes", "per_minute", "expected"),
    [
        (90, "0.05", "4.50"),
        (30.5, "0.10", "3.05"),  # parts of a minute count pro rata
        (0, "0.10", "0.00"),
    ],
)
def test_time_fee_counts_every_minute_plugged_in(minutes: float, per_minute: str, expected: str) -> None:
    start = at("2026-11-20 10:00")
    stop = start + int(minutes * MINUTE)
    tariff = Tariff(currency="EUR", per_kwh=D("0.30"), per_minute=D(per_minute))
    cost = session_cost(tariff, [], start, stop)
    assert parts(cost) == ("0.00", expected, "0.00", "0.00", expected)


def test_session_fee_is_charged_once_even_without_energy() -> None:
    start = at("2026-11-20 10:00")
    tariff = Tariff(currency="EUR", per_kwh=D("0.30"), session_fee=D("1.50"))
    assert session_cost(tariff, [], start, start + HOUR).total == D("1.50")
    assert parts(session_cost(tariff, steady(start, start + HOUR, 10_000), start, start + HOUR)) == (
        "3.00",
        "0.00",
        "0.00",
        "1.50",
        "4.50",
    )


@pytest.mark.parametrize(
    ("grace_min", "idle_per_minute", "stop_after_min", "idle", "idle_minutes"),
    [
        (30, "0.10", 120, "3.00", 60),  # charged for an hour, then an hour plugged in: 30 of it free
        (0, "0.10", 120, "6.00", 60),
        (60, "0.10", 120, "0.00", 60),  # exactly the free minutes
        (90, "0.10", 120, "0.00", 60),  # left well within them
        (30, "0.10", 60, "0.00", 0),  # unplugged as soon as the car was full
        (30, "0", 120, "0.00", 60),  # no idle fee in this tariff
        (30, "0.10", 100.5, "1.05", 40.5),  # parts of a minute count pro rata
    ],
)
def test_idle_fee_after_the_free_minutes(
    grace_min: int, idle_per_minute: str, stop_after_min: float, idle: str, idle_minutes: float
) -> None:
    start = at("2026-11-20 18:00")
    full = start + HOUR
    stop = start + int(stop_after_min * MINUTE)
    # Stations keep sending readings while the car sits there full.
    samples = steady(start, full, 11_000, readings=5) + [
        (t, REGISTER + 11_000) for t in range(full, stop, 15 * MINUTE)
    ]
    tariff = Tariff(
        currency="EUR", per_kwh=D("0.30"), idle_per_minute=D(idle_per_minute), idle_grace_min=grace_min
    )
    cost = session_cost(tariff, [*samples, (stop, REGISTER + 11_000)], start, stop)
    assert parts(cost) == ("3.30", "0.00", idle, "0.00", str(D("3.30") + D(idle)))
    assert cost.idle_minutes == idle_minutes


def test_a_car_that_never_draws_power_is_idle_all_along() -> None:
    start = at("2026-11-20 18:00")
    tariff = Tariff(currency="EUR", per_kwh=D("0.30"), idle_per_minute=D("0.10"), idle_grace_min=15)
    cost = session_cost(tariff, [(start, REGISTER), (start + HOUR, REGISTER)], start, start + HOUR)
    assert (cost.idle, cost.idle_minutes, cost.total) == (D("4.50"), 60, D("4.50"))


@pytest.mark.parametrize("samples", [[], [(at("2026-11-20 18:30"), REGISTER)]])
def test_without_two_readings_nobody_knows_when_charging_ended(samples: list[tuple[int, float]]) -> None:
    start = at("2026-11-20 18:00")
    tariff = Tariff(currency="EUR", per_kwh=D("0.30"), idle_per_minute=D("0.10"))
    cost = session_cost(tariff, samples, start, start + HOUR)
    assert (cost.idle, cost.idle_minutes, cost.energy_wh) == (D("0.00"), 0, 0)
    with_total = session_cost(tariff, samples, start, start + HOUR, energy_wh_total=10_000)
    assert (with_total.energy, with_total.idle, with_total.total) == (D("3.00"), D("0.00"), D("3.00"))


# --- time of use -----------------------------------------------------------------------------------------------

NIGHT_START = at("2026-11-20 21:00"), at("2026-11-20 23:00")


@pytest.mark.parametrize(
    ("samples", "energy_wh_total"),
    [
        (
            steady(*NIGHT_START, 22_000, readings=4),
            None,
        ),  # 21:00, 21:40, 22:20, 23:00: one reading spans 22:00
        (steady(*NIGHT_START, 22_000, readings=2), None),  # only the meter at start and stop
        ([], 22_000),  # only the total the station reported
    ],
    ids=["readings", "start-and-stop", "total-only"],
)
def test_a_session_across_the_night_rate_is_split_at_22h(
    samples: list[tuple[int, float]], energy_wh_total: float | None
) -> None:
    # 11 kW from 21:00 to 23:00: 11 kWh at the day price 0.40, 11 kWh at the night price 0.20.
    cost = session_cost(NIGHT_TARIFF, samples, *NIGHT_START, energy_wh_total=energy_wh_total)
    assert parts(cost) == ("6.60", "0.00", "0.00", "0.00", "6.60")


def test_energy_is_priced_when_the_meter_saw_it_flow() -> None:
    # 2 kWh before 22:00 and 10 kWh after: the readings, not the average power, decide.
    start, ten, stop = at("2026-11-20 21:00"), at("2026-11-20 22:00"), at("2026-11-20 23:00")
    samples = [(start, REGISTER), (ten, REGISTER + 2_000), (stop, REGISTER + 12_000)]
    assert session_cost(NIGHT_TARIFF, samples, start, stop).energy == D("2.80")  # 2 × 0.40 + 10 × 0.20


def test_time_fee_follows_the_periods_too() -> None:
    night = TimeOfUse(start=time(22, 0), end=time(6, 0), per_minute=D("0"))
    tariff = Tariff(currency="EUR", per_kwh=D("0.40"), per_minute=D("0.02"), periods=(night,))
    cost = session_cost(tariff, [], *NIGHT_START, energy_wh_total=22_000)
    assert parts(cost) == ("8.80", "1.20", "0.00", "0.00", "10.00")  # only 21:00-22:00 costs time


@pytest.mark.parametrize(
    ("start", "stop", "expected"),
    [
        ("2026-11-20 23:00", "2026-11-21 07:00", "1.80"),  # 7 h at night × 0.20 + 1 h by day × 0.40
        ("2026-11-21 01:00", "2026-11-21 03:00", "0.40"),  # after midnight, still night
        ("2026-11-21 05:00", "2026-11-21 07:00", "0.60"),  # the night ends at 06:00
        ("2026-11-21 12:00", "2026-11-21 14:00", "0.80"),
    ],
)
def test_night_rate_wraps_past_midnight(start: str, stop: str, expected: str) -> None:
    begin, end = at(start), at(stop)
    hours = (end - begin) // HOUR
    assert session_cost(NIGHT_TARIFF, steady(begin, end, 1_000 * hours), begin, end).energy == D(expected)


WEEKEND = TimeOfUse(start=time(0, 0), end=time(0, 0), weekdays=frozenset({5, 6}), per_kwh=D("0.25"))
FRIDAY_NIGHT = TimeOfUse(start=time(22, 0), end=time(6, 0), weekdays=frozenset({4}), per_kwh=D("0.10"))


@pytest.mark.parametrize(
    ("period", "start", "stop", "expected"),
    [
        (WEEKEND, "2026-11-20 23:00", "2026-11-21 01:00", "0.65"),  # Friday 0.40, then Saturday 0.25
        (WEEKEND, "2026-11-22 23:00", "2026-11-23 01:00", "0.65"),  # Sunday 0.25, then Monday 0.40
        (WEEKEND, "2026-11-21 10:00", "2026-11-21 12:00", "0.50"),
        (WEEKEND, "2026-11-18 10:00", "2026-11-18 12:00", "0.80"),  # a Wednesday
        (FRIDAY_NIGHT, "2026-11-20 21:00", "2026-11-20 23:00", "0.50"),  # Friday 21-22 at 0.40, 22-23 at 0.10
        (
            FRIDAY_NIGHT,
            "2026-11-21 02:00",
            "2026-11-21 04:00",
            "0.20",
        ),  # Saturday small hours: Friday's night
        (
            FRIDAY_NIGHT,
            "2026-11-20 02:00",
            "2026-11-20 04:00",
            "0.80",
        ),  # Friday small hours: Thursday's night
        (FRIDAY_NIGHT, "2026-11-21 22:00", "2026-11-21 23:00", "0.40"),  # Saturday night is not Friday night
    ],
)
def test_periods_on_some_weekdays_only(period: TimeOfUse, start: str, stop: str, expected: str) -> None:
    tariff = Tariff(currency="EUR", per_kwh=D("0.40"), periods=(period,))
    begin, end = at(start), at(stop)
    hours = (end - begin) // HOUR
    assert session_cost(tariff, steady(begin, end, 1_000 * hours), begin, end).energy == D(expected)


@pytest.mark.parametrize(("periods", "expected"), [((WEEKEND, NIGHT), "0.25"), ((NIGHT, WEEKEND), "0.20")])
def test_the_first_period_that_covers_a_moment_wins(periods: tuple[TimeOfUse, ...], expected: str) -> None:
    tariff = Tariff(currency="EUR", per_kwh=D("0.40"), periods=periods)
    start, stop = at("2026-11-21 23:00"), at("2026-11-22 00:00")  # a Saturday night
    assert session_cost(tariff, steady(start, stop, 1_000), start, stop).energy == D(expected)


def test_periods_follow_the_tariffs_wall_clock() -> None:
    # 22:00 in Berlin is 21:00 UTC in winter: the hour 21-22 UTC is already night there.
    start, stop = at("2026-11-20 20:00"), at("2026-11-20 22:00")
    samples = steady(start, stop, 2_000)
    assert session_cost(NIGHT_TARIFF, samples, start, stop).energy == D("0.80")
    assert session_cost(NIGHT_BERLIN, samples, start, stop).energy == D("0.60")


# --- daylight saving time (Europe/Berlin: forward on 29 March 2026 at 02:00, back on 25 October at 03:00) ------


@pytest.mark.parametrize(
    ("evening", "morning", "hours", "night_hours"),
    [
        ("2026-03-28 21:00", "2026-03-29 07:00", 9, 7),  # clocks go forward: a short night
        ("2026-10-24 21:00", "2026-10-25 07:00", 11, 9),  # clocks go back: a long night
        ("2026-11-20 21:00", "2026-11-21 07:00", 10, 8),
    ],
)
def test_night_rate_on_the_nights_the_clocks_change(
    evening: str, morning: str, hours: int, night_hours: int
) -> None:
    start, stop = at(evening, BERLIN), at(morning, BERLIN)
    assert stop - start == hours * HOUR
    tariff = Tariff(
        currency="EUR", per_kwh=D("0.40"), per_minute=D("0.01"), periods=(NIGHT,), timezone=BERLIN
    )
    cost = session_cost(tariff, steady(start, stop, 1_000 * hours), start, stop)  # 1 kW all night
    energy = D("0.20") * night_hours + D("0.40") * (hours - night_hours)
    assert (cost.energy, cost.time) == (energy, D("0.01") * 60 * hours)


def test_a_boundary_in_the_skipped_hour_takes_effect_when_the_clocks_jump() -> None:
    # Cheap until 02:30, a time that never happens on 29 March: from 00:00 to 02:00 CET it is cheap, then the
    # clocks show 03:00 and it is not.
    cheap = TimeOfUse(start=time(0, 0), end=time(2, 30), per_kwh=D("0.10"))
    tariff = Tariff(currency="EUR", per_kwh=D("0.40"), periods=(cheap,), timezone=BERLIN)
    start, stop = at("2026-03-29 00:00", BERLIN), at("2026-03-29 04:00", BERLIN)
    assert stop - start == 3 * HOUR
    assert session_cost(tariff, steady(start, stop, 3_000), start, stop).energy == D(
        "0.60"
    )  # 2 × 0.10 + 0.40


def test_a_boundary_in_the_repeated_hour_is_crossed_twice() -> None:
    # Cheap until 02:30 on 25 October: 00:00-02:30 CEST, then 02:00-02:30 CET again once the clocks went back.
    cheap = TimeOfUse(start=time(22, 0), end=time(2, 30), per_kwh=D("0.10"))
    tariff = Tariff(currency="EUR", per_kwh=D("0.40"), periods=(cheap,), timezone=BERLIN)
    start, stop = at("2026-10-24 22:00"), at("2026-10-25 03:00")  # 00:00 CEST to 04:00 CET
    assert session_cost(tariff, steady(start, stop, 5_000), start, stop).energy == D(
        "1.10"
    )  # 3 × 0.10 + 2 × 0.40


# --- rounding --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tariff", "minutes", "wh", "expected"),
    [
        # Exactly 1.005 energy and 2.005 time: 3.01 in all, so only one of the two half cents may round up.
        (
            Tariff(currency="EUR", per_kwh=D("0.201"), per_minute=D("0.0401")),
            50,
            5_000,
            ("1.01", "2.00", "3.01"),
        ),
        # 0.004 of each: nothing each, but a cent in all, shown on the energy.
        (
            Tariff(currency="EUR", per_kwh=D("0.004"), per_minute=D("0.004")),
            1,
            1_000,
            ("0.01", "0.00", "0.01"),
        ),
        # 0.006 of each: a cent each if rounded apart, but 0.012 in all is one cent.
        (
            Tariff(currency="EUR", per_kwh=D("0.006"), per_minute=D("0.006")),
            1,
            1_000,
            ("0.01", "0.00", "0.01"),
        ),
        # 0.3333 energy and 0.6667 time: rounded apart 0.33 + 0.67, exactly 1.00 in all.
        (
            Tariff(currency="EUR", per_kwh=D("0.3333"), per_minute=D("0.6667")),
            1,
            1_000,
            ("0.33", "0.67", "1.00"),
        ),
    ],
)
def test_the_parts_shown_add_up_to_the_total(
    tariff: Tariff, minutes: int, wh: int, expected: tuple[str, str, str]
) -> None:
    start = at("2026-11-20 10:00")
    cost = session_cost(tariff, [], start, start + minutes * MINUTE, energy_wh_total=wh)
    assert (str(cost.energy), str(cost.time), str(cost.total)) == expected
    assert cost.energy + cost.time + cost.idle + cost.session == cost.total


# --- meter readings as stations send them ----------------------------------------------------------------------


def test_readings_in_any_order_give_the_same_cost() -> None:
    start, stop = NIGHT_START
    samples = steady(start, stop, 22_000)
    assert session_cost(NIGHT_TARIFF, samples[::-1], start, stop) == session_cost(
        NIGHT_TARIFF, samples, start, stop
    )


def test_readings_stamped_outside_the_session_count_at_its_edges() -> None:
    # The station's clock is two minutes fast at the end and one slow at the start: no energy is lost.
    start, stop = at("2026-11-20 10:00"), at("2026-11-20 11:00")
    samples = [
        (start - MINUTE, REGISTER),
        (start + 30 * MINUTE, REGISTER + 5_000),
        (stop + 2 * MINUTE, REGISTER + 10_000),
    ]
    cost = session_cost(Tariff(currency="EUR", per_kwh=D("0.30")), samples, start, stop)
    assert (cost.energy, cost.energy_wh, cost.idle_minutes) == (D("3.00"), 10_000, 0)


def test_a_session_of_no_time_still_prices_its_energy() -> None:
    start = at("2026-11-20 23:00")
    cost = session_cost(NIGHT_TARIFF, [(start, REGISTER), (start, REGISTER + 1_000)], start, start)
    assert (cost.energy, cost.time, cost.total) == (D("0.20"), D("0.00"), D("0.20"))


def test_meter_values_with_fractions_of_a_wh() -> None:
    start, stop = at("2026-11-20 10:00"), at("2026-11-20 11:00")
    samples = [(start, 1000.1), (start + HOUR // 2, 5000.2), (stop, 11000.1)]
    cost = session_cost(Tariff(currency="EUR", per_kwh=D("0.30")), samples, start, stop)
    assert (cost.energy, cost.energy_wh) == (D("3.00"), 10_000.0)


def test_breakdown_as_json() -> None:
    start = at("2026-11-20 10:00")
    tariff = Tariff(currency="EUR", per_kwh=D("0.30"), session_fee=D("0.50"))
    cost = session_cost(tariff, steady(start, start + HOUR, 10_000), start, start + HOUR)
    assert json.loads(json.dumps(cost.to_dict())) == {
        "energy": "3.00",
        "time": "0.00",
        "idle": "0.00",
        "session": "0.50",
        "total": "3.50",
        "currency": "EUR",
        "energy_wh": 10_000.0,
        "idle_minutes": 0.0,
    }


# --- JSON ------------------------------------------------------------------------------------------------------

STORED = {
    "currency": "EUR",
    "per_kwh": "0.39",
    "per_minute": "0",
    "idle_per_minute": "0.10",
    "idle_grace_min": 60,
    "session_fee": "0.50",
    "periods": [
        {
            "start": "22:00",
            "end": "06:00",
            "weekdays": [0, 1, 2, 3, 4],
            "per_kwh": "0.29",
            "per_minute": None,
        },
        {"start": "00:00", "end": "00:00", "weekdays": [5, 6], "per_kwh": "0.25", "per_minute": "0"},
    ],
    "timezone": BERLIN,
}


def test_tariff_json_round_trip() -> None:
    tariff = Tariff.from_dict(STORED)
    assert tariff.per_kwh == D("0.39")
    assert tariff.periods[0] == TimeOfUse(
        start=time(22, 0), end=time(6, 0), weekdays=frozenset({0, 1, 2, 3, 4}), per_kwh=D("0.29")
    )
    assert tariff.to_dict() == STORED
    assert Tariff.from_dict(json.loads(json.dumps(tariff.to_dict()))) == tariff


def test_tariff_from_json_numbers_and_defaults() -> None:
    tariff = Tariff.from_dict(
        {"currency": "CHF", "per_kwh": 0.3, "per_minute": 1, "periods": [{"start": "18:00", "end": "24:00"}]}
    )
    assert (tariff.per_kwh, tariff.per_minute, tariff.idle_per_minute) == (D("0.3"), D(1), D(0))
    assert (tariff.idle_grace_min, tariff.session_fee, tariff.timezone) == (0, D(0), "UTC")
    assert tariff.periods == (
        TimeOfUse(start=time(18, 0), end=time(0, 0)),
    )  # "24:00" is the midnight ending the day
    assert tariff.to_dict()["periods"][0] == {
        "start": "18:00",
        "end": "00:00",
        "weekdays": [],
        "per_kwh": None,
        "per_minute": None,
    }


# --- mistakes and what they say ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "loc", "says"),
    [
        ({"per_kwh": D("-0.30")}, ("per_kwh",), "the price per kWh must not be negative, got -0.30"),
        ({"per_minute": D("-1")}, ("per_minute",), "the price per minute must not be negative"),
        (
            {"idle_per_minute": D("-0.1")},
            ("idle_per_minute",),
            "the idle fee per minute must not be negative",
        ),
        ({"session_fee": D("-2")}, ("session_fee",), "the session fee must not be negative"),
        ({"session_fee": D("NaN")}, ("session_fee",), "must be a decimal amount such as 0.30"),
        ({"per_kwh": 0.30}, ("per_kwh",), "must be a decimal amount such as 0.30"),
        ({"currency": "eur"}, ("currency",), "three-letter ISO 4217 code in capitals such as EUR"),
        ({"currency": "EURO"}, ("currency",), "three-letter ISO 4217 code"),
        ({"currency": "€"}, ("currency",), "three-letter ISO 4217 code"),
        (
            {"timezone": "Mars/Olympus_Mons"},
            ("timezone",),
            "unknown time zone 'Mars/Olympus_Mons'; use a name",
        ),
        ({"timezone": "europe/berlin"}, ("timezone",), "unknown time zone"),
        ({"timezone": "localtime"}, ("timezone",), "unknown time zone"),
        ({"timezone": "../etc/passwd"}, ("timezone",), "unknown time zone"),
        ({"timezone": ""}, ("timezone",), "unknown time zone"),
        (
            {"idle_grace_min": -5},
            ("idle_grace_min",),
            "free idle minutes must be a whole number of minutes, 0 or more",
        ),
        ({"idle_grace_min": 2.5}, ("idle_grace_min",), "whole number of minutes"),
    ],
)
def test_tariff_mistakes(changes: dict[str, Any], loc: tuple[str, ...], says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Tariff(**{"currency": "EUR", "per_kwh": D("0.30"), **changes})
    assert says in caught.value.message
    assert caught.value.loc == loc


@pytest.mark.parametrize(
    ("changes", "loc", "says"),
    [
        (
            {"weekdays": frozenset({7})},
            ("weekdays",),
            "weekdays are numbers from 0 (Monday) to 6 (Sunday), got 7",
        ),
        (
            {"start": time(22, 0, 30)},
            ("start",),
            "the period's start must be a local time of day in whole minutes",
        ),
        ({"end": time(6, tzinfo=ZoneInfo(BERLIN))}, ("end",), "the period's end must be a local time"),
        ({"per_kwh": D("-0.1")}, ("per_kwh",), "the period's price per kWh must not be negative"),
    ],
)
def test_period_mistakes(changes: dict[str, Any], loc: tuple[str, ...], says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        TimeOfUse(**{"start": time(22, 0), "end": time(6, 0), **changes})
    assert says in caught.value.message
    assert caught.value.loc == loc


def _with(**changes: Any) -> dict[str, Any]:
    return {"currency": "EUR", "per_kwh": "0.30", **changes}


def _with_period(**changes: Any) -> dict[str, Any]:
    return _with(periods=[{"start": "22:00", "end": "06:00", **changes}])


@pytest.mark.parametrize(
    ("data", "loc", "says"),
    [
        (
            _with(per_kwh="0,30"),
            ("per_kwh",),
            "the price per kWh must be an amount such as \"0.30\", got '0,30'",
        ),
        (_with(per_kwh=True), ("per_kwh",), "must be an amount"),
        (_with(per_kwh=None), ("per_kwh",), "must be an amount"),
        (_with(per_kwh="-0.30"), ("per_kwh",), "must not be negative"),
        ({"currency": "EUR"}, ("per_kwh",), "the tariff needs a per_kwh"),
        (_with(price="0.30"), ("price",), "unknown field 'price'; known fields: currency, "),
        (_with(periods={"start": "22:00"}), ("periods",), "periods must be a list"),
        (_with(timezone="CET+1"), ("timezone",), "unknown time zone"),
        (
            _with_period(start="25:00"),
            ("periods", "0", "start"),
            'period 1: the period\'s start must be a time of day such as "22:00"',
        ),
        (
            _with_period(end="6:00"),
            ("periods", "0", "end"),
            "period 1: the period's end must be a time of day",
        ),
        (
            _with_period(start=None),
            ("periods", "0", "start"),
            "period 1: the period's start must be a time of day",
        ),
        (
            _with_period(weekdays=[8]),
            ("periods", "0", "weekdays"),
            "period 1: the period's weekdays are numbers",
        ),
        (_with_period(weekdays=[[1]]), ("periods", "0", "weekdays"), "period 1: weekdays must be numbers"),
        (_with_period(weekdays="Mo"), ("periods", "0", "weekdays"), "period 1: weekdays must be a list"),
        (
            _with_period(per_kwh="-1"),
            ("periods", "0", "per_kwh"),
            "period 1: the period's price per kWh must not be negative",
        ),
        (_with_period(price="1"), ("periods", "0", "price"), "period 1: unknown field 'price'"),
        (_with(periods=[{"start": "22:00"}]), ("periods", "0", "end"), "period 1: the period needs a end"),
        (_with(periods=["22:00-06:00"]), ("periods", "0"), "period 1: a period must be a JSON object"),
    ],
)
def test_tariff_json_mistakes(data: dict[str, Any], loc: tuple[str, ...], says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Tariff.from_dict(data)
    assert says in caught.value.message
    assert caught.value.loc == loc


FLAT = Tariff(currency="EUR", per_kwh=D("0.30"))
T0 = at("2026-11-20 10:00")


@pytest.mark.parametrize(
    ("samples", "start", "stop", "total", "loc", "says"),
    [
        ([], T0, T0 - 1, None, ("stop",), "the session stops (2026-11-20 09:59:59 UTC) before it starts"),
        ([], -1, T0, None, ("start",), "the session's start must be a time in milliseconds since 1970"),
        ([], T0, 10**20, None, ("stop",), "the session's stop must be a time in milliseconds"),
        ([], T0, float(T0 + HOUR), None, ("stop",), "the session's stop must be a time in milliseconds"),
        (
            [(T0, 500), (T0 + HOUR, 400)],
            T0,
            T0 + HOUR,
            None,
            ("samples",),
            "the meter went down from 500 Wh to 400 Wh at 2026-11-20 11:00:00 UTC",
        ),
        (
            [(T0, float("nan"))],
            T0,
            T0 + HOUR,
            None,
            ("samples", "0"),
            "an energy reading must be a number of Wh",
        ),
        ([(T0, "500")], T0, T0 + HOUR, None, ("samples", "0"), "an energy reading must be a number of Wh"),
        (
            [(T0 / 1, 500)],
            T0,
            T0 + HOUR,
            None,
            ("samples", "0"),
            "meter reading 1 must be stamped in milliseconds",
        ),
        ([(T0,)], T0, T0 + HOUR, None, ("samples", "0"), "meter reading 1 is not a (time, Wh) pair"),
        ([], T0, T0 + HOUR, -5.0, ("energy_wh_total",), "the session's energy must not be negative"),
        ([], T0, T0 + HOUR, float("inf"), ("energy_wh_total",), "an energy reading must be a number of Wh"),
    ],
)
def test_session_mistakes(
    samples: list[Any], start: Any, stop: Any, total: float | None, loc: tuple[str, ...], says: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        session_cost(FLAT, samples, start, stop, energy_wh_total=total)
    assert says in caught.value.message
    assert caught.value.loc == loc


def test_absurd_prices_are_refused_not_crashed_on() -> None:
    tariff = Tariff(currency="EUR", per_kwh=D("1e70"))
    with pytest.raises(InvalidInput, match="too large"):
        session_cost(tariff, [], T0, T0 + HOUR, energy_wh_total=1_000)


# --- properties ------------------------------------------------------------------------------------------------

ZONES = ["UTC", BERLIN, "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
# Nights the clocks change in those zones in 2026, so that sessions often cross one.
CLOCK_CHANGES = [
    at("2026-03-29 01:00"),
    at("2026-10-25 01:00"),
    at("2026-03-08 07:00"),
    at("2026-11-01 06:00"),
    at("2026-04-04 15:00"),
    at("2026-10-03 15:30"),
]
prices = st.decimals(min_value=0, max_value=2, places=4)
clock_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
periods = st.builds(
    TimeOfUse,
    start=clock_times,
    end=clock_times,
    weekdays=st.frozensets(st.integers(0, 6)),
    per_kwh=st.none() | prices,
    per_minute=st.none() | prices,
)
tariffs = st.builds(
    Tariff,
    currency=st.sampled_from(["EUR", "USD", "CHF"]),
    per_kwh=prices,
    per_minute=prices,
    idle_per_minute=prices,
    idle_grace_min=st.integers(0, 120),
    session_fee=prices,
    periods=st.lists(periods, max_size=3).map(tuple),
    timezone=st.sampled_from(ZONES),
)


@st.composite
def sessions(draw: st.DrawFn) -> tuple[list[tuple[int, int]], int, int]:
    """(readings with whole Wh, start, stop) of a session of up to a day and a half."""
    anchor = draw(
        st.sampled_from(CLOCK_CHANGES) | st.integers(at("2026-01-01 00:00"), at("2027-01-01 00:00"))
    )
    start = anchor - draw(st.integers(0, 12 * HOUR))
    t, wh = start + draw(st.integers(0, 10 * MINUTE)), REGISTER
    readings = [(t, wh)]
    for gap, energy in draw(
        st.lists(st.tuples(st.integers(0, 4 * HOUR), st.integers(0, 30_000)), max_size=10)
    ):
        t, wh = t + gap, wh + energy
        readings.append((t, wh))
    return readings, start, t + draw(st.integers(0, 2 * HOUR))


PROPERTIES = settings(max_examples=150, deadline=None)


@PROPERTIES
@given(tariffs, sessions())
def test_cost_is_never_negative_and_its_parts_add_up(
    tariff: Tariff, session: tuple[list[tuple[int, int]], int, int]
) -> None:
    readings, start, stop = session
    cost = session_cost(tariff, readings, start, stop)
    shown = (cost.energy, cost.time, cost.idle, cost.session)
    assert all(part >= 0 and part == part.quantize(D("0.01")) for part in shown)
    assert sum(shown) == cost.total
    assert cost.energy_wh == readings[-1][1] - readings[0][1]
    assert 0 <= cost.idle_minutes <= (stop - start) / MINUTE


@PROPERTIES
@given(tariffs, sessions(), st.integers(2, 5))
def test_more_energy_never_costs_less(
    tariff: Tariff, session: tuple[list[tuple[int, int]], int, int], times: int
) -> None:
    # The same session with `times` as much power drawn whenever the car drew any (so it stops charging at the
    # same moment, and idles as long).
    readings, start, stop = session
    more = [(t, REGISTER + (wh - REGISTER) * times) for t, wh in readings]
    assert session_cost(tariff, more, start, stop).total >= session_cost(tariff, readings, start, stop).total


@PROPERTIES
@given(tariffs, sessions(), st.integers(0, 100_000), st.integers(0, 100_000))
def test_more_energy_in_total_never_costs_less(
    tariff: Tariff, session: tuple[list[tuple[int, int]], int, int], wh: int, more: int
) -> None:
    _, start, stop = session
    low = session_cost(tariff, [], start, stop, energy_wh_total=wh)
    high = session_cost(tariff, [], start, stop, energy_wh_total=wh + more)
    assert high.total >= low.total


@PROPERTIES
@given(tariffs, sessions())
def test_periods_at_the_base_prices_change_nothing(
    tariff: Tariff, session: tuple[list[tuple[int, int]], int, int]
) -> None:
    # However the session is cut where periods begin and end, the parts add up to the whole energy and time.
    readings, start, stop = session
    flat = Tariff(
        currency=tariff.currency,
        per_kwh=tariff.per_kwh,
        per_minute=tariff.per_minute,
        timezone=tariff.timezone,
    )
    same = [TimeOfUse(p.start, p.end, p.weekdays, tariff.per_kwh, tariff.per_minute) for p in tariff.periods]
    cut = Tariff(**{**flat.__dict__, "periods": tuple(same)})
    assert session_cost(cut, readings, start, stop) == session_cost(flat, readings, start, stop)


@PROPERTIES
@given(tariffs)
def test_any_tariff_survives_json(tariff: Tariff) -> None:
    assert Tariff.from_dict(json.loads(json.dumps(tariff.to_dict()))) == tariff
