"""A deterministic simulated electric car in Berlin: where it drives, what that costs, how it charges and ages.

Pure: no I/O and no clock. Time only moves when `step(dt_s)` is called. Every random choice is drawn from a
generator seeded by the car's seed and the simulated day or trip, so a car's routine does not depend on how
finely it is stepped; only its physics integration does (and what follows from the state of charge, such as
when a car stops at a fast charger).

The car
- drives routes over the city's streets and motorways (`city.py`: road classes shaped after the WLTC phases),
  accelerating and braking as its driver does that day;
- spends energy on the road load m·a + ½·ρ·CdA·v² + m·g·Crr of its `CarSpec`, through a drivetrain of fixed
  efficiency; braking recovers energy up to the motor's regeneration limit, less when the battery is full or
  cold, and the friction brakes take the rest;
- heats or cools its cabin (`climate.py`: a heat pump whose efficiency falls with the outside temperature),
  powers its 12 V system while awake, and draws 30 W while asleep;
- loses I²R heat in its battery (`battery.py`), which warms the pack; cools the pack above 35 °C and warms it
  on the way to a fast charger in the cold;
- charges at home (70 % of cars have a wallbox), at street-side AC posts, and at public fast chargers
  (`city.FAST_CHARGERS`), each with its own charging curve;
- ages: its state of health falls with equivalent full cycles and with calendar time, and its usable
  capacity with it;
- keeps an energy ledger (`CarModel.energy`) that balances the battery's energy exactly;
- has faults on demand (`faults.py`).

Daily life: home and work lie within 10 km of the centre. On weekdays 85 % of cars commute, and some run an
errand after work; on other days cars run errands, and on some weekend days make an excursion 20-45 km out
of town on the radial motorways. A driver leaves only with charge enough for the trip, for reaching a fast
charger from the destination, and a 10 % reserve (and never below 20 %), or else charges on the way at a fast
charger to 80 %; a car that arrives below 20 % goes to a fast charger at once and comes back, unless it is home
at its wallbox. A car without a wallbox often plugs into a street-side AC post at home or work when below half
full. A car too flat to reach a charger gets roadside help an hour later: a mobile charger, to 25 %.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from smartev.agent.source import (
    AIR_CONDITIONING,
    CHARGE_LIMIT,
    COMMAND_NAMES,
    MAX_CHARGE_LIMIT,
    MAX_TARGET_C,
    MIN_CHARGE_LIMIT,
    MIN_TARGET_C,
    START_STOP_CHARGING,
    TARGET_TEMPERATURE,
    CommandOutcome,
    CommandStatus,
    SignalValue,
    actuator_targets,
)
from smartev.sim.battery import (
    EnergyLedger,
    ac_charge_factor,
    cells_in_series,
    dc_charge_factor,
    internal_resistance,
    open_circuit_voltage,
    state_of_health,
    temperature_factor,
)
from smartev.sim.city import (
    CENTRE_LATITUDE,
    CENTRE_LONGITUDE,
    CITY_RADIUS_M,
    FAST_CHARGERS,
    HOME_WALLBOX,
    M_PER_DEG_LAT,
    M_PER_DEG_LON,
    MOBILE_SERVICE,
    STREET_POST,
    Block,
    ChargePoint,
    Place,
    RoadClass,
    manhattan,
    nearest_fast_charger,
    plan_route,
)
from smartev.sim.climate import BERLIN, CABIN_TAU_OFF_S, CABIN_TAU_ON_S, hvac_power_w, outside_temperature
from smartev.sim.faults import TPMS_WARNING_FRACTION, WHEELS, Fault, ScheduledFault, make_fault, random_faults

__all__ = [
    "CAR_MODELS",
    "CENTRE_LATITUDE",
    "CENTRE_LONGITUDE",
    "CITY_RADIUS_M",
    "COMMAND_NAMES",
    "DEFAULT_MODEL",
    "FAST_CHARGERS",
    "MAX_CHARGE_LIMIT",
    "MAX_TARGET_C",
    "MIN_CHARGE_LIMIT",
    "MIN_TARGET_C",
    "TB",
    "Block",
    "CarModel",
    "CarSpec",
    "CarState",
    "ChargePoint",
    "CommandOutcome",
    "CommandStatus",
    "EnergyLedger",
    "Fault",
    "Place",
    "PlannedTrip",
    "RoadClass",
    "ScheduledFault",
    "SignalValue",
    "car_spec",
    "outside_temperature",
    "random_faults",
]

_G = 9.81
_AIR_DENSITY = 1.2
_ATM_KPA = 101.325
_PARKED_DRAIN_W = 30.0  # telematics and battery management keep a parked car awake a little
_AC_EFFICIENCY = 0.92  # the on-board charger
_DC_EFFICIENCY = 0.95  # the fast charger's own converter
_HOME_CHARGER_P = 0.7
_HOME_CHARGE_BELOW_SOC = 60.0
_STREET_CHARGE_BELOW_SOC = 50.0
_STREET_CHARGE_P = 0.5
_FAST_CHARGE_BELOW_SOC = 20.0
_FAST_CHARGE_TO_SOC = 80.0
_RESERVE = 0.10  # of the usable capacity, kept when judging whether a trip needs a charge first
_RESCUE_AFTER_S = 3600.0  # roadside assistance comes with a mobile charger...
_RESCUE_TO_SOC = 25.0  # ...and charges enough to reach a fast charger
_EXCURSION_P = 0.12  # of weekend days
_PRECONDITION_S = 30 * 60  # cars switch remote climate off by themselves so a forgotten one cannot drain them
_HORN_S = 2.0
_HAZARD_S = 10.0
_PACK_J_PER_K_PER_KWH = 6_000.0  # heat capacity of the pack: about 6 kg of it per kWh
_PACK_LOSS_W_PER_K = 20.0  # to the outside air when parked; twice that while driving
_PACK_COOL_ABOVE_C = 35.0
_PACK_COOL_W_PER_K = 1_000.0
_PACK_COOL_MAX_W = 6_000.0  # heat the chiller can take away
_CHILLER_COP = 3.0
_PACK_HEATER_W = 4_000.0
_PACK_PRECONDITION_TO_C = 25.0
_TTC_EVERY_S = 30.0
_AGE_EVERY_S = 600.0  # state of health moves by thousandths of a percent a day

TB = "Vehicle.Powertrain.TractionBattery"
_TIRE = "Vehicle.Chassis.Axle.{}.Wheel.{}.Tire"
_TIRE_PATHS = tuple(
    _TIRE.format(*w) for w in (("Row1", "Left"), ("Row1", "Right"), ("Row2", "Left"), ("Row2", "Right"))
)
_PRESSURE = tuple(f"{p}.Pressure" for p in _TIRE_PATHS)
_PRESSURE_LOW = tuple(f"{p}.IsPressureLow" for p in _TIRE_PATHS)


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
    net_capacity_kwh: float  # when new
    nominal_voltage_v: float
    internal_resistance_ohm: float  # of the pack at 25 °C when new
    drivetrain_efficiency: float  # battery to wheel
    regen_efficiency: float  # wheel to battery
    max_regen_kw: float
    ac_charge_kw: float  # the on-board charger, from the wall
    hvac_max_kw: float
    aux_power_w: float  # 12 V loads while awake
    rated_wh_per_km: float  # what the range estimate starts from
    dc_charge_kw: float = 100.0  # peak DC charging power


CAR_MODELS: dict[str, CarSpec] = {
    spec.name: spec
    for spec in (
        CarSpec(
            name="smartev S1",
            mass_kg=1550,
            drag_area_m2=0.62,
            rolling_resistance=0.009,
            net_capacity_kwh=52,
            nominal_voltage_v=360,
            internal_resistance_ohm=0.07,
            drivetrain_efficiency=0.88,
            regen_efficiency=0.65,
            max_regen_kw=50,
            ac_charge_kw=11,
            hvac_max_kw=4.0,
            aux_power_w=250,
            rated_wh_per_km=150,
            dc_charge_kw=80,
        ),
        CarSpec(
            name="smartev X1",
            mass_kg=2050,
            drag_area_m2=0.58,
            rolling_resistance=0.0085,
            net_capacity_kwh=77,
            nominal_voltage_v=400,
            internal_resistance_ohm=0.055,
            drivetrain_efficiency=0.90,
            regen_efficiency=0.70,
            max_regen_kw=80,
            ac_charge_kw=11,
            hvac_max_kw=5.0,
            aux_power_w=300,
            rated_wh_per_km=170,
            dc_charge_kw=135,
        ),
        CarSpec(
            name="smartev V1",
            mass_kg=2600,
            drag_area_m2=1.00,
            rolling_resistance=0.010,
            net_capacity_kwh=90,
            nominal_voltage_v=400,
            internal_resistance_ohm=0.06,
            drivetrain_efficiency=0.88,
            regen_efficiency=0.65,
            max_regen_kw=70,
            ac_charge_kw=11,
            hvac_max_kw=6.0,
            aux_power_w=350,
            rated_wh_per_km=230,
            dc_charge_kw=110,
        ),
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
class PlannedTrip:
    """A departure in a car's routine."""

    depart_at: float  # epoch seconds
    destination: Place


