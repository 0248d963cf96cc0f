"""Faults a simulated car can have, for after-sales to find: what each kind needs, and random ones for a fleet.

Kinds (`CarModel.inject_fault(kind, **details)`):

- `dtc`: a stored OBD-II trouble code, `code="P0A80"` (replace hybrid/EV battery pack) by default, shown in
  `Vehicle.Diagnostics.DTCList` and `DTCCount`.
- `tyre`: a slow leak on one wheel (`wheel="front_left"`, `front_right`, `rear_left` or `rear_right`;
  `kpa_per_hour=6.0`, the initial rate). Pressure falls exponentially, as air through a puncture does; when it
  is 20 % below the tyre's set pressure (the UN R141 warning threshold) `Tire.IsPressureLow` turns true and
  the wheel's TPMS code (C0750, C0755, C0760, C0765) is stored.
- `12v`: a worn 12 V battery. Its voltage sags to 11.6-12.0 V while the car sleeps (a healthy one rests at
  12.6-12.8 V) and reads a little low while the DC/DC converter charges it; P0562 (system voltage low) is stored.

`clear_faults()` is the workshop visit: codes cleared, tyre repaired and inflated, 12 V battery replaced.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

FAULT_KINDS = ("dtc", "tyre", "12v")
WHEELS = ("front_left", "front_right", "rear_left", "rear_right")
TPMS_CODES = {"front_left": "C0750", "front_right": "C0755", "rear_left": "C0760", "rear_right": "C0765"}
LOW_VOLTAGE_CODE = "P0562"
DEFAULT_DTC = "P0A80"
# Codes a random `dtc` fault picks from: EV battery, isolation, thermal and communication faults.
RANDOM_DTCS = ("P0A80", "P0AA6", "P0A7F", "P0C73", "P1A10", "U0100", "B1318")
TPMS_WARNING_FRACTION = 0.8  # of the tyre's set pressure
DEFAULT_LEAK_KPA_PER_HOUR = 6.0
_DTC_PATTERN = re.compile(r"[PCBU][0-3][0-9A-F]{3}")
_DETAILS: dict[str, tuple[str, ...]] = {"dtc": ("code",), "tyre": ("wheel", "kpa_per_hour"), "12v": ()}


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault a car has: its kind, since when (epoch seconds), and its particulars."""

    kind: str
    since: float
    code: str  # the trouble code it stores (for a tyre, once the pressure warning comes on)
    wheel: str | None = None
    kpa_per_hour: float | None = None


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    """A fault that will appear at simulated time `at` (epoch seconds)."""

    at: float
    kind: str
    details: Mapping[str, Any] = field(default_factory=dict)


def make_fault(kind: str, since: float, details: Mapping[str, Any], rng: random.Random) -> Fault:
    """A fault from `inject_fault`'s arguments; raises ValueError naming what is wrong or what is known."""
    allowed = _DETAILS.get(kind)
    if allowed is None:
        raise ValueError(f"unknown fault kind {kind!r}; known kinds: {', '.join(FAULT_KINDS)}")
    extra = sorted(set(details) - set(allowed))
    if extra:
        known = ", ".join(allowed) or "none"
        raise ValueError(f"unexpected detail(s) {', '.join(extra)} for a {kind} fault; allowed: {known}")
    if kind == "dtc":
        code = details.get("code", DEFAULT_DTC)
        if not isinstance(code, str) or not _DTC_PATTERN.fullmatch(code):
            raise ValueError(f"code must be an OBD-II trouble code such as {DEFAULT_DTC}, got {code!r}")
        return Fault("dtc", since, code)
    if kind == "tyre":
        wheel = details.get("wheel", rng.choice(WHEELS))
        if wheel not in WHEELS:
            raise ValueError(f"wheel must be one of {', '.join(WHEELS)}, got {wheel!r}")
        rate = details.get("kpa_per_hour", DEFAULT_LEAK_KPA_PER_HOUR)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1000:
            raise ValueError(f"kpa_per_hour must be a number above 0 and at most 1000, got {rate!r}")
        return Fault("tyre", since, TPMS_CODES[wheel], wheel, float(rate))
    return Fault("12v", since, LOW_VOLTAGE_CODE)


def random_faults(
    seed: int | str, probability: float, start: datetime, within: timedelta = timedelta(days=7)
) -> tuple[ScheduledFault, ...]:
    """With `probability`, one fault of a random kind at a random moment in `within` after `start`; else none.

    Deterministic in the seed: pass a car's seed for a fleet where a share of the cars breaks down.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be between 0 and 1, got {probability!r}")
    rng = random.Random(f"{seed}:faults")
    if rng.random() >= probability:
        return ()
    at = start.timestamp() + rng.uniform(0.0, within.total_seconds())
    kind = rng.choice(FAULT_KINDS)
    details: dict[str, Any] = {}
    if kind == "dtc":
        details["code"] = rng.choice(RANDOM_DTCS)
    elif kind == "tyre":
        details["wheel"] = rng.choice(WHEELS)
        details["kpa_per_hour"] = round(rng.uniform(2.0, 15.0), 1)
    return (ScheduledFault(at, kind, details),)
