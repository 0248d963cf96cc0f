"""Vehicle Identification Numbers (ISO 3779): check-digit validation, and generation for simulators."""

from __future__ import annotations

import random

from smartev.errors import InvalidVIN

ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"  # I, O and Q are not used in VINs
_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def check_digit(vin: str) -> str:
    """The check digit (position 9) for a 17-character VIN made of valid characters."""
    total = sum(_VALUES[c] * w for c, w in zip(vin, _WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def validate_vin(vin: object) -> str:
    """The VIN, upper-cased, if valid; raises InvalidVIN with a reason a person understands."""
    if not isinstance(vin, str):
        raise InvalidVIN("a VIN must be a string of 17 characters")
    v = vin.strip()
    if not v.isascii():
        # checked before upper-casing: "ß".upper() is "SS", which would turn 16 characters into 17
        odd = "".join(sorted({c for c in v if not c.isascii()}))
        raise InvalidVIN(f"a VIN may only contain digits and the letters A-Z except I, O, Q; found {odd!r}")
    v = v.upper()
    if len(v) != 17:
        raise InvalidVIN(f"a VIN has 17 characters, this one has {len(v)}")
    bad = sorted({c for c in v if c not in ALPHABET})
    if bad:
        hint = " (I, O and Q are never used in VINs)" if set(bad) & set("IOQ") else ""
        raise InvalidVIN(
            f"a VIN may only contain digits and the letters A-Z except I, O, Q; found {''.join(bad)!r}{hint}"
        )
    expected = check_digit(v)
    if v[8] != expected:
        raise InvalidVIN(
            f"check digit (position 9) is {v[8]!r} but should be {expected!r}: the VIN is mistyped"
        )
    return v


def is_valid_vin(vin: object) -> bool:
    """True when `validate_vin` accepts it."""
    try:
        validate_vin(vin)
    except InvalidVIN:
        return False
    return True


def make_vin(rng: random.Random, wmi: str = "SEV", model_year: str = "T") -> str:
    """A random valid VIN (for simulators and tests): maker code, random body, correct check digit."""
    body = "".join(rng.choice(ALPHABET) for _ in range(5))
    serial = "".join(rng.choice("0123456789") for _ in range(6))
    draft = f"{wmi}{body}0{model_year}A{serial}"
    return draft[:8] + check_digit(draft) + draft[9:]
