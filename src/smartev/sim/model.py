"""A deterministic simulated electric car in Berlin: where it drives, what that costs, how it charges.

Pure: no I/O and no clock. Time only moves when `step(dt_s)` is called. Every random choice is drawn from a
generator seeded by the car's seed and the simulated day or trip, so a car's routine does not depend on
how finely it is stepped, only its physics integration does.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SignalValue = bool | int | float | str | list[str]
CommandStatus = Literal["succeeded", "failed", "rejected"]

CENTRE_LATITUDE = 52.5200
CENTRE_LONGITUDE = 13.4050
CITY_RADIUS_M = 10_000.0
_M_PER_DEG_LAT = 111_320.0
_M_PER_DEG_LON = _M_PER_DEG_LAT * math.cos(math.radians(CENTRE_LATITUDE))

try:
    _BERLIN: tzinfo = ZoneInfo("Europe/Berlin")
except ZoneInfoNotFoundError:  # a slim container without tzdata: winter time is close enough for a simulator
    _BERLIN = datetime.fromisoformat("2000-01-01T00:00:00+01:00").tzinfo or UTC

# Berlin's monthly mean air temperature and half its typical day-night swing (DWD 1991-2020 normals), °C.
_MONTH_MEAN_C = (0.6, 1.7, 5.0, 9.8, 14.6, 17.9, 20.0, 19.6, 15.3, 10.3, 5.4, 1.9)
_MONTH_SWING_C = (2.0, 2.5, 3.5, 4.5, 5.0, 5.0, 5.0, 5.0, 4.5, 3.5, 2.5, 2.0)

_G = 9.81
_AIR_DENSITY = 1.2
_ATM_KPA = 101.325
_PARKED_DRAIN_W = 30.0  # telematics and battery management keep a parked car awake a little
_CHARGER_EFFICIENCY = 0.92
_TAPER_FROM_SOC = 80.0
_TAPER_AT_FULL = 0.25  # fraction of full charging power left at 100 %
_HOME_CHARGE_BELOW_SOC = 60.0
_PRECONDITION_S = 30 * 60  # cars switch remote climate off by themselves so a forgotten one cannot drain them
_HORN_S = 2.0
_HAZARD_S = 10.0
_MIN_TARGET_C, _MAX_TARGET_C = 15.0, 30.0  # as the platform validates them
_MIN_CHARGE_LIMIT, _MAX_CHARGE_LIMIT = 50, 100
_TURN_SPEED_MPS = 15 / 3.6

TB = "Vehicle.Powertrain.TractionBattery"


class CarState(StrEnum):
    """What the car is doing."""

    PARKED = "parked"
    DRIVING = "driving"
    CHARGING = "charging"


@dataclass(frozen=True, slots=True)
class CarSpec:
    """The physics of one car model."""

    name: str
    mass_kg: float
    drag_area_m2: float  # drag coefficient times frontal area
    rolling_resistance: float
    net_capacity_kwh: float
    nominal_voltage_v: float
    internal_resistance_ohm: float
    drivetrain_efficiency: float  # battery to wheel
    regen_efficiency: float  # wheel to battery
    max_regen_kw: float
    ac_charge_kw: float
    hvac_max_kw: float
    aux_power_w: float  # 12 V loads while awake
    rated_wh_per_km: float  # what the range estimate starts from


CAR_MODELS: dict[str, CarSpec] = {
    spec.name: spec
    for spec in (
        CarSpec("smartev S1", 1550, 0.62, 0.009, 52, 360, 0.10, 0.88, 0.65, 50, 11, 4.0, 250, 150),
        CarSpec("smartev X1", 2050, 0.58, 0.0085, 77, 400, 0.08, 0.90, 0.70, 80, 11, 5.0, 300, 170),
        CarSpec("smartev V1", 2600, 1.00, 0.010, 90, 400, 0.08, 0.88, 0.65, 70, 11, 6.0, 350, 230),
    )
}
DEFAULT_MODEL = "smartev S1"


def car_spec(model: str) -> CarSpec:
    """The spec of a car model by name; raises ValueError naming the known models."""
    try:
        return CAR_MODELS[model]
    except KeyError:
        raise ValueError(f"unknown car model {model!r}; known models: {', '.join(CAR_MODELS)}") from None


@dataclass(frozen=True, slots=True)
class Place:
    """A named point, in metres east (x) and north (y) of the city centre."""

    name: str
    x: float
    y: float

    @property
    def latitude(self) -> float:
        """WGS 84 latitude."""
        return CENTRE_LATITUDE + self.y / _M_PER_DEG_LAT

    @property
    def longitude(self) -> float:
        """WGS 84 longitude."""
        return CENTRE_LONGITUDE + self.x / _M_PER_DEG_LON


@dataclass(frozen=True, slots=True)
class PlannedTrip:
    """A departure in a car's routine."""

    depart_at: float  # epoch seconds
    destination: Place


