"""VINs (ISO 3779): real ones pass, mistyped ones are caught with a reason a person understands.

The oracle below is written from the standard (ISO 3779 / 49 CFR 565.15), not copied from smartev, so that a
wrong table in `smartev.vehicles.vin` cannot agree with itself.
"""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartev.errors import InvalidVIN
from smartev.vehicles.vin import is_valid_vin, make_vin, validate_vin

ALLOWED = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
TRANSLITERATION = {
    **{d: int(d) for d in "0123456789"},
    "A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 6, "G": 7, "H": 8,
    "J": 1, "K": 2, "L": 3, "M": 4, "N": 5, "P": 7, "R": 9,
    "S": 2, "T": 3, "U": 4, "V": 5, "W": 6, "X": 7, "Y": 8, "Z": 9,
}  # fmt: skip
WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
CHECK = 8  # position 9, counted from 0


def expected_check_digit(vin: str) -> str:
    """The check digit by the standard: weighted sum of transliterated values, modulo 11, 10 written X."""
    remainder = sum(TRANSLITERATION[c] * w for c, w in zip(vin, WEIGHTS, strict=True)) % 11
    return "X" if remainder == 10 else str(remainder)


def with_check_digit(draft: str) -> str:
    return draft[:CHECK] + expected_check_digit(draft) + draft[CHECK + 1 :]


vins = st.text(alphabet=ALLOWED, min_size=17, max_size=17).map(with_check_digit)


@pytest.mark.parametrize(
    "vin",
    [
        "1M8GDM9AXKP042788",  # the textbook example (check digit X)
        "11111111111111111",  # all ones: the weighted sum is 89, 89 mod 11 = 1
        "1HGCM82633A004352",  # Honda Accord 2003
        "JH4KA7561PC008269",  # Acura Legend 1993
    ],
)
def test_real_vins_are_accepted(vin: str) -> None:
    assert expected_check_digit(vin) == vin[CHECK]  # the oracle agrees with the published VIN
    assert validate_vin(vin) == vin
    assert is_valid_vin(vin)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("1m8gdm9axkp042788", "1M8GDM9AXKP042788"),
        ("  1M8GDM9AXKP042788\n", "1M8GDM9AXKP042788"),
        ("jh4Ka7561pC008269", "JH4KA7561PC008269"),
    ],
)
def test_lower_case_and_surrounding_blanks_are_normalised(typed: str, stored: str) -> None:
    assert validate_vin(typed) == stored


@pytest.mark.parametrize("seed", range(200))
def test_generated_vins_are_valid(seed: int) -> None:
    vin = make_vin(random.Random(seed))
    assert len(vin) == 17 and set(vin) <= set(ALLOWED)
    assert vin[CHECK] == expected_check_digit(vin)
    assert validate_vin(vin) == vin


def test_generated_vins_differ() -> None:
    assert len({make_vin(random.Random(seed)) for seed in range(200)}) == 200


@pytest.mark.parametrize(
    ("vin", "words"),
    [
        ("", ["17 characters", "has 0"]),
        ("1M8GDM9AXKP04278", ["17 characters", "has 16"]),
        ("1M8GDM9AXKP0427888", ["17 characters", "has 18"]),
        ("1M8GDM9AXKP042788" * 2, ["17 characters", "has 34"]),
        ("IM8GDM9AXKP042788", ["'I'", "I, O and Q"]),
        ("1M8GDM9AXKP0427O8", ["'O'", "I, O and Q"]),
        ("1M8GDM9AXKPQ42788", ["'Q'", "I, O and Q"]),
        ("1M8GDM9AXKP04278-", ["'-'"]),
        ("1M8GDM9AXKP04278_", ["'_'"]),
        ("1M8GDM9A1KP042788", ["check digit", "position 9", "'1'", "'X'"]),
        ("1M8GDM9AXKP042789", ["check digit", "position 9", "'X'"]),
        ("11111111111111112", ["check digit", "position 9"]),
        ("21111111111111111", ["check digit", "position 9"]),
    ],
)
def test_invalid_vins_are_rejected_with_the_reason(vin: str, words: list[str]) -> None:
    with pytest.raises(InvalidVIN) as caught:
        validate_vin(vin)
    for word in words:
        assert word in caught.value.message, caught.value.message
    assert not is_valid_vin(vin)


@pytest.mark.parametrize("value", [None, 12345678901234567, b"1M8GDM9AXKP042788", ["1M8GDM9AXKP042788"]])
def test_non_strings_are_rejected(value: object) -> None:
    with pytest.raises(InvalidVIN, match="string"):
        validate_vin(value)


@given(st.text(max_size=30))
def test_anything_is_either_a_vin_or_an_invalid_vin_error(text: str) -> None:
    try:
        vin = validate_vin(text)
    except InvalidVIN as exc:
        assert exc.status_code == 422 and exc.message
    else:
        assert vin[CHECK] == expected_check_digit(vin)


@given(st.text(alphabet=ALLOWED, min_size=17, max_size=17))
def test_accepted_exactly_when_the_check_digit_matches(vin: str) -> None:
    assert is_valid_vin(vin) == (vin[CHECK] == expected_check_digit(vin))


@given(vin=vins, position=st.integers(0, 16), replacement=st.sampled_from(ALLOWED))
def test_one_mistyped_character_is_caught_unless_it_cannot_be(
    vin: str, position: int, replacement: str
) -> None:
    """Changing one character is caught by the check digit, except where the arithmetic cannot see it.

    The check digit itself (weight 0) has no effect on the sum, so any other character there is wrong.
    Elsewhere the change adds (new - old) * weight to the sum; weights are 1..10, |new - old| <= 9 and 11 is
    prime, so the sum changes modulo 11 unless new and old transliterate to the same number (A, J and 1 are
    all 1, for example): those swaps are invisible to any check digit of this design.
    """
    original = vin[position]
    if replacement == original:
        return
    typo = vin[:position] + replacement + vin[position + 1 :]
    if position == CHECK:
        invisible = False
    else:
        invisible = TRANSLITERATION[replacement] == TRANSLITERATION[original]
    assert is_valid_vin(typo) == invisible, (vin, typo)


def test_the_invisible_swaps_are_exactly_the_same_value_letters() -> None:
    """A guard on the property above: at most a small set of pairs escape the check digit."""
    invisible = {
        (a, b) for a in ALLOWED for b in ALLOWED if a != b and TRANSLITERATION[a] == TRANSLITERATION[b]
    }
    assert ("A", "J") in invisible and ("1", "A") in invisible and ("S", "2") in invisible
    assert ("A", "B") not in invisible
    # 33 characters, 1056 ordered pairs; fewer than 1 in 10 are invisible
    assert len(invisible) < 1056 / 10


@pytest.mark.parametrize(
    ("typed", "what_upper_makes_of_it"),
    [
        ("ß8GDM9A4KP042788", "SS8GDM9A4KP042788"),  # 16 characters
        ("1ſ8GDM9A7KP042788", "1S8GDM9A7KP042788"),  # a long s (U+017F), not an S
    ],
)
def test_only_ascii_letters_and_digits_count(typed: str, what_upper_makes_of_it: str) -> None:
    assert typed.upper() == what_upper_makes_of_it
    assert validate_vin(what_upper_makes_of_it) == what_upper_makes_of_it
    with pytest.raises(InvalidVIN):
        validate_vin(typed)


def test_allowed_alphabet_has_no_i_o_q() -> None:
    assert set(ALLOWED) == set(string.digits + string.ascii_uppercase) - set("IOQ")