@dataclass(frozen=True, slots=True)
class _ChargingStop:
    """A charge the driver waits for before driving on: at a fast charger, or from roadside assistance."""

    point: ChargePoint
    target_soc: float
    resume_to: Place  # where to drive when done, unless a planned trip is due by then
    rng: random.Random  # for the drive on, so it does not depend on when the charge ended


@dataclass(frozen=True, slots=True)
class _Leak:
    since: float
    from_kpa: float  # cold gauge pressure when it began
    tau_s: float  # gauge pressure falls as exp(-t / tau)


def _relax(value: float, target: float, dt: float, tau: float) -> float:
    """First-order approach of `value` to `target`, exact for any step length."""
    return target + (value - target) * math.exp(-dt / tau)


class CarModel:
    """One simulated car; advance it with `step` and steer it with `apply_command`."""

    def __init__(
        self,
        seed: int | str,
        start: datetime,
        spec: CarSpec | None = None,
        *,
        soc: float | None = None,
        weather: Callable[[float], float] | None = None,
        faults: Iterable[ScheduledFault] = (),
    ) -> None:
        """Create a car at simulated time `start`, placed where its routine has it at that moment.

        Args:
            seed: everything random about the car (home, habits, routes) follows from it.
            start: the simulated time the car starts at; must be timezone-aware.
            spec: the car model; `smartev S1` when not given.
            soc: the starting state of charge in percent; random when not given.
            weather: outside air temperature (°C) at an epoch second; Berlin's normals when not given.
            faults: faults to inject when their time comes (see `random_faults`); earlier ones at once.
        """
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.spec = spec or CAR_MODELS[DEFAULT_MODEL]
        self._seed = str(seed)
        self._t = start.timestamp()
        self._weather = weather or outside_temperature
        rng = random.Random(f"{self._seed}:car")

        self.home = self._random_place("home", rng, 0.0, 0.0, CITY_RADIUS_M)
        self.work = self._random_place("work", rng, 0.0, 0.0, CITY_RADIUS_M)
        self._commuter = rng.random() < 0.85
        self._leave_for_work_h = rng.uniform(6.5, 9.0)
        self._leave_work_h = rng.uniform(16.0, 18.5)
        self._forgets_lock_p = 0.05
        annual_km = rng.uniform(8_000.0, 20_000.0)
        self._charge_limit = rng.choice((80, 80, 90, 100))
        start_soc = rng.uniform(35.0, 90.0) if soc is None else min(max(soc, 0.0), 100.0)
        self._odometer_m = rng.uniform(3_000_000, 60_000_000)
        self._tire_set_kpa = tuple(rng.uniform(240.0, 260.0) for _ in range(4))
        self._tire_cold_kpa = list(self._tire_set_kpa)
        self._sensor_offset_c = rng.uniform(-0.5, 0.5)
        habits = random.Random(f"{self._seed}:charging")
        self.home_charger: bool = habits.random() < _HOME_CHARGER_P
        """True when the car has a wallbox at home; the others rely on public chargers."""

        # Age and wear follow from the mileage: a battery that has moved the car this far has cycled this much.
        spec = self.spec
        km = self._odometer_m / 1000
        self._built_at = self._t - km / annual_km * 365.25 * 86_400
        self._efc = km * spec.rated_wh_per_km / 1000 / spec.net_capacity_kwh
        self._soh = state_of_health((self._t - self._built_at) / 86_400, self._efc)
        self._usable_wh = spec.net_capacity_kwh * 10 * self._soh
        self._energy_wh = self._usable_wh * start_soc / 100
        self._cells = cells_in_series(spec.nominal_voltage_v)
        self._wh_per_m = spec.rated_wh_per_km / 1000
        # What it had charged, and consumed, before we met it.
        self._lifetime_wh = self._efc * spec.net_capacity_kwh * 1000
        self._aged_at = self._t

        t_out = self._weather(self._t)
        self._t_out = t_out
        self._t_out_at = self._t
        self._cabin_c = t_out
        self._battery_c = t_out + 2.0
        self._tire_c = t_out
        self._target_c = rng.choice((20.0, 21.0, 21.0, 22.0))
        self._ocv = self._r_ohm = self._electrics_at = 0.0
        self._refresh_electrics()
        self._tire_kpa: list[int] = []
        self._tire_kpa_at_c = t_out
        self._refresh_tires()

        self._state = CarState.PARKED
        self._locked = True
        self._plugged_in = False
        self._charger: ChargePoint | None = None
        self._stop: _ChargingStop | None = None
        self._rescue_at = math.inf
        self._rescue_to = self.home  # where the driver wanted to go when help was called
        self._climate_on = False
        self._climate_off_at = math.inf
        self._horn_until = -math.inf
        self._hazard_until = -math.inf
        self._asleep_since = self._t
        self._speed_mps = 0.0
        self._power_w = -_PARKED_DRAIN_W
        self._session_wall_wh = 0.0
        self._session_s = 0.0
        self._ttc_s = 0.0
        self._ttc_at = -math.inf

        self._route: list[Block] = []
        self._block = 0
        self._block_pos_m = 0.0
        self._wait_s = 0.0
        self._accel = 1.6
        self._brake = 2.0
        self._arrived = False
        self._destination = self.home
        self._arrival_rng = rng
        self._unreported_wh = 0.0

        # Where the energy went, Wh (see EnergyLedger).
        self._traction_wh = self._drivetrain_wh = self._braking_wh = 0.0
        self._regen_wh = self._refused_wh = self._hvac_wh = self._thermal_wh = 0.0
        self._aux_wh = self._drain_wh = self._battery_loss_wh = 0.0
        self._charged_wh = self._charger_loss_wh = self._discarded_wh = 0.0
        self._consumed_wh = 0.0  # to the wheels and the loads, for the battery's lifetime counter

        self._faults: list[Fault] = []
        self._dtcs: list[str] = []
        self._leaks: dict[int, _Leak] = {}
        self._tpms_low = [False, False, False, False]
        self._tpms_warn_at = math.inf
        self._weak_12v = False
        self._scheduled = deque(sorted(faults, key=lambda f: f.at))

        # Place the car where today's routine has it, as if it had lived the day so far.
        self._trips: deque[PlannedTrip] = deque()
        local_day = datetime.fromtimestamp(self._t, BERLIN).date()
        self._planned_through = local_day - timedelta(days=1)
        self._plan_horizon = self._t
        self._plan_next_day()
        self._place = self.home
        while self._trips and self._trips[0].depart_at <= self._t:
            self._place = self._trips.popleft().destination
        self._x, self._y = self._place.x, self._place.y
        self._heading = 0.0
        if self._place == self.home and self.home_charger:
            self._plug_in(HOME_WALLBOX)
            if self.soc < _HOME_CHARGE_BELOW_SOC:
                self._start_charging()
        while self._scheduled and self._scheduled[0].at <= self._t:
            scheduled = self._scheduled.popleft()
            self.inject_fault(scheduled.kind, **scheduled.details)

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
        return min(max(self._energy_wh / self._usable_wh * 100, 0.0), 100.0)

    @property
    def energy_kwh(self) -> float:
        """Energy in the battery, kWh."""
        return self._energy_wh / 1000

    @property
    def state_of_health(self) -> float:
        """Usable capacity as a percentage of the capacity when new."""
        return self._soh

    @property
    def equivalent_full_cycles(self) -> float:
        """Battery throughput over the car's life (charge plus discharge) in units of twice its capacity."""
        return self._efc

    @property
    def energy(self) -> EnergyLedger:
        """Where the energy went since this model was created."""
        return EnergyLedger(
            traction_kwh=self._traction_wh / 1000,
            drivetrain_loss_kwh=self._drivetrain_wh / 1000,
            braking_kwh=self._braking_wh / 1000,
            regenerated_kwh=self._regen_wh / 1000,
            regen_refused_kwh=self._refused_wh / 1000,
            hvac_kwh=self._hvac_wh / 1000,
            battery_thermal_kwh=self._thermal_wh / 1000,
            aux_kwh=self._aux_wh / 1000,
            parked_drain_kwh=self._drain_wh / 1000,
            battery_loss_kwh=self._battery_loss_wh / 1000,
            charged_kwh=self._charged_wh / 1000,
            charger_loss_kwh=self._charger_loss_wh / 1000,
            discarded_kwh=self._discarded_wh / 1000,
        )

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
    def charge_point(self) -> ChargePoint | None:
        """What the car is plugged into, if anything."""
        return self._charger

    @property
    def climate_on(self) -> bool:
        """True when heating or air conditioning runs."""
        return self._climate_on

    @property
    def position(self) -> tuple[float, float]:
        """(latitude, longitude)."""
        return CENTRE_LATITUDE + self._y / M_PER_DEG_LAT, CENTRE_LONGITUDE + self._x / M_PER_DEG_LON

    @property
    def road_class(self) -> RoadClass | None:
        """The class of road the car is driving on; None when it is not driving."""
        if self._state is not CarState.DRIVING:
            return None
        # Standing at a red light, the car is still on the block that ends there.
        block = self._block - 1 if self._wait_s > 0 else self._block
        return self._route[min(block, len(self._route) - 1)].road

    @property
    def upcoming_trips(self) -> tuple[PlannedTrip, ...]:
        """The departures planned so far that have not happened yet."""
        return tuple(self._trips)

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults the car has now."""
        return tuple(self._faults)

    def signals(self) -> dict[str, SignalValue]:
        """The car's full state as VSS 6.0 signals."""
        # Called every simulated second for every car of a fleet: literal keys and inline rounding keep it cheap.
        soc = self._energy_wh / self._usable_wh * 100
        soc = 0.0 if soc < 0.0 else 100.0 if soc > 100.0 else soc
        power = self._power_w
        current = power / self._ocv
        state = self._state
        charging = state is CarState.CHARGING
        if state is CarState.DRIVING:
            lv_state = "ON"
        elif self._climate_on:
            lv_state = "ACC"
        else:
            lv_state = "OFF"
        tires = self._tire_kpa
        low = self._tpms_low
        t = self._t
        return {
            "Vehicle.Speed": round(self._speed_mps * 3.6, 1),
            "Vehicle.IsMoving": self._speed_mps > 0.0,
            "Vehicle.CurrentLocation.Latitude": round(CENTRE_LATITUDE + self._y / M_PER_DEG_LAT, 6),
            "Vehicle.CurrentLocation.Longitude": round(CENTRE_LONGITUDE + self._x / M_PER_DEG_LON, 6),
            "Vehicle.CurrentLocation.Heading": self._heading,
            "Vehicle.TraveledDistance": int(self._odometer_m),
            "Vehicle.Powertrain.Range": int(self._energy_wh / self._wh_per_m),
            "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": round(soc, 2),
            "Vehicle.Powertrain.TractionBattery.StateOfCharge.CurrentEnergy": round(
                self._energy_wh / 1000, 3
            ),
            "Vehicle.Powertrain.TractionBattery.NetCapacity": round(self._usable_wh / 1000),
            "Vehicle.Powertrain.TractionBattery.StateOfHealth": round(self._soh, 2),
            "Vehicle.Powertrain.TractionBattery.CurrentVoltage": round(self._ocv + current * self._r_ohm, 1),
            "Vehicle.Powertrain.TractionBattery.CurrentCurrent": round(current, 1) + 0.0,
            "Vehicle.Powertrain.TractionBattery.CurrentPower": round(power) + 0.0,
            "Vehicle.Powertrain.TractionBattery.Temperature.Average": round(self._battery_c, 1) + 0.0,
            "Vehicle.Powertrain.TractionBattery.AccumulatedChargedEnergy": round(
                (self._lifetime_wh + self._charged_wh) / 1000, 1
            ),
            "Vehicle.Powertrain.TractionBattery.AccumulatedConsumedEnergy": round(
                (self._lifetime_wh + self._consumed_wh) / 1000, 1
            ),
            "Vehicle.Powertrain.TractionBattery.Charging.IsCharging": charging,
            "Vehicle.Powertrain.TractionBattery.Charging.ChargingPort.AnyPosition.IsChargingCableConnected": (
                self._plugged_in
            ),
            "Vehicle.Powertrain.TractionBattery.Charging.ChargeLimit": self._charge_limit,
            "Vehicle.Powertrain.TractionBattery.Charging.TimeToComplete": (
                max(int(self._ttc_s - (t - self._ttc_at)), 0) if charging else 0
            ),
            "Vehicle.Powertrain.TractionBattery.Charging.AveragePower": (
                round(self._session_wall_wh / (self._session_s / 3.6), 2) if self._session_s > 0 else 0.0
            ),
            "Vehicle.Cabin.HVAC.AmbientAirTemperature": round(self._cabin_c, 1) + 0.0,
            "Vehicle.Cabin.HVAC.Station.Row1.Driver.Temperature": round(self._target_c, 1),
            "Vehicle.Cabin.HVAC.IsAirConditioningActive": self._climate_on,
            "Vehicle.Exterior.AirTemperature": round(self._t_out + self._sensor_offset_c, 1) + 0.0,
            "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked": self._locked,
            "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure": tires[0],
            "Vehicle.Chassis.Axle.Row1.Wheel.Right.Tire.Pressure": tires[1],
            "Vehicle.Chassis.Axle.Row2.Wheel.Left.Tire.Pressure": tires[2],
            "Vehicle.Chassis.Axle.Row2.Wheel.Right.Tire.Pressure": tires[3],
            "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.IsPressureLow": low[0],
            "Vehicle.Chassis.Axle.Row1.Wheel.Right.Tire.IsPressureLow": low[1],
            "Vehicle.Chassis.Axle.Row2.Wheel.Left.Tire.IsPressureLow": low[2],
            "Vehicle.Chassis.Axle.Row2.Wheel.Right.Tire.IsPressureLow": low[3],
            "Vehicle.Body.Horn.IsActive": t < self._horn_until,
            "Vehicle.Body.Lights.Hazard.IsSignaling": t < self._hazard_until,
            "Vehicle.LowVoltageSystemState": lv_state,
            "Vehicle.LowVoltageBattery.CurrentVoltage": self._low_voltage(lv_state != "OFF" or charging),
            "Vehicle.Diagnostics.DTCList": list(self._dtcs),
            "Vehicle.Diagnostics.DTCCount": len(self._dtcs),
        }

    def _low_voltage(self, awake: bool) -> float:
        """The 12 V battery: held up by the DC/DC converter while awake, resting and slowly sagging asleep."""
        if awake:
            # The converter charges a little higher in the cold; a worn battery pulls the line down.
            volts = min(max(14.1 - 0.01 * (self._t_out - 15.0), 13.8), 14.4)
            return round(volts - 0.4 if self._weak_12v else volts, 1)
        hours = (self._t - self._asleep_since) / 3600
        if self._weak_12v:
            return round(12.0 - 0.4 * (1.0 - math.exp(-hours / 12.0)), 1)
        return round(12.75 - 0.1 * (1.0 - math.exp(-hours / 24.0)) - 0.003 * max(20.0 - self._t_out, 0.0), 1)

    # -- faults --------------------------------------------------------------------------------------------

    def inject_fault(self, kind: str, **details: Any) -> Fault:
        """Give the car a fault now: `dtc`, `tyre` or `12v` (see `smartev.sim.faults`); ValueError if unknown."""
        rng = random.Random(f"{self._seed}:fault:{self._t!r}:{len(self._faults)}")
        fault = make_fault(kind, self._t, details, rng)
        if fault.kind == "tyre":
            assert fault.wheel is not None and fault.kpa_per_hour is not None
            wheel = WHEELS.index(fault.wheel)
            self._faults = [f for f in self._faults if f.kind != "tyre" or f.wheel != fault.wheel]
            start_kpa = self._tire_cold_kpa[wheel]
            self._leaks[wheel] = _Leak(self._t, start_kpa, start_kpa / fault.kpa_per_hour * 3600)
            self._tpms_warn_at = self._next_tpms_warning()
        else:
            self._store_dtc(fault.code)
            if fault.kind == "12v":
                self._weak_12v = True
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Repair everything, as a workshop visit would: codes cleared, tyres mended, 12 V battery replaced."""
        self._faults.clear()
        self._dtcs.clear()
        self._leaks.clear()
        self._tire_cold_kpa = list(self._tire_set_kpa)
        self._refresh_tires()
        self._tpms_low = [False, False, False, False]
        self._tpms_warn_at = math.inf
        self._weak_12v = False

    def _store_dtc(self, code: str) -> None:
        if code not in self._dtcs:
            self._dtcs.append(code)

    def _next_tpms_warning(self) -> float:
        """When the next leaking tyre falls below the warning threshold."""
        soonest = math.inf
        for wheel, leak in self._leaks.items():
            if self._tpms_low[wheel]:
                continue
            threshold = TPMS_WARNING_FRACTION * self._tire_set_kpa[wheel]
            at = leak.since + leak.tau_s * math.log(max(leak.from_kpa / threshold, 1.0))
            soonest = min(soonest, at)
        return soonest

    def _tpms_check(self) -> None:
        """The tyre-pressure monitor: warn for each leaking tyre now 20 % below its set pressure, and log its code."""
        self._leak_air(self._t)
        for wheel in self._leaks:
            threshold = TPMS_WARNING_FRACTION * self._tire_set_kpa[wheel]
            if not self._tpms_low[wheel] and self._tire_cold_kpa[wheel] <= threshold + 1e-6:
                self._tpms_low[wheel] = True
                self._store_dtc(next(f.code for f in self._faults if f.wheel == WHEELS[wheel]))
        self._tpms_warn_at = self._next_tpms_warning()

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
        t = self._t
        until = min(self._plan_horizon, self._climate_off_at, self._tpms_warn_at, self._rescue_at) - t
        if self._scheduled:
            until = min(until, self._scheduled[0].at - t)
        if self._state is CarState.PARKED and self._trips and self._rescue_at == math.inf:
            until = min(until, self._trips[0].depart_at - t)
        return max(until, 1e-3)

    def _handle_due_events(self) -> None:
        t = self._t
        while t >= self._plan_horizon:
            self._plan_next_day()
        if self._climate_on and t >= self._climate_off_at:
            self._climate_on = False
            self._climate_off_at = math.inf
        while self._scheduled and self._scheduled[0].at <= t:
            scheduled = self._scheduled.popleft()
            self.inject_fault(scheduled.kind, **scheduled.details)
        if t >= self._tpms_warn_at - 1e-6:
            self._tpms_check()
        if self._state is CarState.DRIVING:
            return
        if t >= self._rescue_at:
            self._rescue()
        if self._stop is not None:
            if self._state is not CarState.CHARGING:
                self._leave_stop()  # which takes the trips that came due meanwhile
            return  # while charging, the driver waits, and so do planned trips
        if self._rescue_at < math.inf:
            return  # waiting for roadside assistance
        while self._trips and self._trips[0].depart_at <= t and not self._driving():
            trip = self._trips.popleft()
            self._depart(trip.destination, random.Random(f"{self._seed}:trip:{trip.depart_at!r}"))

    def _driving(self) -> bool:
        return self._state is CarState.DRIVING

    def _refresh_electrics(self) -> None:
        """The pack's open-circuit voltage and resistance at its present charge, temperature and age."""
        spec = self.spec
        self._ocv = open_circuit_voltage(self.soc, self._cells)
        self._r_ohm = internal_resistance(spec.internal_resistance_ohm, self._battery_c, self._soh)
        self._electrics_at = self._t

    def _refresh_tires(self) -> None:
        """Tyre pressures as the sensors read them: gas law on each tyre's cold pressure, whole kPa."""
        kelvin = (self._tire_c + 273.15) / 293.15
        self._tire_kpa = [
            max(0, round((cold + _ATM_KPA) * kelvin - _ATM_KPA)) for cold in self._tire_cold_kpa
        ]
        self._tire_kpa_at_c = self._tire_c

    def _age(self, now: float) -> None:
        self._soh = state_of_health((now - self._built_at) / 86_400, self._efc)
        self._usable_wh = self.spec.net_capacity_kwh * 10 * self._soh
        self._aged_at = now

    def _advance(self, h: float) -> None:
        t = self._t
        if t - self._t_out_at >= 60.0:
            self._t_out = self._weather(t)
            self._t_out_at = t
        state = self._state
        climate = self._climate_on
        if state is CarState.PARKED and not climate:
            self._sleep(h)
            return
        t_out = self._t_out
        spec = self.spec
        driving = state is CarState.DRIVING
        charging = state is CarState.CHARGING
        temp = self._battery_c
        if t - self._electrics_at >= 10.0:
            self._refresh_electrics()
        soc = self._energy_wh / self._usable_wh * 100
        soc = 0.0 if soc < 0.0 else 100.0 if soc > 100.0 else soc
        wheel_w = self._drive(h) if driving else 0.0

        # Awake: the 12 V system runs, and the climate if it is on; a parked car keeps its own drain on top.
        hvac_w = (
            hvac_power_w(t_out, self._cabin_c, self._target_c, spec.hvac_max_kw * 1000) if climate else 0.0
        )
        aux_w = spec.aux_power_w
        drain_w = 0.0 if driving or charging else _PARKED_DRAIN_W
        cool_w = heater_w = 0.0
        if temp > _PACK_COOL_ABOVE_C:
            cool_w = min((temp - _PACK_COOL_ABOVE_C) * _PACK_COOL_W_PER_K, _PACK_COOL_MAX_W)
        elif driving and self._stop is not None and self._stop.point.dc and temp < _PACK_PRECONDITION_TO_C:
            heater_w = _PACK_HEATER_W  # warming the pack on the way to a fast charger, so it charges fast
        thermal_w = cool_w / _CHILLER_COP + heater_w

        traction_w = drivetrain_w = braking_w = regen_w = refused_w = 0.0
        if wheel_w > 0.0:
            traction_w = wheel_w
            drivetrain_w = wheel_w * (1.0 / spec.drivetrain_efficiency - 1.0)
        elif wheel_w < 0.0:
            braking_w = -wheel_w
            potential_w = braking_w * spec.regen_efficiency
            limit_w = spec.max_regen_kw * 1000 * temperature_factor(temp) * min((100.0 - soc) / 5.0, 1.0)
            regen_w = min(potential_w, max(limit_w, 0.0))
            refused_w = potential_w - regen_w
        charge_w = charger_loss_w = 0.0
        if charging:
            charge_w, charger_loss_w = self._charge_power_w(soc, temp)
        terminal_w = charge_w + regen_w - traction_w - drivetrain_w - hvac_w - thermal_w - aux_w - drain_w
        current = terminal_w / self._ocv
        loss_w = current * current * self._r_ohm

        k = h / 3600
        charged, charger_loss, regen, refused = charge_w * k, charger_loss_w * k, regen_w * k, refused_w * k
        traction, drivetrain, hvac = traction_w * k, drivetrain_w * k, hvac_w * k
        thermal, aux, drain, loss = thermal_w * k, aux_w * k, drain_w * k, loss_w * k
        out = traction + drivetrain + hvac + thermal + aux + drain + loss
        energy = self._energy_wh
        new = energy + charged + regen - out
        cap = self._usable_wh
        if charging:
            cap = min(cap, max(energy, self._usable_wh * self._target_soc() / 100))
        discarded = 0.0
        if new > cap:
            # What the battery cannot take is not taken: first less charging, then less regeneration.
            excess = new - cap
            cut = min(excess, charged)
            if cut > 0.0:
                charger_loss *= (charged - cut) / charged
                charged -= cut
                excess -= cut
            cut = min(excess, regen)
            regen -= cut
            refused += cut
            discarded = excess - cut  # left only when capacity faded below what a full battery held
            new = cap
        elif new < 0.0:
            # The battery ran flat within this step: it gave what it had, shared out in proportion.
            f = (energy + charged + regen) / out
            traction, drivetrain, hvac, thermal = traction * f, drivetrain * f, hvac * f, thermal * f
            aux, drain, loss = aux * f, drain * f, loss * f
            new = 0.0
        self._energy_wh = new
        self._power_w = (new - energy + loss + discarded) / k
        self._traction_wh += traction
        self._drivetrain_wh += drivetrain
        self._braking_wh += braking_w * k
        self._regen_wh += regen
        self._refused_wh += refused
        self._hvac_wh += hvac
        self._thermal_wh += thermal
        self._aux_wh += aux
        self._drain_wh += drain
        self._battery_loss_wh += loss
        self._charged_wh += charged
        self._charger_loss_wh += charger_loss
        self._discarded_wh += discarded
        self._consumed_wh += out - loss
        if driving:
            self._unreported_wh += out - regen
        if charging:
            self._session_wall_wh += charged + charger_loss
            self._session_s += h

        # Ageing: throughput in both directions counts towards equivalent full cycles.
        self._efc += abs(self._power_w) * k / (2000 * spec.net_capacity_kwh)
        if t + h - self._aged_at >= _AGE_EVERY_S:
            self._age(t + h)

        if climate:
            self._cabin_c = _relax(self._cabin_c, self._target_c, h, CABIN_TAU_ON_S)
        else:
            self._cabin_c = _relax(self._cabin_c, t_out, h, CABIN_TAU_OFF_S)
        pack_loss = _PACK_LOSS_W_PER_K * (2.0 if driving else 1.0)
        heat_w = loss / k + heater_w - cool_w
        capacity = spec.net_capacity_kwh * _PACK_J_PER_K_PER_KWH
        self._battery_c = _relax(temp, t_out + heat_w / pack_loss, h, capacity / pack_loss)
        tire_target = t_out + (12.0 if driving else 0.0)
        self._tire_c = _relax(self._tire_c, tire_target, h, 900.0)
        if self._leaks or abs(self._tire_c - self._tire_kpa_at_c) > 0.05:
            self._leak_air(t + h)
        self._asleep_since = t + h

        if charging:
            if new >= cap - 1e-6:
                self._stop_charging()
            elif t + h - self._ttc_at >= _TTC_EVERY_S:
                self._estimate_time_to_complete(t + h)
        if driving:
            if self._arrived:
                self._arrived = False
                self._arrive()
            elif new <= 0.0:
                self._strand()

    def _sleep(self, h: float) -> None:
        """A parked car asleep (most cars, most of the time): it draws a little, and takes the air's temperature."""
        t_out = self._t_out
        now = self._t + h
        k = h / 3600
        if now - self._electrics_at >= 60.0:
            self._refresh_electrics()
        current = _PARKED_DRAIN_W / self._ocv
        loss_w = current * current * self._r_ohm
        drain, loss = _PARKED_DRAIN_W * k, loss_w * k
        energy = self._energy_wh
        new = energy - drain - loss
        discarded = 0.0
        if new < 0.0:
            f = energy / (drain + loss)
            drain, loss, new = drain * f, loss * f, 0.0
        elif new > self._usable_wh:
            discarded, new = new - self._usable_wh, self._usable_wh
        self._energy_wh = new
        self._power_w = -drain / k
        self._drain_wh += drain
        self._consumed_wh += drain
        self._battery_loss_wh += loss
        self._discarded_wh += discarded
        self._efc += drain / (2000 * self.spec.net_capacity_kwh)
        if now - self._aged_at >= _AGE_EVERY_S:
            self._age(now)
        self._cabin_c = _relax(self._cabin_c, t_out, h, CABIN_TAU_OFF_S)
        capacity = self.spec.net_capacity_kwh * _PACK_J_PER_K_PER_KWH
        pack_target = t_out + loss_w / _PACK_LOSS_W_PER_K
        self._battery_c = _relax(self._battery_c, pack_target, h, capacity / _PACK_LOSS_W_PER_K)
        self._tire_c = _relax(self._tire_c, t_out, h, 900.0)
        if self._leaks or abs(self._tire_c - self._tire_kpa_at_c) > 0.05:
            self._leak_air(now)

    def _leak_air(self, now: float) -> None:
        """Let air out of leaking tyres, and read the pressures again."""
        for wheel, leak in self._leaks.items():
            self._tire_cold_kpa[wheel] = leak.from_kpa * math.exp(-(now - leak.since) / leak.tau_s)
        self._refresh_tires()

    # -- driving ---------------------------------------------------------------------------------------------

    def _drive(self, h: float) -> float:
        """Move along the route for `h` seconds; returns the power at the wheels, W (negative when braking)."""
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
        accel = self._accel * max(1.0 - v / 45.0, 0.3)  # less and less to spare as speed rises
        v_new = max(min(v + accel * h, block.cruise_mps, v_safe), 0.0)
        moved = (v + v_new) / 2 * h
        if moved >= remaining - 0.01:
            moved = remaining
            self._block += 1
            self._block_pos_m = 0.0
            v_new = min(v_new, block.end_mps)
            self._wait_s = block.stop_s
        else:
            self._block_pos_m += moved
        spec = self.spec
        v_avg = (v + v_new) / 2
        force = spec.mass_kg * (v_new - v) / h + 0.5 * _AIR_DENSITY * spec.drag_area_m2 * v_avg * v_avg
        if v_avg > 0:
            force += spec.mass_kg * _G * spec.rolling_resistance
        self._speed_mps = v_new
        self._odometer_m += moved
        self._update_consumption(moved)
        if self._block >= len(self._route):
            self._x, self._y = self._destination.x, self._destination.y
            self._arrived = True
        else:
            current = self._route[self._block]
            self._x = current.x + current.dx * self._block_pos_m
            self._y = current.y + current.dy * self._block_pos_m
            self._heading = current.heading
        return force * v_avg

    def _update_consumption(self, moved_m: float) -> None:
        if moved_m <= 0:
            return
        # Energy spent standing (heating at a red light) counts towards the next metres driven.
        weight = min(moved_m / 20_000, 1.0)
        recent = self._unreported_wh / moved_m
        self._wh_per_m = min(max(self._wh_per_m * (1 - weight) + recent * weight, 0.08), 0.40)
        self._unreported_wh = 0.0

    def _trip_wh(self, route: list[Block]) -> float:
        """What the driver expects a route to take: the usual consumption, plus air drag above city speeds."""
        spec = self.spec
        base = max(self._wh_per_m, spec.rated_wh_per_km / 1000)
        drag = 0.5 * _AIR_DENSITY * spec.drag_area_m2 / spec.drivetrain_efficiency / 3600
        wh = 0.0
        for block in route:
            extra = drag * max(block.cruise_mps**2 - 14.0**2, 0.0)
            wh += block.length_m * (base + extra)
        return wh * 1.15

    def _depart(self, dest: Place, rng: random.Random, *, check_charge: bool = True) -> None:
        """Set off to `dest`, by way of a fast charger if the charge is too low for the trip."""
        if manhattan(self._x, self._y, dest.x, dest.y) < 30:
            return  # already there
        route = plan_route(self._x, self._y, dest.x, dest.y, rng)
        if check_charge:
            near = nearest_fast_charger(dest.x, dest.y)
            assert near.place is not None
            after_m = manhattan(dest.x, dest.y, near.place.x, near.place.y)
            need = self._trip_wh(route) + after_m * self._wh_per_m * 1.15 + _RESERVE * self._usable_wh
            if self.soc < _FAST_CHARGE_BELOW_SOC or self._energy_wh < need:
                self._go_charge(dest, rng)
                return
        self._set_off(route, dest, rng)

    def _go_charge(self, then: Place, rng: random.Random) -> None:
        """Drive to the fast charger with the shortest detour on the way to `then`, or call for help."""
        charger = nearest_fast_charger(self._x, self._y, then)
        place = charger.place
        assert place is not None
        route = plan_route(self._x, self._y, place.x, place.y, rng)
        if self._energy_wh < self._trip_wh(route) / 1.15:
            if not self._plugged_in:  # plugged in, the car charges where it is and the driver takes the bus
                self._call_assistance(then)
            return
        self._stop = _ChargingStop(charger, _FAST_CHARGE_TO_SOC, then, rng)
        self._set_off(route, place, rng)

    def _set_off(self, route: list[Block], dest: Place, rng: random.Random) -> None:
        if self._state is CarState.CHARGING:
            self._stop_charging()
        self._plugged_in = False
        self._charger = None
        self._locked = True  # unlocked to get in, locked again on driving off
        self._climate_on = True
        self._climate_off_at = math.inf
        self._accel = rng.uniform(1.2, 2.0)
        self._brake = rng.uniform(1.3, 2.3)
        self._route = route
        self._block = 0
        self._block_pos_m = 0.0
        self._wait_s = 0.0
        self._destination = dest
        self._arrival_rng = rng
        self._state = CarState.DRIVING
        self._heading = route[0].heading

    def _arrive(self) -> None:
        self._state = CarState.PARKED
        self._speed_mps = 0.0
        self._place = self._destination
        self._route = []
        self._climate_on = False
        rng = self._arrival_rng
        self._locked = rng.random() >= self._forgets_lock_p
        stop = self._stop
        if stop is not None and stop.point.place == self._place:
            self._plug_in(stop.point)
            if self.soc < self._target_soc():
                self._start_charging()
            return  # done at once if already full enough: `_leave_stop` drives on
        if self._place == self.home and self.home_charger:
            self._plug_in(HOME_WALLBOX)
            if self.soc < _HOME_CHARGE_BELOW_SOC:
                self._start_charging()
            return
        if self.soc < _FAST_CHARGE_BELOW_SOC:
            self._go_charge(self._place, rng)  # and come back
            return
        if (
            not self.home_charger
            and self._place in (self.home, self.work)
            and self.soc < _STREET_CHARGE_BELOW_SOC
            and rng.random() < _STREET_CHARGE_P
        ):
            self._plug_in(STREET_POST)
            self._start_charging()

    def _strand(self) -> None:
        """The battery ran flat on the way: the car rolls to a stop where it is, and the driver calls for help."""
        self._state = CarState.PARKED
        self._speed_mps = 0.0
        self._route = []
        self._climate_on = False
        self._place = Place("roadside", self._x, self._y)
        resume = self._stop.resume_to if self._stop is not None else self._destination
        self._stop = None
        self._call_assistance(resume)

    def _call_assistance(self, then: Place) -> None:
        self._rescue_at = self._t + _RESCUE_AFTER_S
        self._rescue_to = then

    def _rescue(self) -> None:
        """Roadside assistance charges the car enough to reach a fast charger."""
        self._rescue_at = math.inf
        rng = random.Random(f"{self._seed}:rescue:{self._t!r}")
        self._stop = _ChargingStop(MOBILE_SERVICE, _RESCUE_TO_SOC, self._rescue_to, rng)
        self._plug_in(MOBILE_SERVICE)
        if self.soc < self._target_soc():
            self._start_charging()

    def _leave_stop(self) -> None:
        """Charged: drive on to where a planned trip says the driver should be by now, or back."""
        stop = self._stop
        assert stop is not None
        self._stop = None
        self._plugged_in = False
        self._charger = None
        dest, rng = stop.resume_to, stop.rng
        due = None
        while self._trips and self._trips[0].depart_at <= self._t:
            due = self._trips.popleft()  # trips missed while charging: only the latest still matters
        if due is not None:
            dest, rng = due.destination, random.Random(f"{self._seed}:trip:{due.depart_at!r}")
        # After a fast charge the driver goes on with what they have; after roadside help they look again.
        self._depart(dest, rng, check_charge=stop.point is MOBILE_SERVICE)

    # -- charging ----------------------------------------------------------------------------------------------

    def _plug_in(self, point: ChargePoint) -> None:
        self._plugged_in = True
        self._charger = point

    def _target_soc(self) -> float:
        if self._stop is not None:
            return min(self._stop.target_soc, float(self._charge_limit))
        return float(self._charge_limit)

    def _charge_power_w(self, soc: float, temp: float) -> tuple[float, float]:
        """Power the charger delivers into the car, and what it loses doing so, W."""
        point = self._charger
        if point is None:
            return 0.0, 0.0
        spec = self.spec
        if point.dc:
            battery_w = spec.dc_charge_kw * 1000 * dc_charge_factor(soc) * temperature_factor(temp)
            delivered = min(battery_w, point.power_kw * 1000)
            return delivered, delivered * (1 / _DC_EFFICIENCY - 1)
        wall = min(spec.ac_charge_kw, point.power_kw) * 1000 * ac_charge_factor(soc)
        return wall * _AC_EFFICIENCY, wall * (1 - _AC_EFFICIENCY)

    def _estimate_time_to_complete(self, now: float) -> None:
        """Seconds to the charge target at today's loads and temperature, integrated over the charging curve."""
        self._ttc_at = now
        self._ttc_s = 0.0
        target = self._target_soc()
        soc = self.soc
        if self._state is not CarState.CHARGING or soc >= target:
            return
        spec = self.spec
        loads = spec.aux_power_w
        if self._climate_on:
            loads += hvac_power_w(self._t_out, self._cabin_c, self._target_c, spec.hvac_max_kw * 1000)
        wh_per_pct = self._usable_wh / 100
        seconds = 0.0
        while soc < target:
            nxt = min(math.floor(soc) + 1.0, target)
            mid = (soc + nxt) / 2
            delivered, _ = self._charge_power_w(mid, self._battery_c)
            power = delivered - loads
            current = power / open_circuit_voltage(mid, self._cells)
            power -= (
                current
                * current
                * internal_resistance(spec.internal_resistance_ohm, self._battery_c, self._soh)
            )
            if power <= 0:
                return
            seconds += (nxt - soc) * wh_per_pct * 3600 / power
            soc = nxt
        self._ttc_s = seconds

    def _start_charging(self) -> None:
        self._state = CarState.CHARGING
        self._session_wall_wh = 0.0
        self._session_s = 0.0
        self._estimate_time_to_complete(self._t)

    def _stop_charging(self) -> None:
        self._state = CarState.PARKED

    # -- routine -------------------------------------------------------------------------------------------

    def _plan_next_day(self) -> None:
        day = self._planned_through + timedelta(days=1)
        self._trips.extend(self._plan_day(day))
        self._planned_through = day
        self._plan_horizon = datetime.combine(day + timedelta(days=1), time(), tzinfo=BERLIN).timestamp()

    def _plan_day(self, day: date) -> list[PlannedTrip]:
        rng = random.Random(f"{self._seed}:plan:{day.isoformat()}")
        midnight = datetime.combine(day, time(), tzinfo=BERLIN)

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
        elif day.weekday() >= 5 and rng.random() < _EXCURSION_P:
            # Out of town along one of the radial motorways, and back in the late afternoon.
            angle = math.radians(45 * rng.randrange(1, 9))
            r = rng.uniform(20_000.0, 45_000.0)
            x = r * math.cos(angle) + rng.uniform(-1_500.0, 1_500.0)
            y = r * math.sin(angle) + rng.uniform(-1_500.0, 1_500.0)
            leave_h = rng.uniform(9.0, 11.5)
            trips.append(PlannedTrip(at(leave_h), Place("excursion", x, y)))
            trips.append(PlannedTrip(at(leave_h + rng.uniform(4.0, 7.0)), self.home))
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
        targets = actuator_targets(name, args)
        if isinstance(targets, CommandOutcome):
            return targets
        if name == "lock":
            was = self._locked
            self._locked = True
            return CommandOutcome("succeeded", "already locked" if was else "locked")
        if name == "unlock":
            if self._state is CarState.DRIVING:
                return CommandOutcome("failed", "cannot unlock remotely while the car is being driven")
            was = self._locked
            self._locked = False
            return CommandOutcome("succeeded", "unlocked" if was else "already unlocked")
        if name == "climate":
            return self._climate(targets)
        if name == "charge":
            return self._charge(targets)
        return self._honk_flash()

    def _climate(self, targets: Mapping[str, SignalValue]) -> CommandOutcome:
        on = targets[AIR_CONDITIONING] is True
        target = targets.get(TARGET_TEMPERATURE)
        if isinstance(target, float):
            self._target_c = target
        self._climate_on = on
        driving = self._state is CarState.DRIVING
        self._climate_off_at = self._t + _PRECONDITION_S if on and not driving else math.inf
        if self._state is CarState.CHARGING:
            self._estimate_time_to_complete(self._t)
        if on:
            return CommandOutcome("succeeded", f"climate on, {self._target_c:g} °C")
        return CommandOutcome("succeeded", "climate off")

    def _charge(self, targets: Mapping[str, SignalValue]) -> CommandOutcome:
        limit = targets.get(CHARGE_LIMIT)
        action = targets.get(START_STOP_CHARGING)
        new_limit = limit if isinstance(limit, int) else self._charge_limit
        # Check before changing anything, so a command that fails leaves the car as it was.
        if action == "START" and self._state is not CarState.CHARGING:
            if not self._plugged_in:
                return CommandOutcome("failed", "no charging cable connected")
            if self.soc >= new_limit:
                return CommandOutcome("failed", f"battery is already at the charge limit of {new_limit} %")
        details = []
        if isinstance(limit, int):
            self._charge_limit = limit
            details.append(f"charge limit {limit} %")
        if action == "START":
            if self._state is not CarState.CHARGING:
                self._start_charging()
            details.append("charging")
        elif action == "STOP":
            details.append("charging stopped" if self._state is CarState.CHARGING else "was not charging")
            if self._state is CarState.CHARGING:
                self._stop_charging()
        if self._state is CarState.CHARGING:
            if self.soc >= self._target_soc():
                self._stop_charging()
                details.append("limit reached, charging complete")
            else:
                self._estimate_time_to_complete(self._t)
        return CommandOutcome("succeeded", ", ".join(details))

    def _honk_flash(self) -> CommandOutcome:
        if self._state is CarState.DRIVING:
            return CommandOutcome("failed", "not while the car is being driven")
        self._horn_until = self._t + _HORN_S
        self._hazard_until = self._t + _HAZARD_S
        return CommandOutcome("succeeded", "honked and flashed")