@dataclass(frozen=True, slots=True)
class Block:
    """A straight stretch of road between two intersections."""

    x: float
    y: float
    dx: float  # unit direction
    dy: float
    heading: float
    length_m: float
    cruise_mps: float
    end_mps: float  # speed to be at when reaching the end
    stop_s: float  # red-light wait at the end


class CommandOutcome(NamedTuple):
    """What a command did: `succeeded`, `failed` (valid but not possible now) or `rejected` (invalid)."""

    status: CommandStatus
    detail: str


def outside_temperature(epoch_s: float) -> float:
    """Berlin's typical air temperature at this moment (seasonal mean plus a day-night swing), °C."""
    local = datetime.fromtimestamp(epoch_s, _BERLIN)
    # Interpolate between mid-month normals so the temperature has no step at month boundaries.
    month_pos = local.month - 1 + (local.day - 15.5) / 30.5
    lo = math.floor(month_pos)
    frac = month_pos - lo
    mean = _MONTH_MEAN_C[lo % 12] * (1 - frac) + _MONTH_MEAN_C[(lo + 1) % 12] * frac
    swing = _MONTH_SWING_C[lo % 12] * (1 - frac) + _MONTH_SWING_C[(lo + 1) % 12] * frac
    hour = local.hour + local.minute / 60 + local.second / 3600
    return mean + swing * math.cos(2 * math.pi * (hour - 15.0) / 24)  # warmest mid-afternoon


def _relax(value: float, target: float, dt: float, tau: float) -> float:
    """First-order approach of `value` to `target`, exact for any step length."""
    return target + (value - target) * math.exp(-dt / tau)


def _r(value: float, digits: int) -> float:
    """Rounded, without the negative zero that would otherwise reach the wire as -0.0."""
    return round(value, digits) + 0.0


