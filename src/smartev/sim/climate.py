"""The air round and inside a simulated car: Berlin's weather by season and hour, and what climate control costs."""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    BERLIN: tzinfo = ZoneInfo("Europe/Berlin")
except ZoneInfoNotFoundError:  # a slim container without tzdata: winter time is close enough for a simulator
    BERLIN = datetime.fromisoformat("2000-01-01T00:00:00+01:00").tzinfo or UTC

# Berlin's monthly mean air temperature and half its typical day-night swing (DWD 1991-2020 normals), °C.
_MONTH_MEAN_C = (0.6, 1.7, 5.0, 9.8, 14.6, 17.9, 20.0, 19.6, 15.3, 10.3, 5.4, 1.9)
_MONTH_SWING_C = (2.0, 2.5, 3.5, 4.5, 5.0, 5.0, 5.0, 5.0, 4.5, 3.5, 2.5, 2.0)

CABIN_LOSS_W_PER_K = 100.0  # through glass, body and fresh air, at driving speeds
CABIN_PULL_W_PER_K = 250.0  # heat to move the cabin towards its target (a 4-minute time constant)
CABIN_TAU_ON_S = 240.0
CABIN_TAU_OFF_S = 1800.0
FAN_W = 120.0
COOLING_COP = 2.5


def outside_temperature(epoch_s: float) -> float:
    """Berlin's typical air temperature at this moment (seasonal mean plus a day-night swing), °C."""
    local = datetime.fromtimestamp(epoch_s, BERLIN)
    # Interpolate between mid-month normals so the temperature has no step at month boundaries.
    month_pos = local.month - 1 + (local.day - 15.5) / 30.5
    lo = math.floor(month_pos)
    frac = month_pos - lo
    mean = _MONTH_MEAN_C[lo % 12] * (1 - frac) + _MONTH_MEAN_C[(lo + 1) % 12] * frac
    swing = _MONTH_SWING_C[lo % 12] * (1 - frac) + _MONTH_SWING_C[(lo + 1) % 12] * frac
    hour = local.hour + local.minute / 60 + local.second / 3600
    return mean + swing * math.cos(2 * math.pi * (hour - 15.0) / 24)  # warmest mid-afternoon


def heat_pump_cop(outside_c: float) -> float:
    """Heat delivered per unit of electricity when heating: a heat pump, falling back to resistive at -10 °C."""
    return min(max(1.8 + 0.08 * outside_c, 1.0), 3.0)


def hvac_power_w(outside_c: float, cabin_c: float, target_c: float, max_w: float) -> float:
    """Electric power to hold the cabin at `target_c` against the outside and pull it there, W."""
    heat_w = CABIN_LOSS_W_PER_K * (target_c - outside_c) + CABIN_PULL_W_PER_K * (target_c - cabin_c)
    cop = heat_pump_cop(outside_c) if heat_w > 0 else COOLING_COP
    return min(abs(heat_w) / cop + FAN_W, max_w)
