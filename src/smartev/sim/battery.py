"""The traction battery: its voltage, its resistance, how fast it may charge, how it ages, where its energy went.

Plain functions of state of charge (SoC, percent), temperature (°C) and age, cheap enough to call every
simulated second for ten thousand cars.

- Voltage: the open-circuit voltage of an NMC cell (3.40 V empty, 4.15 V full) times the cells in series,
  plus the current through the pack's internal resistance, which rises in the cold and with age.
- Charging: AC charging runs at the on-board charger's power up to 80 % and tapers to a quarter of it at
  100 %. DC charging follows a fast-charging curve (full power from 10 to 50 %, half at 80 %, a quarter at
  90 %, next to nothing at 100 %), so it tapers earlier and harder than AC; a cold pack takes much less,
  and so does regenerative braking.
- Ageing: state of health (usable capacity as a percentage of new) falls by a calendar term that grows with
  the square root of age (1.5 % after a year, 3 % after four) and a cycle term of 0.008 % per equivalent full
  cycle (8 % after 1,000 cycles), typical of NMC packs in mild climates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CELL_NOMINAL_V = 3.65
# Open-circuit voltage of an NMC cell at 0, 10, ..., 100 % state of charge.
_CELL_OCV = (3.40, 3.55, 3.62, 3.66, 3.70, 3.75, 3.82, 3.89, 3.96, 4.05, 4.15)
# Fraction of a car's peak DC power its battery accepts at 0, 10, ..., 100 %.
_DC_CURVE = (0.70, 1.00, 1.00, 1.00, 1.00, 1.00, 0.85, 0.68, 0.50, 0.25, 0.08)
AC_TAPER_FROM_SOC = 80.0
AC_TAPER_AT_FULL = 0.25  # fraction of the on-board charger's power left at 100 %

CALENDAR_FADE_PER_SQRT_YEAR = 1.5  # percent of capacity
CYCLE_FADE_PER_EFC = 0.008  # percent of capacity per equivalent full cycle
_DAYS_PER_YEAR = 365.25


def _table(values: tuple[float, ...], soc: float) -> float:
    """Linear interpolation in a table over 0, 10, ..., 100 %."""
    pos = min(max(soc, 0.0), 100.0) / 10.0
    i = min(int(pos), 9)
    return values[i] + (values[i + 1] - values[i]) * (pos - i)


def cells_in_series(nominal_voltage_v: float) -> int:
    """How many cells a pack of this nominal voltage has in series."""
    return max(1, round(nominal_voltage_v / CELL_NOMINAL_V))


def open_circuit_voltage(soc: float, cells: int) -> float:
    """The pack's voltage at rest, V."""
    return _table(_CELL_OCV, soc) * cells


def internal_resistance(resistance_25c_ohm: float, temperature_c: float, state_of_health: float) -> float:
    """The pack's resistance: 3 % more per degree below 25 °C, and growing as the pack ages, ohm."""
    cold = 1.0 + 0.03 * max(25.0 - temperature_c, 0.0)
    aged = 1.0 + 3.0 * max(1.0 - state_of_health / 100.0, 0.0)
    return resistance_25c_ohm * cold * aged


def ac_charge_factor(soc: float) -> float:
    """Fraction of the on-board charger's power the battery takes at this state of charge."""
    if soc <= AC_TAPER_FROM_SOC:
        return 1.0
    return 1.0 - (1.0 - AC_TAPER_AT_FULL) * min(soc - AC_TAPER_FROM_SOC, 100.0 - AC_TAPER_FROM_SOC) / (
        100.0 - AC_TAPER_FROM_SOC
    )


def dc_charge_factor(soc: float) -> float:
    """Fraction of the car's peak DC power the battery takes at this state of charge."""
    return _table(_DC_CURVE, soc)


def temperature_factor(temperature_c: float) -> float:
    """Fraction of full DC charging and regeneration power a pack at this temperature takes."""
    if temperature_c < 25.0:
        return min(max(0.25 + 0.75 * (temperature_c - 5.0) / 20.0, 0.25), 1.0)
    if temperature_c > 45.0:
        return max(1.0 - 0.05 * (temperature_c - 45.0), 0.5)
    return 1.0


def state_of_health(age_days: float, equivalent_full_cycles: float) -> float:
    """Usable capacity as a percentage of new, after this age and this many equivalent full cycles."""
    calendar = CALENDAR_FADE_PER_SQRT_YEAR * math.sqrt(max(age_days, 0.0) / _DAYS_PER_YEAR)
    cycles = CYCLE_FADE_PER_EFC * max(equivalent_full_cycles, 0.0)
    return min(max(100.0 - calendar - cycles, 0.0), 100.0)


@dataclass(frozen=True, slots=True)
class EnergyLedger:
    """Where a car's energy went since the model was created, kWh.

    The battery's energy changes by exactly `into_battery_kwh - out_of_battery_kwh` (`net_kwh`).
    `braking_kwh` and `regen_refused_kwh` are on the wheels' side and not part of that balance.
    """

    traction_kwh: float  # work done at the wheels to move the car: accelerating, air drag, rolling resistance
    drivetrain_loss_kwh: float  # lost in inverter, motor and gearbox on the way from battery to wheels
    braking_kwh: float  # kinetic energy taken out at the wheels by braking, regenerative and friction
    regenerated_kwh: float  # put back into the battery by regenerative braking
    regen_refused_kwh: float  # regeneration the battery could not take (full, cold, power limit)
    hvac_kwh: float  # heating and cooling the cabin
    battery_thermal_kwh: float  # heating and cooling the battery
    aux_kwh: float  # 12 V loads while the car is awake
    parked_drain_kwh: float  # what a sleeping car draws: telematics, battery management
    battery_loss_kwh: float  # heat in the battery's internal resistance
    charged_kwh: float  # delivered into the car by chargers
    charger_loss_kwh: (
        float  # lost in the charger on the way from the grid (on-board for AC, the station for DC)
    )
    discarded_kwh: float  # energy the battery could no longer hold as its capacity faded while full

    @property
    def into_battery_kwh(self) -> float:
        """Energy that went into the battery."""
        return self.charged_kwh + self.regenerated_kwh

    @property
    def out_of_battery_kwh(self) -> float:
        """Energy that left the battery, to the wheels, losses, loads or nowhere."""
        return (
            self.traction_kwh
            + self.drivetrain_loss_kwh
            + self.hvac_kwh
            + self.battery_thermal_kwh
            + self.aux_kwh
            + self.parked_drain_kwh
            + self.battery_loss_kwh
            + self.discarded_kwh
        )

    @property
    def net_kwh(self) -> float:
        """The change of the battery's energy."""
        return self.into_battery_kwh - self.out_of_battery_kwh

    @property
    def grid_kwh(self) -> float:
        """Energy drawn from the grid (or roadside service) to charge."""
        return self.charged_kwh + self.charger_loss_kwh