class CarModel:
    """One simulated car; advance it with `step` and steer it with `apply_command`."""

    def __init__(
        self,
        seed: int | str,
        start: datetime,
        spec: CarSpec | None = None,
        *,
        soc: float | None = None,
    ) -> None:
        """Create a car at simulated time `start`, placed where its routine has it at that moment.

        Args:
            seed: everything random about the car (home, habits, routes) follows from it.
            start: the simulated time the car starts at; must be timezone-aware.
            spec: the car model; `smartev S1` when not given.
            soc: the starting state of charge in percent; random when not given.
        """
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.spec = spec or CAR_MODELS[DEFAULT_MODEL]
        self._seed = str(seed)
        self._t = start.timestamp()
        rng = random.Random(f"{self._seed}:car")

        self.home = self._random_place("home", rng, 0.0, 0.0, CITY_RADIUS_M)
        self.work = self._random_place("work", rng, 0.0, 0.0, CITY_RADIUS_M)
        self._commuter = rng.random() < 0.85
        self._leave_for_work_h = rng.uniform(6.5, 9.0)
        self._leave_work_h = rng.uniform(16.0, 18.5)
        self._forgets_lock_p = 0.05
        self._state_of_health = _r(rng.uniform(90.0, 99.5), 1)
        self._usable_kwh = self.spec.net_capacity_kwh * self._state_of_health / 100
        self._charge_limit = rng.choice((80, 80, 90, 100))
        start_soc = rng.uniform(35.0, 90.0) if soc is None else min(max(soc, 0.0), 100.0)
        self._energy_kwh = self._usable_kwh * start_soc / 100
        self._odometer_m = rng.uniform(3_000_000, 60_000_000)
        self._tire_cold_kpa = tuple(rng.uniform(240.0, 260.0) for _ in range(4))
        self._sensor_offset_c = rng.uniform(-0.5, 0.5)
        self._wh_per_m = self.spec.rated_wh_per_km / 1000

        t_out = outside_temperature(self._t)
        self._t_out = t_out
        self._t_out_at = self._t
        self._cabin_c = t_out
        self._battery_c = t_out + 2.0
        self._tire_c = t_out
        self._target_c = rng.choice((20.0, 21.0, 21.0, 22.0))

        self._state = CarState.PARKED
        self._locked = True
        self._plugged_in = False
        self._climate_on = False
        self._climate_off_at = math.inf
        self._horn_until = -math.inf
        self._hazard_until = -math.inf
        self._speed_mps = 0.0
        self._power_w = -_PARKED_DRAIN_W
        self._session_wall_kwh = 0.0
        self._session_s = 0.0

        self._route: list[Block] = []
        self._block = 0
        self._block_pos_m = 0.0
        self._wait_s = 0.0
        self._accel = 1.6
        self._brake = 2.0
        self._destination = self.home
        self._arrival_rng = rng
        self._unreported_wh = 0.0

        # Place the car where today's routine has it, as if it had lived the day so far.
        self._trips: deque[PlannedTrip] = deque()
        local_day = datetime.fromtimestamp(self._t, _BERLIN).date()
        self._planned_through = local_day - timedelta(days=1)
        self._plan_horizon = self._t
        self._plan_next_day()
        self._place = self.home
        while self._trips and self._trips[0].depart_at <= self._t:
            self._place = self._trips.popleft().destination
        self._x, self._y = self._place.x, self._place.y
        self._heading = 0.0
        if self._place == self.home:
            self._plugged_in = True
            if self.soc < _HOME_CHARGE_BELOW_SOC:
                self._start_charging()

    # -- what the car looks like from outside -------------------------------------------------------------

    @property
    def time(self) -> float:
        """Simulated time, epoch seconds."""
        return self._t

    @property
    def state(self) -> CarState:
        """Parked, driving or charging."""
        return self._state

    @property
    def soc(self) -> float:
        """State of charge, percent of the usable capacity."""
        return min(max(self._energy_kwh / self._usable_kwh * 100, 0.0), 100.0)

    @property
    def energy_kwh(self) -> float:
        """Energy in the battery, kWh."""
        return self._energy_kwh

    @property
    def charge_limit(self) -> int:
        """The state of charge charging stops at, percent."""
        return self._charge_limit

    @property
    def locked(self) -> bool:
        """True when the doors are locked."""
        return self._locked

    @property
    def plugged_in(self) -> bool:
        """True when a charging cable is connected."""
        return self._plugged_in

    @property
    def climate_on(self) -> bool:
        """True when heating or air conditioning runs."""
        return self._climate_on

    @property
    def position(self) -> tuple[float, float]:
        """(latitude, longitude)."""
        return CENTRE_LATITUDE + self._y / _M_PER_DEG_LAT, CENTRE_LONGITUDE + self._x / _M_PER_DEG_LON

    @property
    def upcoming_trips(self) -> tuple[PlannedTrip, ...]:
        """The departures planned so far that have not happened yet."""
        return tuple(self._trips)

    def signals(self) -> dict[str, SignalValue]:
        """The car's full state as VSS 6.0 signals."""
        lat, lon = self.position
        ocv = self._open_circuit_voltage()
        current = self._power_w / ocv
        voltage = ocv + current * self.spec.internal_resistance_ohm
        tires = [
            max(0, round((cold + _ATM_KPA) * (self._tire_c + 273.15) / 293.15 - _ATM_KPA))
            for cold in self._tire_cold_kpa
        ]
        driving = self._state is CarState.DRIVING
        if driving:
            lv_state = "ON"
        elif self._climate_on:
            lv_state = "ACC"
        else:
            lv_state = "OFF"
        session_kw = self._session_wall_kwh / (self._session_s / 3600) if self._session_s > 0 else 0.0
        return {
            "Vehicle.Speed": _r(self._speed_mps * 3.6, 1),
            "Vehicle.IsMoving": self._speed_mps > 0.0,
            "Vehicle.CurrentLocation.Latitude": _r(lat, 6),
            "Vehicle.CurrentLocation.Longitude": _r(lon, 6),
            "Vehicle.CurrentLocation.Heading": self._heading,
            "Vehicle.TraveledDistance": int(self._odometer_m),
            "Vehicle.Powertrain.Range": int(self._energy_kwh * 1000 / self._wh_per_m),
            f"{TB}.StateOfCharge.Current": _r(self.soc, 2),
            f"{TB}.StateOfCharge.CurrentEnergy": _r(self._energy_kwh, 3),
            f"{TB}.NetCapacity": round(self._usable_kwh),
            f"{TB}.StateOfHealth": self._state_of_health,
            f"{TB}.CurrentVoltage": _r(voltage, 1),
            f"{TB}.CurrentCurrent": _r(current, 1),
            f"{TB}.CurrentPower": _r(self._power_w, 0),
            f"{TB}.Temperature.Average": _r(self._battery_c, 1),
            f"{TB}.Charging.IsCharging": self._state is CarState.CHARGING,
            f"{TB}.Charging.ChargingPort.AnyPosition.IsChargingCableConnected": self._plugged_in,
            f"{TB}.Charging.ChargeLimit": self._charge_limit,
            f"{TB}.Charging.TimeToComplete": self._time_to_complete_s(),
            f"{TB}.Charging.AveragePower": _r(session_kw, 2),
            "Vehicle.Cabin.HVAC.AmbientAirTemperature": _r(self._cabin_c, 1),
            "Vehicle.Cabin.HVAC.Station.Row1.Driver.Temperature": _r(self._target_c, 1),
            "Vehicle.Cabin.HVAC.IsAirConditioningActive": self._climate_on,
            "Vehicle.Exterior.AirTemperature": _r(self._t_out + self._sensor_offset_c, 1),
            "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked": self._locked,
            "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure": tires[0],
            "Vehicle.Chassis.Axle.Row1.Wheel.Right.Tire.Pressure": tires[1],
            "Vehicle.Chassis.Axle.Row2.Wheel.Left.Tire.Pressure": tires[2],
            "Vehicle.Chassis.Axle.Row2.Wheel.Right.Tire.Pressure": tires[3],
            "Vehicle.Body.Horn.IsActive": self._t < self._horn_until,
            "Vehicle.Body.Lights.Hazard.IsSignaling": self._t < self._hazard_until,
            "Vehicle.LowVoltageSystemState": lv_state,
            "Vehicle.Diagnostics.DTCList": [],
            "Vehicle.Diagnostics.DTCCount": 0,
        }

    # -- time --------------------------------------------------------------------------------------------

    def step(self, dt_s: float) -> dict[str, SignalValue]:
        """Advance simulated time by `dt_s` seconds and return the signals at the new time."""
        if not math.isfinite(dt_s) or dt_s < 0:
            raise ValueError(f"dt_s must be a finite number >= 0, got {dt_s!r}")
        end = self._t + dt_s
        while True:
            self._handle_due_events()
            remaining = end - self._t
            if remaining <= 0:
                break
            h = min(remaining, self._max_step_s(), self._until_next_event())
            last = h >= remaining
            self._advance(h)
            self._t = end if last else self._t + h
        return self.signals()

    def _max_step_s(self) -> float:
        # Driving needs fine steps for braking and energy; a parked car's first-order physics does not.
        if self._state is CarState.DRIVING:
            return 1.0
        if self._state is CarState.CHARGING or self._climate_on:
            return 10.0
        return 60.0

    def _until_next_event(self) -> float:
        until = self._plan_horizon - self._t
        if self._state is not CarState.DRIVING and self._trips:
            until = min(until, self._trips[0].depart_at - self._t)
        if self._t < self._climate_off_at:
            until = min(until, self._climate_off_at - self._t)
        return max(until, 1e-3)

    def _handle_due_events(self) -> None:
        while self._t >= self._plan_horizon:
            self._plan_next_day()
        if self._climate_on and self._t >= self._climate_off_at:
            self._climate_on = False
            self._climate_off_at = math.inf
        while self._state is not CarState.DRIVING and self._trips and self._trips[0].depart_at <= self._t:
            self._start_trip(self._trips.popleft())

    def _advance(self, h: float) -> None:
        if self._t - self._t_out_at >= 60.0:
            self._t_out = outside_temperature(self._t)
            self._t_out_at = self._t
        loads_w = self.spec.aux_power_w + self._hvac_power_w()
        if self._state is CarState.DRIVING:
            self._power_w = self._drive(h) - loads_w
        elif self._state is CarState.CHARGING:
            wall_w = self._charger_wall_power_w()
            self._power_w = wall_w * _CHARGER_EFFICIENCY - loads_w
            self._session_wall_kwh += wall_w * h / 3.6e6
            self._session_s += h
        else:
            self._power_w = -(_PARKED_DRAIN_W + (loads_w if self._climate_on else 0.0))

        energy_wh = self._power_w * h / 3600
        if self._state is CarState.DRIVING:
            self._unreported_wh -= energy_wh
        self._energy_kwh = min(max(self._energy_kwh + energy_wh / 1000, 0.0), self._usable_kwh)
        if self._state is CarState.CHARGING and self.soc >= self._charge_limit:
            self._energy_kwh = min(self._energy_kwh, self._usable_kwh * self._charge_limit / 100)
            self._stop_charging()
        if self._energy_kwh <= 0.0 and self._state is CarState.DRIVING:
            self._strand()

        if self._climate_on:
            self._cabin_c = _relax(self._cabin_c, self._target_c, h, 240.0)
        else:
            self._cabin_c = _relax(self._cabin_c, self._t_out, h, 1800.0)
        self._battery_c = _relax(self._battery_c, self._t_out + 0.5 * abs(self._power_w) / 1000, h, 3600.0)
        tire_target = self._t_out + (12.0 if self._state is CarState.DRIVING else 0.0)
        self._tire_c = _relax(self._tire_c, tire_target, h, 900.0)

    # -- driving ---------------------------------------------------------------------------------------------

    def _drive(self, h: float) -> float:
        """Move along the route for `h` seconds; returns the power into the battery from the wheels, W."""
        if self._wait_s > 0:
            self._wait_s = max(self._wait_s - h, 0.0)
            self._speed_mps = 0.0
            return 0.0
        block = self._route[self._block]
        remaining = block.length_m - self._block_pos_m
        v = self._speed_mps
        # The fastest speed to end this step at that still lets the car brake to the block's end speed,
        # counting the metres this step covers (v_new^2 = end^2 + 2 b (remaining - (v + v_new) h / 2)).
        b = self._brake
        reach = block.end_mps**2 + 2 * b * remaining - b * h * v
        v_safe = (-b * h + math.sqrt((b * h) ** 2 + 4 * reach)) / 2 if reach > 0 else 0.0
        v_new = max(min(v + self._accel * h, block.cruise_mps, v_safe), 0.0)
        moved = (v + v_new) / 2 * h
        accel = (v_new - v) / h
        v_avg = (v + v_new) / 2
        spec = self.spec
        force = spec.mass_kg * accel + 0.5 * _AIR_DENSITY * spec.drag_area_m2 * v_avg**2
        if v_avg > 0:
            force += spec.mass_kg * _G * spec.rolling_resistance
        wheel_w = force * v_avg
        if wheel_w >= 0:
            battery_w = -wheel_w / spec.drivetrain_efficiency
        else:
            battery_w = min(-wheel_w * spec.regen_efficiency, spec.max_regen_kw * 1000)

        if moved >= remaining - 0.5:
            moved = remaining
            self._block += 1
            self._block_pos_m = 0.0
            v_new = min(v_new, block.end_mps)
            self._wait_s = block.stop_s
        else:
            self._block_pos_m += moved
        self._speed_mps = v_new
        self._odometer_m += moved
        self._update_consumption(moved)
        if self._block >= len(self._route):
            self._x, self._y = self._destination.x, self._destination.y
            self._arrive()
        else:
            current = self._route[self._block]
            self._x = current.x + current.dx * self._block_pos_m
            self._y = current.y + current.dy * self._block_pos_m
            self._heading = current.heading
        return battery_w

    def _update_consumption(self, moved_m: float) -> None:
        if moved_m <= 0:
            return
        # Energy spent standing (heating at a red light) counts towards the next metres driven.
        weight = min(moved_m / 20_000, 1.0)
        recent = self._unreported_wh / moved_m
        self._wh_per_m = min(max(self._wh_per_m * (1 - weight) + recent * weight, 0.08), 0.40)
        self._unreported_wh = 0.0

    def _start_trip(self, trip: PlannedTrip) -> None:
        rng = random.Random(f"{self._seed}:trip:{trip.depart_at!r}")
        dest = trip.destination
        if abs(dest.x - self._x) + abs(dest.y - self._y) < 30 or self.soc < 1.0:
            return  # already there, or too empty to move: the driver takes the bus
        if self._state is CarState.CHARGING:
            self._stop_charging()
        self._plugged_in = False
        self._locked = True  # unlocked to get in, locked again on driving off
        self._climate_on = True
        self._climate_off_at = math.inf
        self._accel = rng.uniform(1.2, 2.2)
        self._brake = rng.uniform(1.6, 2.6)
        self._route = _manhattan_route(self._x, self._y, dest.x, dest.y, rng)
        self._block = 0
        self._block_pos_m = 0.0
        self._wait_s = 0.0
        self._destination = dest
        self._arrival_rng = rng
        self._state = CarState.DRIVING
        self._heading = self._route[0].heading

    def _arrive(self) -> None:
        self._state = CarState.PARKED
        self._speed_mps = 0.0
        self._place = self._destination
        self._route = []
        self._climate_on = False
        self._locked = self._arrival_rng.random() >= self._forgets_lock_p
        if self._place == self.home:
            self._plugged_in = True
            if self.soc < _HOME_CHARGE_BELOW_SOC:
                self._start_charging()

    def _strand(self) -> None:
        """The battery ran flat on the way: the car rolls to a stop where it is."""
        self._state = CarState.PARKED
        self._speed_mps = 0.0
        self._route = []
        self._climate_on = False
        self._place = Place("roadside", self._x, self._y)

    # -- energy ---------------------------------------------------------------------------------------------

    def _hvac_power_w(self) -> float:
        if not self._climate_on:
            return 0.0
        # Holding a temperature against the outside plus pulling the cabin towards it; heat pump folded in.
        hold = 60.0 * abs(self._target_c - self._t_out)
        pull = 200.0 * abs(self._target_c - self._cabin_c)
        return min(hold + pull + 100.0, self.spec.hvac_max_kw * 1000)

    def _charger_wall_power_w(self) -> float:
        soc = self.soc
        if soc <= _TAPER_FROM_SOC:
            factor = 1.0
        else:
            factor = 1.0 - (1.0 - _TAPER_AT_FULL) * (soc - _TAPER_FROM_SOC) / (100.0 - _TAPER_FROM_SOC)
        return self.spec.ac_charge_kw * 1000 * factor

    def _time_to_complete_s(self) -> int:
        if self._state is not CarState.CHARGING:
            return 0
        soc, limit = self.soc, float(self._charge_limit)
        if soc >= limit:
            return 0
        battery_kw = self.spec.ac_charge_kw * _CHARGER_EFFICIENCY
        kwh_per_pct = self._usable_kwh / 100
        hours = 0.0
        if soc < _TAPER_FROM_SOC:
            hours += (min(limit, _TAPER_FROM_SOC) - soc) * kwh_per_pct / battery_kw
        if limit > _TAPER_FROM_SOC:
            # Power falls linearly above the taper point, so the time is a logarithm of the power ratio.
            k = (1.0 - _TAPER_AT_FULL) / (100.0 - _TAPER_FROM_SOC)
            a = max(soc, _TAPER_FROM_SOC)
            ratio = (1 - k * (a - _TAPER_FROM_SOC)) / (1 - k * (limit - _TAPER_FROM_SOC))
            hours += kwh_per_pct / battery_kw * math.log(ratio) / k
        return int(hours * 3600)

    def _open_circuit_voltage(self) -> float:
        return self.spec.nominal_voltage_v * (0.90 + 0.15 * self.soc / 100)

    def _start_charging(self) -> None:
        self._state = CarState.CHARGING
        self._session_wall_kwh = 0.0
        self._session_s = 0.0

    def _stop_charging(self) -> None:
        self._state = CarState.PARKED

    # -- routine -------------------------------------------------------------------------------------------

    def _plan_next_day(self) -> None:
        day = self._planned_through + timedelta(days=1)
        self._trips.extend(self._plan_day(day))
        self._planned_through = day
        self._plan_horizon = datetime.combine(day + timedelta(days=1), time(), tzinfo=_BERLIN).timestamp()

    def _plan_day(self, day: date) -> list[PlannedTrip]:
        rng = random.Random(f"{self._seed}:plan:{day.isoformat()}")
        midnight = datetime.combine(day, time(), tzinfo=_BERLIN)

        def at(hours: float) -> float:
            # Wall-clock arithmetic on an aware datetime keeps daylight-saving days right.
            return (midnight + timedelta(hours=hours)).timestamp()

        trips: list[PlannedTrip] = []

        def errand(leave_h: float) -> float:
            place = self._random_place("errand", rng, self.home.x, self.home.y, 3_000.0)
            back_h = leave_h + 0.4 + rng.uniform(0.3, 1.5)
            trips.append(PlannedTrip(at(leave_h), place))
            trips.append(PlannedTrip(at(back_h), self.home))
            return back_h

        if self._commuter and day.weekday() < 5:
            back_h = self._leave_work_h + rng.uniform(-0.5, 0.5)
            trips.append(PlannedTrip(at(self._leave_for_work_h + rng.uniform(-0.25, 0.25)), self.work))
            trips.append(PlannedTrip(at(back_h), self.home))
            if rng.random() < 0.35:
                errand(back_h + rng.uniform(1.0, 2.5))
        else:
            count = rng.choice((0, 1, 1, 2))
            if count >= 1:
                errand(rng.uniform(9.5, 12.5))
            if count >= 2:
                errand(rng.uniform(14.5, 18.0))
        return trips

    @staticmethod
    def _random_place(name: str, rng: random.Random, cx: float, cy: float, radius: float) -> Place:
        r = radius * math.sqrt(rng.random())  # uniform over the disc, not bunched at its centre
        angle = rng.uniform(0, 2 * math.pi)
        x, y = cx + r * math.cos(angle), cy + r * math.sin(angle)
        limit = CITY_RADIUS_M * 1.2
        dist = math.hypot(x, y)
        if dist > limit:
            x, y = x * limit / dist, y * limit / dist
        return Place(name, x, y)

    # -- commands ------------------------------------------------------------------------------------------

    def apply_command(self, name: str, args: Mapping[str, Any]) -> CommandOutcome:
        """Carry out a remote command; `rejected` with a reason for unknown names or bad arguments."""
        handler = self._commands().get(name)
        if handler is None:
            return CommandOutcome("rejected", f"unknown command {name!r}; known: {', '.join(COMMAND_NAMES)}")
        if not isinstance(args, Mapping):
            return CommandOutcome("rejected", "args must be a JSON object")
        return handler(args)

    def _commands(self) -> dict[str, Callable[[Mapping[str, Any]], CommandOutcome]]:
        return {
            "lock": self._lock,
            "unlock": self._unlock,
            "climate": self._climate,
            "charge": self._charge,
            "honk_flash": self._honk_flash,
        }

    def _lock(self, args: Mapping[str, Any]) -> CommandOutcome:
        if problem := _unexpected(args, (), "lock"):
            return CommandOutcome("rejected", problem)
        was = self._locked
        self._locked = True
        return CommandOutcome("succeeded", "already locked" if was else "locked")

    def _unlock(self, args: Mapping[str, Any]) -> CommandOutcome:
        if problem := _unexpected(args, (), "unlock"):
            return CommandOutcome("rejected", problem)
        if self._state is CarState.DRIVING:
            return CommandOutcome("failed", "cannot unlock remotely while the car is being driven")
        was = self._locked
        self._locked = False
        return CommandOutcome("succeeded", "unlocked" if was else "already unlocked")

    def _climate(self, args: Mapping[str, Any]) -> CommandOutcome:
        if problem := _unexpected(args, ("on", "target_temperature"), "climate"):
            return CommandOutcome("rejected", problem)
        on = args.get("on")
        if not isinstance(on, bool):
            return CommandOutcome("rejected", "climate needs 'on': true or false")
        target = args.get("target_temperature")
        if target is not None:
            if isinstance(target, bool) or not isinstance(target, int | float) or not math.isfinite(target):
                return CommandOutcome("rejected", "target_temperature must be a number in °C")
            if not _MIN_TARGET_C <= target <= _MAX_TARGET_C:
                return CommandOutcome(
                    "rejected",
                    f"target_temperature must be between {_MIN_TARGET_C:g} and {_MAX_TARGET_C:g} °C",
                )
            self._target_c = float(target)
        self._climate_on = on
        driving = self._state is CarState.DRIVING
        self._climate_off_at = self._t + _PRECONDITION_S if on and not driving else math.inf
        if on:
            return CommandOutcome("succeeded", f"climate on, {self._target_c:g} °C")
        return CommandOutcome("succeeded", "climate off")

    def _charge(self, args: Mapping[str, Any]) -> CommandOutcome:
        if problem := _unexpected(args, ("action", "limit"), "charge"):
            return CommandOutcome("rejected", problem)
        if not args:
            return CommandOutcome("rejected", "charge needs 'action' (start or stop), 'limit' or both")
        action = args.get("action")
        if action is not None and action not in ("start", "stop"):
            return CommandOutcome("rejected", "action must be 'start' or 'stop'")
        limit = args.get("limit")
        if limit is not None:
            if type(limit) is not int:
                return CommandOutcome("rejected", "limit must be a whole number of percent")
            if not _MIN_CHARGE_LIMIT <= limit <= _MAX_CHARGE_LIMIT:
                return CommandOutcome(
                    "rejected", f"limit must be between {_MIN_CHARGE_LIMIT} and {_MAX_CHARGE_LIMIT} percent"
                )
        new_limit = self._charge_limit if limit is None else limit
        # Check before changing anything, so a command that fails leaves the car as it was.
        if action == "start" and self._state is not CarState.CHARGING:
            if not self._plugged_in:
                return CommandOutcome("failed", "no charging cable connected")
            if self.soc >= new_limit:
                return CommandOutcome("failed", f"battery is already at the charge limit of {new_limit} %")
        details = []
        if limit is not None:
            self._charge_limit = limit
            details.append(f"charge limit {limit} %")
        if action == "start":
            if self._state is not CarState.CHARGING:
                self._start_charging()
            details.append("charging")
        elif action == "stop":
            details.append("charging stopped" if self._state is CarState.CHARGING else "was not charging")
            if self._state is CarState.CHARGING:
                self._stop_charging()
        if self._state is CarState.CHARGING and self.soc >= self._charge_limit:
            self._stop_charging()
            details.append("limit reached, charging complete")
        return CommandOutcome("succeeded", ", ".join(details))

    def _honk_flash(self, args: Mapping[str, Any]) -> CommandOutcome:
        if problem := _unexpected(args, (), "honk_flash"):
            return CommandOutcome("rejected", problem)
        if self._state is CarState.DRIVING:
            return CommandOutcome("failed", "not while the car is being driven")
        self._horn_until = self._t + _HORN_S
        self._hazard_until = self._t + _HAZARD_S
        return CommandOutcome("succeeded", "honked and flashed")


