"""The fleet at a glance: each car's state in one word, counts, a searchable table and map positions.

Pure functions over the registry and the live twin (no database): the operator console asks every few
seconds, so 10,000 cars must cost milliseconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from smartev.vehicles.service import VehicleRecord
from smartev.vehicles.twin import Twin, VehicleTwin

SPEED = "Vehicle.Speed"
LATITUDE = "Vehicle.CurrentLocation.Latitude"
LONGITUDE = "Vehicle.CurrentLocation.Longitude"
SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
RANGE = "Vehicle.Powertrain.Range"
IS_CHARGING = "Vehicle.Powertrain.TractionBattery.Charging.IsCharging"
DRIVING_KMH = 1.0


class CarState(StrEnum):
    """What a car is doing, in one word."""

    driving = "driving"
    charging = "charging"
    parked = "parked"
    offline = "offline"


def _value(car: VehicleTwin, path: str) -> Any:
    entry = car.signals.get(path)
    return entry[0] if entry is not None else None


def state_of(car: VehicleTwin) -> CarState:
    """Offline wins; then charging; then driving (moving faster than 1 km/h); else parked."""
    if not car.online:
        return CarState.offline
    if _value(car, IS_CHARGING) is True:
        return CarState.charging
    speed = _value(car, SPEED)
    if isinstance(speed, int | float) and speed >= DRIVING_KMH:
        return CarState.driving
    return CarState.parked


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One car as the fleet table shows it."""

    record: VehicleRecord
    owner: str | None
    online: bool
    last_seen_ms: int | None
    state: CarState
    soc: float | None
    range_km: float | None
    speed: float | None
    lat: float | None
    lon: float | None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def rows(records: Iterable[VehicleRecord], twin: Twin, owners: dict[int, str]) -> list[FleetRow]:
    """The table rows of these cars, from the live twin."""
    out = []
    for rec in records:
        car = twin.cars.get(rec.id) or VehicleTwin()
        range_m = _number(_value(car, RANGE))
        out.append(
            FleetRow(
                record=rec,
                owner=owners.get(rec.owner_id),
                online=car.online,
                last_seen_ms=car.last_seen_ms,
                state=state_of(car),
                soc=_number(_value(car, SOC)),
                range_km=round(range_m / 1000, 1) if range_m is not None else None,
                speed=_number(_value(car, SPEED)),
                lat=_number(_value(car, LATITUDE)),
                lon=_number(_value(car, LONGITUDE)),
            )
        )
    return out


def summary(states: Iterable[CarState]) -> dict[str, int]:
    """Counts by state: total, online, offline, driving, charging, parked."""
    counts = Counter(states)
    total = sum(counts.values())
    return {
        "total": total,
        "online": total - counts[CarState.offline],
        "offline": counts[CarState.offline],
        "driving": counts[CarState.driving],
        "charging": counts[CarState.charging],
        "parked": counts[CarState.parked],
    }


SORT_KEYS = ("vin", "model", "owner", "state", "soc", "speed", "last_seen")


def _sort_key(field: str) -> Any:
    if field in ("vin", "model"):
        return lambda r: getattr(r.record, field)
    if field == "owner":
        return lambda r: r.owner or ""
    if field == "state":
        return lambda r: r.state.value
    if field == "last_seen":
        return lambda r: r.last_seen_ms or 0
    # numbers: cars without a value sort after every car with one, whatever the order
    return lambda r: (getattr(r, field) is None, getattr(r, field) or 0.0)


def select(
    table: Sequence[FleetRow],
    *,
    q: str = "",
    state: CarState | None = None,
    sort: str = "vin",
    descending: bool = False,
) -> list[FleetRow]:
    """Filter by a search text (VIN, model or owner email, case-insensitive) and state, then sort."""
    needle = q.strip().lower()
    chosen = [
        r
        for r in table
        if (state is None or r.state is state)
        and (
            not needle
            or needle in r.record.vin.lower()
            or needle in r.record.model.lower()
            or (r.owner is not None and needle in r.owner.lower())
        )
    ]
    key = _sort_key(sort)
    if sort in ("soc", "speed") and descending:
        # keep "no value" last when descending too
        with_value = sorted((r for r in chosen if getattr(r, sort) is not None), key=key, reverse=True)
        return with_value + [r for r in chosen if getattr(r, sort) is None]
    return sorted(chosen, key=key, reverse=descending)
