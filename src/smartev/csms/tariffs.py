"""Charge point operators' tariffs, and what a finished charging session costs under one.

A tariff prices four things: the energy delivered (per kWh), the time plugged in (per minute, from the
session's start to its stop), the time the car stays plugged in after it stopped drawing power (per idle
minute, after some free minutes) and a flat fee per session. Time-of-use periods ("22:00-06:00 night rate",
"weekends") replace the energy and time prices while they are in force.

How `session_cost` prices a session:

- Energy: the meter's register readings say how much energy flowed between two readings; that energy is
  spread evenly over the time between them and each part is priced by the period in force at that time.
  Readings stamped outside the session (a station's clock a little off) count at the session's edge, so no
  measured energy is lost.
- Time: every minute from start to stop at the per-minute price in force; parts of a minute count pro rata.
- Idle: from the first reading showing the meter's final value (the car stopped drawing power) to the stop,
  less the free minutes, at the idle price; parts of a minute count pro rata.
- Local time: periods follow the wall clock of the tariff's time zone. On the night the clocks go forward a
  22:00-06:00 period lasts seven hours, on the night they go back nine; a boundary inside the skipped hour
  takes effect when the clocks jump, and one inside the repeated hour is crossed twice.
- Periods: the first period in the list that covers a moment sets its prices, so list special cases first.
  A period whose end is not after its start wraps past midnight and belongs to the day it started on
  ("Friday 22:00-06:00" includes Saturday 02:00); one whose end equals its start lasts 24 hours.
- Rounding: the total is the exact sum of the exact parts, rounded half up to cents. Each part is shown in
  cents rounded down, and the cents still missing to reach the total go one each to the parts that lost the
  most by rounding down (ties: energy, then time, idle, session). So the parts shown always add up to the
  total, which is never more than half a cent away from the exact cost, and every part shown is within a
  cent of its exact value (largest remainder method).

Everything here is a pure function of its arguments: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Context, Decimal, InvalidOperation, localcontext
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from smartev.clock import EPOCH
from smartev.errors import InvalidInput

CENT = Decimal("0.01")
_ZERO = Decimal(0)
_MS_PER_MINUTE = Decimal(60_000)
_WH_PER_KWH = Decimal(1000)
_ONE_DAY = timedelta(days=1)
_ONE_MS = timedelta(milliseconds=1)
# Far from datetime's limits, so that looking a day before and after a session never overflows.
_MAX_MS = (datetime(9000, 1, 1, tzinfo=UTC) - EPOCH) // _ONE_MS
# Exact enough for any real price times any real meter; results do not depend on the caller's context.
_ARITHMETIC = Context(prec=60)
_CURRENCY = re.compile(r"[A-Z]{3}")
_HH_MM = re.compile(r"(\d{2}):(\d{2})")
# Names zoneinfo accepts that are not places: "localtime" would make prices depend on the server's setup.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
_PRICE_WORDS = {
    "per_kwh": "price per kWh",
    "per_minute": "price per minute",
    "idle_per_minute": "idle fee per minute",
    "session_fee": "session fee",
}


@dataclass(frozen=True)
class TimeOfUse:
    """A time of day (and optionally days of the week) when other energy and time prices apply.

    `start`/`end` are local wall-clock times in whole minutes; an `end` before `start` wraps past midnight,
    one equal to `start` makes the period 24 hours long. `weekdays` (0 = Monday) lists the days the period
    starts on; empty means every day.
    A price left as None keeps the tariff's base price.
    """

    start: time
    end: time
    weekdays: frozenset[int] = frozenset()
    per_kwh: Decimal | None = None
    per_minute: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, time) or value.tzinfo is not None or value.second or value.microsecond:
                raise InvalidInput(
                    f"the period's {name} must be a local time of day in whole minutes (HH:MM)", (name,)
                )
        object.__setattr__(self, "weekdays", frozenset(self.weekdays))
        for day in self.weekdays:
            if not isinstance(day, int) or isinstance(day, bool) or not 0 <= day <= 6:
                raise InvalidInput(
                    f"the period's weekdays are numbers from 0 (Monday) to 6 (Sunday), got {day!r}",
                    ("weekdays",),
                )
        for name in ("per_kwh", "per_minute"):
            value = getattr(self, name)
            if value is not None:
                _check_price(value, name, "the period's")

    def covers(self, day: date, at: time) -> bool:
        """Whether this period is in force at this local date and wall-clock time."""
        if self.start < self.end:
            return self.start <= at < self.end and self._starts_on(day)
        # Wraps past midnight: the hours after midnight belong to the period that started the evening before.
        if at >= self.start:
            return self._starts_on(day)
        return at < self.end and self._starts_on(day - _ONE_DAY)

    def _starts_on(self, day: date) -> bool:
        return not self.weekdays or day.weekday() in self.weekdays


@dataclass(frozen=True)
class Tariff:
    """What a charge point operator charges: base prices, free idle minutes and time-of-use periods."""

    currency: str
    per_kwh: Decimal
    per_minute: Decimal = _ZERO
    idle_per_minute: Decimal = _ZERO
    idle_grace_min: int = 0
    session_fee: Decimal = _ZERO
    periods: tuple[TimeOfUse, ...] = ()
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.currency, str) or not _CURRENCY.fullmatch(self.currency):
            raise InvalidInput(
                f"the currency must be a three-letter ISO 4217 code in capitals such as EUR, got {self.currency!r}",
                ("currency",),
            )
        for name in _PRICE_WORDS:
            _check_price(getattr(self, name), name)
        grace = self.idle_grace_min
        if not isinstance(grace, int) or isinstance(grace, bool) or grace < 0:
            raise InvalidInput(
                f"the free idle minutes must be a whole number of minutes, 0 or more, got {grace!r}",
                ("idle_grace_min",),
            )
        object.__setattr__(self, "periods", tuple(self.periods))
        for i, period in enumerate(self.periods):
            if not isinstance(period, TimeOfUse):
                raise InvalidInput(f"period {i + 1} is not a time-of-use period", ("periods", str(i)))
        _zone(self.timezone)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tariff:
        """The tariff stored or sent as JSON (prices as strings or numbers, times as "HH:MM")."""
        if not isinstance(d, Mapping):
            raise InvalidInput("a tariff must be a JSON object")
        _no_unknown_keys(d, _TARIFF_KEYS)
        for key in ("currency", "per_kwh"):
            if key not in d:
                raise InvalidInput(f"the tariff needs a {key}", (key,))
        periods = d.get("periods", [])
        if not isinstance(periods, list | tuple):
            raise InvalidInput("periods must be a list", ("periods",))
        prices = {name: _price_in(d[name], name) for name in _PRICE_WORDS if name in d}
        return cls(
            currency=d["currency"],
            idle_grace_min=d.get("idle_grace_min", 0),
            periods=tuple(_period_in(p, i) for i, p in enumerate(periods)),
            timezone=d.get("timezone", "UTC"),
            **prices,
        )

    def to_dict(self) -> dict[str, Any]:
        """The tariff as JSON-ready data (prices as strings, times as "HH:MM"); `from_dict` reads it back."""
        return {
            "currency": self.currency,
            "per_kwh": _price_out(self.per_kwh),
            "per_minute": _price_out(self.per_minute),
            "idle_per_minute": _price_out(self.idle_per_minute),
            "idle_grace_min": self.idle_grace_min,
            "session_fee": _price_out(self.session_fee),
            "periods": [
                {
                    "start": f"{p.start:%H:%M}",
                    "end": f"{p.end:%H:%M}",
                    "weekdays": sorted(p.weekdays),
                    "per_kwh": None if p.per_kwh is None else _price_out(p.per_kwh),
                    "per_minute": None if p.per_minute is None else _price_out(p.per_minute),
                }
                for p in self.periods
            ],
            "timezone": self.timezone,
        }


@dataclass(frozen=True)
class CostBreakdown:
    """What a session cost, part by part, in cents; the parts add up to `total` (the module says how)."""

    energy: Decimal
    time: Decimal
    idle: Decimal
    session: Decimal
    total: Decimal
    currency: str
    energy_wh: float
    idle_minutes: float  # plugged in after the car stopped drawing power, free minutes included

    def to_dict(self) -> dict[str, Any]:
        """The breakdown as JSON-ready data (money as strings such as "3.00")."""
        return {
            "energy": str(self.energy),
            "time": str(self.time),
            "idle": str(self.idle),
            "session": str(self.session),
            "total": str(self.total),
            "currency": self.currency,
            "energy_wh": self.energy_wh,
            "idle_minutes": self.idle_minutes,
        }


def session_cost(
    tariff: Tariff,
    samples: Sequence[tuple[int, float]],
    start_ms: int,
    stop_ms: int,
    *,
    energy_wh_total: float | None = None,
) -> CostBreakdown:
    """What a finished charging session costs under this tariff.

    Args:
        samples: the session's meter readings, (epoch ms, register Wh); the register never goes down.
        energy_wh_total: the session's energy when fewer than two readings are known (say, only the total a
            station reported at stop); it is taken as delivered evenly from start to stop, with no idle time.
            Ignored when there are two readings or more.
    """
    for name, ms in (("start", start_ms), ("stop", stop_ms)):
        if not _is_epoch_ms(ms):
            raise InvalidInput(
                f"the session's {name} must be a time in milliseconds since 1970, got {ms!r}", (name,)
            )
    if stop_ms < start_ms:
        raise InvalidInput(
            f"the session stops ({_iso(stop_ms)}) before it starts ({_iso(start_ms)})", ("stop",)
        )
    readings = _readings(samples, start_ms, stop_ms)
    with localcontext(_ARITHMETIC):
        deliveries: list[tuple[int, int, Decimal]]  # (from ms, to ms, Wh delivered evenly in between)
        if len(readings) >= 2:
            deliveries = [(t0, t1, e1 - e0) for (t0, e0), (t1, e1) in pairwise(readings) if e1 > e0]
            final_wh = readings[-1][1]
            charging_end_ms = next(t for t, wh in readings if wh == final_wh)
        elif energy_wh_total is not None:
            total_wh = _wh_in(energy_wh_total, "energy_wh_total")
            if total_wh < 0:
                raise InvalidInput(
                    f"the session's energy must not be negative, got {total_wh} Wh", ("energy_wh_total",)
                )
            deliveries = [(start_ms, stop_ms, total_wh)]
            charging_end_ms = stop_ms
        else:
            # One reading or none says nothing about energy, nor about when the car stopped drawing power.
            deliveries = []
            charging_end_ms = stop_ms

        prices = _prices_over(tariff, start_ms, stop_ms)
        energy = sum((_energy_cost(prices, *d) for d in deliveries), _ZERO)
        time_fee = sum(
            (per_minute * (to_ms - from_ms) / _MS_PER_MINUTE for from_ms, to_ms, _, per_minute in prices),
            _ZERO,
        )
        idle_ms = stop_ms - charging_end_ms
        billed_idle_ms = max(idle_ms - tariff.idle_grace_min * 60_000, 0)
        idle = tariff.idle_per_minute * billed_idle_ms / _MS_PER_MINUTE
        try:
            (energy, time_fee, idle, session), total = _in_cents((energy, time_fee, idle, tariff.session_fee))
        except InvalidOperation:
            raise InvalidInput("the cost is too large to compute; check the tariff's prices") from None
        energy_wh = sum((wh for _, _, wh in deliveries), _ZERO)
    return CostBreakdown(
        energy=energy,
        time=time_fee,
        idle=idle,
        session=session,
        total=total,
        currency=tariff.currency,
        energy_wh=float(energy_wh),
        idle_minutes=idle_ms / 60_000,
    )


def energy_prices(tariff: Tariff, start_ms: int, periods: int, period_s: int) -> list[float]:
    """The price per kWh in force in the middle of each of `periods` periods from `start_ms` (for planning)."""
    zone = _zone(tariff.timezone)
    base = (tariff.per_kwh, tariff.per_minute)
    half = period_s * 500
    return [
        float(_prices_at(tariff, zone, start_ms + i * period_s * 1000 + half, base)[0])
        for i in range(periods)
    ]


# A stretch of the session with constant prices: (from ms, to ms, per kWh, per minute).
_Stretch = tuple[int, int, Decimal, Decimal]


def _prices_over(tariff: Tariff, start_ms: int, stop_ms: int) -> list[_Stretch]:
    """The session cut into stretches of constant prices, in order, covering start to stop."""
    base = (tariff.per_kwh, tariff.per_minute)
    if not tariff.periods:
        return [(start_ms, stop_ms, *base)]
    zone = _zone(tariff.timezone)
    cuts = {start_ms, stop_ms}
    # Midnight needs no cut: a period belongs to the day it starts on, so a new day changes nothing by itself.
    boundaries = {t for p in tariff.periods for t in (p.start, p.end)}
    day = _local(zone, start_ms).date() - _ONE_DAY
    last_day = _local(zone, stop_ms).date() + _ONE_DAY
    while day <= last_day:
        for at in boundaries:
            cuts.update(ms for ms in _instants(zone, day, at) if start_ms < ms < stop_ms)
        day += _ONE_DAY
    # Where the clocks jump the wall time skips or repeats without passing the boundaries in between, so the
    # prices may change right at the jump.
    ordered = sorted(cuts)
    cuts.update(
        _clock_change(zone, a, b) for a, b in pairwise(ordered) if _offset(zone, a) != _offset(zone, b)
    )
    spans = list(pairwise(sorted(cuts))) or [(start_ms, stop_ms)]  # a session of no time still has prices
    return [(from_ms, to_ms, *_prices_at(tariff, zone, from_ms, base)) for from_ms, to_ms in spans]


def _prices_at(
    tariff: Tariff, zone: tzinfo, ms: int, base: tuple[Decimal, Decimal]
) -> tuple[Decimal, Decimal]:
    wall = _local(zone, ms)
    for period in tariff.periods:
        if period.covers(wall.date(), wall.time()):
            return (
                base[0] if period.per_kwh is None else period.per_kwh,
                base[1] if period.per_minute is None else period.per_minute,
            )
    return base


def _energy_cost(prices: list[_Stretch], from_ms: int, to_ms: int, wh: Decimal) -> Decimal:
    """The price of `wh` delivered evenly from `from_ms` to `to_ms`, split where the prices change."""
    i = max(bisect_right(prices, from_ms, key=lambda stretch: stretch[0]) - 1, 0)
    if from_ms == to_ms:  # two readings stamped at the same instant: priced as of that instant
        return wh * prices[i][2] / _WH_PER_KWH
    cost = _ZERO
    for stretch_from, stretch_to, per_kwh, _ in prices[i:]:
        if stretch_from >= to_ms:
            break
        share = Decimal(min(stretch_to, to_ms) - max(stretch_from, from_ms)) / (to_ms - from_ms)
        cost += wh * share * per_kwh / _WH_PER_KWH
    return cost


def _in_cents(parts: Sequence[Decimal]) -> tuple[list[Decimal], Decimal]:
    """The parts in cents adding up to their exact sum in cents (largest remainder method); and that total."""
    total = sum(parts, _ZERO).quantize(CENT, ROUND_HALF_UP)
    shown = [p.quantize(CENT, ROUND_FLOOR) for p in parts]
    missing = int((total - sum(shown, _ZERO)) / CENT)
    # sorted() is stable with reverse=True too, so equal remainders keep the parts' order.
    by_loss = sorted(range(len(parts)), key=lambda i: parts[i] - shown[i], reverse=True)
    for i in by_loss[:missing]:
        shown[i] += CENT
    return shown, total


def _readings(samples: Sequence[tuple[int, float]], start_ms: int, stop_ms: int) -> list[tuple[int, Decimal]]:
    """The readings in time order as exact decimals, moved into the session; checks that they never go down."""
    readings: list[tuple[int, Decimal]] = []
    for i, sample in enumerate(samples):
        try:
            ts, wh = sample
        except (TypeError, ValueError):
            raise InvalidInput(
                f"meter reading {i + 1} is not a (time, Wh) pair", ("samples", str(i))
            ) from None
        if not _is_epoch_ms(ts):
            raise InvalidInput(
                f"meter reading {i + 1} must be stamped in milliseconds since 1970, got {ts!r}",
                ("samples", str(i)),
            )
        readings.append((ts, _wh_in(wh, "samples", str(i))))
    readings.sort()
    for (_, e0), (t1, e1) in pairwise(readings):
        if e1 < e0:
            raise InvalidInput(
                f"the meter went down from {e0} Wh to {e1} Wh at {_iso(t1)}; a meter register only counts up",
                ("samples",),
            )
    return [(min(max(ts, start_ms), stop_ms), wh) for ts, wh in readings]


def _instants(zone: tzinfo, day: date, at: time) -> Iterator[int]:
    """The moments (epoch ms) the wall clock shows `at` on `day`: none in a skipped hour, two in a repeated one."""
    wall = datetime.combine(day, at)
    for fold in (0, 1):
        ms = (wall.replace(tzinfo=zone, fold=fold) - EPOCH) // _ONE_MS
        if _local(zone, ms).replace(tzinfo=None) == wall:  # else the clocks jumped over this time
            yield ms


def _clock_change(zone: tzinfo, before_ms: int, after_ms: int) -> int:
    """The first millisecond on the new UTC offset, between two moments with different offsets."""
    offset = _offset(zone, before_ms)
    while after_ms - before_ms > 1:
        middle = (before_ms + after_ms) // 2
        if _offset(zone, middle) == offset:
            before_ms = middle
        else:
            after_ms = middle
    return after_ms


def _local(zone: tzinfo, ms: int) -> datetime:
    return (EPOCH + timedelta(milliseconds=ms)).astimezone(zone)


def _offset(zone: tzinfo, ms: int) -> timedelta | None:
    return _local(zone, ms).utcoffset()


def _zone(name: object) -> ZoneInfo:
    if isinstance(name, str) and name not in _NOT_ZONES:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise InvalidInput(
        f"unknown time zone {name!r}; use a name from the IANA time zone database such as Europe/Berlin or UTC",
        ("timezone",),
    )


def _check_price(value: object, name: str, owner: str = "the") -> None:
    words = f"{owner} {_PRICE_WORDS[name]}"
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidInput(f"{words} must be a decimal amount such as 0.30, got {value!r}", (name,))
    if value < 0:
        raise InvalidInput(f"{words} must not be negative, got {value}", (name,))


def _price_in(value: object, name: str) -> Decimal:
    """A price given as a string or a JSON number; floats are read as the digits they print as (0.3, not 0.2999…)."""
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            pass
    elif isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    elif isinstance(value, float):
        return Decimal(repr(value))
    raise InvalidInput(f'the {_PRICE_WORDS[name]} must be an amount such as "0.30", got {value!r}', (name,))


def _price_out(value: Decimal) -> str:
    return format(value, "f")  # "10", never "1E+1"


def _time_in(value: object, name: str) -> time:
    match = _HH_MM.fullmatch(value) if isinstance(value, str) else None
    if match:
        hours, minutes = int(match[1]), int(match[2])
        if (hours < 24 and minutes < 60) or (hours, minutes) == (24, 0):
            return time(hours % 24, minutes)  # "24:00" is the midnight that ends a day
    raise InvalidInput(f'the period\'s {name} must be a time of day such as "22:00", got {value!r}', (name,))


def _period_in(d: object, index: int) -> TimeOfUse:
    loc = ("periods", str(index))
    try:
        if not isinstance(d, Mapping):
            raise InvalidInput("a period must be a JSON object")
        _no_unknown_keys(d, _PERIOD_KEYS)
        for key in ("start", "end"):
            if key not in d:
                raise InvalidInput(f"the period needs a {key}", (key,))
        weekdays = d.get("weekdays", [])
        if not isinstance(weekdays, list | tuple):
            raise InvalidInput(
                "weekdays must be a list of numbers from 0 (Monday) to 6 (Sunday)", ("weekdays",)
            )
        prices = {
            name: _price_in(d[name], name) for name in ("per_kwh", "per_minute") if d.get(name) is not None
        }
        return TimeOfUse(
            start=_time_in(d["start"], "start"),
            end=_time_in(d["end"], "end"),
            weekdays=frozenset(weekdays),
            **prices,
        )
    except InvalidInput as exc:
        raise InvalidInput(f"period {index + 1}: {exc.message}", (*loc, *exc.loc)) from None
    except TypeError:  # weekdays that cannot go in a set, such as lists
        raise InvalidInput(
            f"period {index + 1}: weekdays must be numbers from 0 (Monday) to 6 (Sunday)", (*loc, "weekdays")
        ) from None


_TARIFF_KEYS = frozenset({"currency", *_PRICE_WORDS, "idle_grace_min", "periods", "timezone"})
_PERIOD_KEYS = frozenset({"start", "end", "weekdays", "per_kwh", "per_minute"})


def _no_unknown_keys(d: Mapping[Any, Any], known: frozenset[str]) -> None:
    for key in d:
        if key not in known:
            raise InvalidInput(
                f"unknown field {key!r}; known fields: {', '.join(sorted(known))}", (str(key),)
            )


def _wh_in(value: object, *loc: str) -> Decimal:
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float) and math.isfinite(value):
        return Decimal(repr(value))  # the digits the meter sent, not the float's binary expansion
    raise InvalidInput(f"an energy reading must be a number of Wh, got {value!r}", loc)


def _is_epoch_ms(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_MS


def _iso(ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%d %H:%M:%S UTC")
