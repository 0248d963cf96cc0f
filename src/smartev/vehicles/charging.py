"""What the charging contexts may ask about cars: whose car a VIN is, which car charges at a place, the car's
own count of energy charged, and its battery (for smart charging). Answers come from the live twin, never from
the history tables."""

from __future__ import annotations

import math

from smartev.vehicles.service import Registry
from smartev.vehicles.twin import Twin

LATITUDE = "Vehicle.CurrentLocation.Latitude"
LONGITUDE = "Vehicle.CurrentLocation.Longitude"
IS_CHARGING = "Vehicle.Powertrain.TractionBattery.Charging.IsCharging"
CABLE = "Vehicle.Powertrain.TractionBattery.Charging.ChargingPort.AnyPosition.IsChargingCableConnected"
CHARGED = "Vehicle.Powertrain.TractionBattery.AccumulatedChargedEnergy"
SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
CAPACITY = "Vehicle.Powertrain.TractionBattery.NetCapacity"
CHARGE_LIMIT = "Vehicle.Powertrain.TractionBattery.Charging.ChargeLimit"
NEAR_M = 150.0  # a car parked at a station reports a position within this of the station's
FRESH_MS = 15 * 60_000  # a car not heard from for this long says nothing about now


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(a))


class ChargingView:
    """The vehicles context's answers to the charging context (its `VehicleLocator` port)."""

    def __init__(self, registry: Registry, twin: Twin) -> None:
        self._registry = registry
        self._twin = twin

    def owner_of(self, vin: str) -> int | None:
        """The owner's user id of a registered car, or None."""
        rec = self._registry.by_vin(vin)
        return rec.owner_id if rec else None

    def charging_near(
        self, latitude: float, longitude: float, at_ms: int, owner_id: int | None
    ) -> str | None:
        """The VIN of the one car of `owner_id` plugged in within NEAR_M of the place, by its recent telemetry.

        Only the owner's cars are candidates: a stranger's car plugged in at the next charger must not be
        given (and shown) someone else's session. Two of the owner's cars there are ambiguous: None.
        """
        if owner_id is None:
            return None
        found = []
        for rec in self._registry.all():
            if rec.owner_id != owner_id:
                continue
            car = self._twin.cars.get(rec.id)
            if car is None or car.last_seen_ms is None or abs(car.last_seen_ms - at_ms) > FRESH_MS:
                continue  # a car not heard from around that time says nothing about it
            signals = car.signals
            plugged = any(signals.get(path, (False,))[0] is True for path in (CABLE, IS_CHARGING))
            lat, lon = signals.get(LATITUDE), signals.get(LONGITUDE)
            if not plugged or lat is None or lon is None:
                continue
            if distance_m(float(lat[0]), float(lon[0]), latitude, longitude) <= NEAR_M:
                found.append(rec.vin)
        return found[0] if len(found) == 1 else None

    def charged_energy_kwh(self, vin: str) -> float | None:
        """The car's battery counter of energy charged (kWh), or None if it never reported it."""
        rec = self._registry.by_vin(vin)
        if rec is None:
            return None
        value = self._twin.get(rec.id).signals.get(CHARGED)
        return float(value[0]) if value is not None else None

    def battery(self, vin: str) -> tuple[float | None, float | None, float | None]:
        """(SoC %, usable capacity kWh, the car's own charge limit %) as the car last reported, None if unknown."""
        rec = self._registry.by_vin(vin)
        if rec is None:
            return None, None, None
        signals = self._twin.get(rec.id).signals

        def number(path: str) -> float | None:
            value = signals.get(path)
            return float(value[0]) if value is not None and isinstance(value[0], int | float) else None

        return number(SOC), number(CAPACITY), number(CHARGE_LIMIT)