COMMAND_NAMES = ("lock", "unlock", "climate", "charge", "honk_flash")


def _unexpected(args: Mapping[str, Any], allowed: tuple[str, ...], command: str) -> str | None:
    extra = sorted(str(k) for k in args if k not in allowed)
    if not extra:
        return None
    if not allowed:
        return f"{command} takes no arguments, got {', '.join(extra)}"
    return f"unexpected argument(s) {', '.join(extra)} for {command}; allowed: {', '.join(allowed)}"


def _manhattan_route(x0: float, y0: float, x1: float, y1: float, rng: random.Random) -> list[Block]:
    """Blocks from (x0, y0) to (x1, y1): first north or south, then east or west, with lights between."""
    legs: list[tuple[float, float, float, float, float]] = []  # start x, y, unit dx, dy, length
    if abs(y1 - y0) > 1.0:
        legs.append((x0, y0, 0.0, math.copysign(1.0, y1 - y0), abs(y1 - y0)))
    if abs(x1 - x0) > 1.0:
        legs.append((x0, y1, math.copysign(1.0, x1 - x0), 0.0, abs(x1 - x0)))
    if not legs:  # closer than a metre on both axes: one tiny hop so the trip still has a route
        legs.append((x0, y0, 1.0, 0.0, max(abs(x1 - x0), 0.1)))
    drafts: list[tuple[float, float, float, float, float, float]] = []  # x, y, dx, dy, length, cruise
    for sx, sy, dx, dy, length in legs:
        count = max(1, round(length / rng.uniform(180.0, 350.0)))
        each = length / count
        for i in range(count):
            cruise_kmh = rng.choice((30.0, 50.0, 50.0, 60.0)) * rng.uniform(0.9, 1.05)
            drafts.append((sx + dx * each * i, sy + dy * each * i, dx, dy, each, cruise_kmh / 3.6))
    blocks: list[Block] = []
    for i, (x, y, dx, dy, length, cruise) in enumerate(drafts):
        if i == len(drafts) - 1:
            end, stop = 0.0, 0.0
        elif rng.random() < 0.3:
            end, stop = 0.0, rng.uniform(5.0, 40.0)  # red light
        else:
            nxt = drafts[i + 1]
            end = min(cruise, nxt[5])
            if (nxt[2], nxt[3]) != (dx, dy):
                end = min(end, _TURN_SPEED_MPS)
            stop = 0.0
        heading = (math.degrees(math.atan2(dx, dy)) + 360.0) % 360.0
        blocks.append(Block(x, y, dx, dy, heading, length, cruise, end, stop))
    return blocks
