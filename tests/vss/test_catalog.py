"""The VSS 6.0 catalog: what it holds, and which values it accepts for each kind of signal.

The expectations come from the shipped CSV read here with the csv module and from the VSS datatype definitions
(uint8 is 0..255, and so on), so the catalog is checked against the data rather than against itself.
"""

from __future__ import annotations

import csv
import fnmatch
import math
import tomllib
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartev.vss import Catalog, SignalRejected, default_catalog

CATALOG = default_catalog()
DATA = resources.files("smartev.vss").joinpath("data")
ROWS = list(csv.DictReader(DATA.joinpath("vss.csv").read_text(encoding="utf-8").splitlines()))
LEAVES = [r for r in ROWS if r["type"] in ("sensor", "actuator", "attribute")]
BRANCHES = [r["path"] for r in ROWS if r["type"] == "branch"]
INT_BOUNDS = {
    "uint8": (0, 255), "uint16": (0, 65_535), "uint32": (0, 4_294_967_295),
    "int8": (-128, 127), "int16": (-32_768, 32_767), "int32": (-2_147_483_648, 2_147_483_647),
}  # fmt: skip
SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"


def test_the_catalog_has_every_signal_of_vss_6() -> None:
    assert len(CATALOG) == 1267
    assert len(LEAVES) == 1267 and len(BRANCHES) == 340  # the counts the data README states
    assert Counter(r["type"] for r in LEAVES) == {"sensor": 494, "actuator": 643, "attribute": 130}
    assert {r["path"] for r in LEAVES} == set(CATALOG.signals)
    assert set(BRANCHES) == CATALOG.branches


def test_the_shipped_catalog_carries_its_licence() -> None:
    """VSS is MPL-2.0: every copy of the data must travel with the licence text."""
    assert DATA.joinpath("vss.csv").is_file()
    licence = DATA.joinpath("LICENSE")
    assert licence.is_file()
    text = licence.read_text(encoding="utf-8")
    assert text.startswith("Mozilla Public License Version 2.0")
    assert "Exhibit A - Source Code Form License Notice" in text
    # and the packaging keeps it: the package-data patterns that ship vss.csv also ship LICENSE
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["smartev"]
    for name in ("vss/data/vss.csv", "vss/data/LICENSE"):
        assert any(fnmatch.fnmatch(name, p) for p in patterns), (name, patterns)


# (path, value sent, value stored); one row at least per datatype of the catalog
ACCEPTED: list[tuple[str, Any, Any]] = [
    ("Vehicle.ADAS.ABS.IsEnabled", True, True),
    ("Vehicle.ADAS.ABS.IsEnabled", False, False),
    ("Vehicle.ADAS.CruiseControl.AdaptiveIntervalSet", 0, 0),  # uint8
    ("Vehicle.ADAS.CruiseControl.AdaptiveIntervalSet", 255, 255),
    ("Vehicle.ADAS.CruiseControl.AdaptiveIntervalSet", 3.0, 3),  # a whole float is an integer
    ("Vehicle.Cabin.Infotainment.HMI.DisplayOffDuration", 65_535, 65_535),  # uint16
    ("Vehicle.TraveledDistance", 4_294_967_295, 4_294_967_295),  # uint32
    ("Vehicle.Powertrain.Transmission.CurrentGear", -128, -128),  # int8
    ("Vehicle.Powertrain.Transmission.CurrentGear", 127, 127),
    ("Vehicle.Chassis.SteeringWheel.Angle", -32_768, -32_768),  # int16
    ("Vehicle.Chassis.SteeringWheel.Angle", 32_767, 32_767),
    ("Vehicle.Powertrain.CombustionEngine.EngineOil.LifeRemaining", -2_147_483_648, -2_147_483_648),  # int32
    ("Vehicle.Powertrain.CombustionEngine.EngineOil.LifeRemaining", 2_147_483_647, 2_147_483_647),
    ("Vehicle.Speed", 52.5, 52.5),  # float
    ("Vehicle.Speed", 50, 50.0),  # an integer is a number
    ("Vehicle.Speed", -3.4e38, -3.4e38),
    ("Vehicle.CurrentLocation.Altitude", 1e300, 1e300),  # double holds what float cannot
    ("Vehicle.CurrentLocation.Latitude", -90, -90.0),  # double with min/max
    ("Vehicle.CurrentLocation.Latitude", 90.0, 90.0),
    (SOC, 0, 0.0),
    (SOC, 100, 100.0),
    (SOC, 81.2, 81.2),
    ("Vehicle.Body.Hood.Position", 100, 100),  # uint8 0..100
    ("Vehicle.Body.Mirrors.DriverSide.Pan", -100, -100),  # int8 -100..100
    ("Vehicle.Cabin.Infotainment.HMI.CurrentLanguage", "en", "en"),  # string
    ("Vehicle.Cabin.Infotainment.HMI.CurrentLanguage", "", ""),
    ("Vehicle.Cabin.Infotainment.HMI.CurrentLanguage", "ü" * 4096, "ü" * 4096),
    ("Vehicle.LowVoltageSystemState", "ON", "ON"),  # string with allowed values
    ("Vehicle.LowVoltageSystemState", "START", "START"),
    ("Vehicle.Diagnostics.DTCList", ["P0123", "U0100"], ["P0123", "U0100"]),  # string[]
    ("Vehicle.Diagnostics.DTCList", [], []),
    ("Vehicle.Powertrain.FuelSystem.SupportedFuel", ["E10_95", "H2"], ["E10_95", "H2"]),  # string[] allowed
    ("Vehicle.Powertrain.TractionBattery.CellVoltage.CellVoltages", [3.7, 4], [3.7, 4.0]),  # float[]
    ("Vehicle.Cabin.SeatPosCount", [2, 3, 2], [2, 3, 2]),  # uint8[]
]


@pytest.mark.parametrize(
    ("path", "sent", "stored"), ACCEPTED, ids=[f"{p}={v!r}"[:80] for p, v, _ in ACCEPTED]
)
def test_valid_values_are_accepted_and_typed(path: str, sent: Any, stored: Any) -> None:
    value = CATALOG.validate(path, sent)
    assert value == stored
    assert type(value) is type(stored)
    if isinstance(stored, list):
        assert [type(v) for v in value] == [type(v) for v in stored]


# (path, value sent, words the reason must contain)
REJECTED: list[tuple[str, Any, list[str]]] = [
    ("Vehicle.ADAS.ABS.IsEnabled", 1, ["boolean"]),
    ("Vehicle.ADAS.ABS.IsEnabled", "true", ["boolean"]),
    ("Vehicle.ADAS.ABS.IsEnabled", None, ["boolean"]),
    ("Vehicle.ADAS.CruiseControl.AdaptiveIntervalSet", 256, ["256", "[0, 255]", "uint8"]),
    ("Vehicle.ADAS.CruiseControl.AdaptiveIntervalSet", -1, ["-1", "[0, 255]"]),
    ("Vehicle.ADAS.CruiseControl.AdaptiveIntervalSet", 2.5, ["integer", "uint8"]),
    ("Vehicle.ADAS.CruiseControl.AdaptiveIntervalSet", True, ["integer", "boolean"]),
    ("Vehicle.ADAS.CruiseControl.AdaptiveIntervalSet", "3", ["integer", "string"]),
    ("Vehicle.ADAS.CruiseControl.AdaptiveIntervalSet", math.nan, ["integer"]),
    ("Vehicle.Cabin.Infotainment.HMI.DisplayOffDuration", 65_536, ["[0, 65535]", "uint16"]),
    ("Vehicle.TraveledDistance", 4_294_967_296, ["[0, 4294967295]", "uint32"]),
    ("Vehicle.TraveledDistance", -1, ["uint32"]),
    ("Vehicle.Powertrain.Transmission.CurrentGear", 128, ["[-128, 127]", "int8"]),
    ("Vehicle.Powertrain.Transmission.CurrentGear", -129, ["[-128, 127]"]),
    ("Vehicle.Chassis.SteeringWheel.Angle", 32_768, ["[-32768, 32767]", "int16"]),
    ("Vehicle.Powertrain.CombustionEngine.EngineOil.LifeRemaining", 2**31, ["int32"]),
    ("Vehicle.Speed", "fast", ["number", "float", "string"]),
    ("Vehicle.Speed", True, ["number", "boolean"]),
    ("Vehicle.Speed", None, ["number", "null"]),
    ("Vehicle.Speed", [1.0], ["number", "array"]),
    ("Vehicle.Speed", {"v": 1.0}, ["number", "object"]),
    ("Vehicle.Speed", math.inf, ["finite"]),
    ("Vehicle.Speed", math.nan, ["finite"]),
    ("Vehicle.Speed", 3.5e38, ["finite", "float"]),  # beyond 32-bit float
    ("Vehicle.CurrentLocation.Altitude", -math.inf, ["finite", "double"]),
    ("Vehicle.CurrentLocation.Latitude", 90.000001, ["maximum", "90"]),
    ("Vehicle.CurrentLocation.Latitude", -91, ["minimum", "-90"]),
    (SOC, 100.1, ["above the maximum 100"]),
    (SOC, 101, ["above the maximum 100"]),
    (SOC, -0.1, ["below the minimum 0"]),
    ("Vehicle.Body.Hood.Position", 101, ["[0, 100]"]),
    ("Vehicle.Body.Mirrors.DriverSide.Pan", -101, ["[-100, 100]"]),
    ("Vehicle.Cabin.Infotainment.HMI.CurrentLanguage", 5, ["string"]),
    ("Vehicle.Cabin.Infotainment.HMI.CurrentLanguage", "x" * 4097, ["longer than 4096"]),
    ("Vehicle.LowVoltageSystemState", "on", ["allowed values", "'on'", "ON"]),
    ("Vehicle.LowVoltageSystemState", "BANANA", ["allowed values", "UNDEFINED"]),
    ("Vehicle.Diagnostics.DTCList", "P0123", ["array", "string[]"]),
    ("Vehicle.Diagnostics.DTCList", ["P0123", 5], ["element 1", "string"]),
    ("Vehicle.Diagnostics.DTCList", ["P"] * 1025, ["longer than 1024"]),
    ("Vehicle.Powertrain.FuelSystem.SupportedFuel", ["E10_95", "Diesel"], ["element 1", "allowed values"]),
    ("Vehicle.Powertrain.TractionBattery.CellVoltage.CellVoltages", [3.7, "x"], ["element 1", "number"]),
    ("Vehicle.Cabin.SeatPosCount", [2, 256], ["element 1", "[0, 255]"]),
]


@pytest.mark.parametrize(("path", "sent", "words"), REJECTED, ids=[f"{p}={v!r}"[:80] for p, v, _ in REJECTED])
def test_invalid_values_are_rejected_with_a_reason(path: str, sent: Any, words: list[str]) -> None:
    with pytest.raises(SignalRejected) as caught:
        CATALOG.validate(path, sent)
    for word in words:
        assert word in caught.value.reason, caught.value.reason


def _datatypes_covered(rows: list[tuple[str, Any, Any]] | list[tuple[str, Any, list[str]]]) -> set[str]:
    return {CATALOG.signals[path].datatype for path, *_ in rows}


def test_the_tables_cover_every_datatype_in_the_catalog() -> None:
    datatypes = {s.datatype for s in CATALOG.signals.values()}
    assert _datatypes_covered(ACCEPTED) == datatypes
    assert _datatypes_covered(REJECTED) == datatypes


@pytest.mark.parametrize(
    "path",
    [
        "Vehicle",
        "Vehicle.Powertrain",
        "Vehicle.Powertrain.TractionBattery.StateOfCharge",
        "Vehicle.Cabin.Door.Row1",
    ],
)
def test_branches_are_not_signals(path: str) -> None:
    assert path in CATALOG.branches
    with pytest.raises(SignalRejected, match="is a branch, not a signal"):
        CATALOG.validate(path, 1)


def test_every_branch_is_rejected_as_a_branch() -> None:
    for path in BRANCHES:
        with pytest.raises(SignalRejected) as caught:
            CATALOG.validate(path, True)
        assert caught.value.reason == f"{path} is a branch, not a signal"


@pytest.mark.parametrize(
    "path",
    [
        "Vehicle.Nope",
        "vehicle.speed",  # paths are case-sensitive
        "Vehicle.Speed ",
        "Vehicle..Speed",
        "",
        "Vehicle.OBD.Speed",  # OBD moved to an overlay in VSS 6.0
        "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current.Value",
        "x" * 10_000,
    ],
)
def test_unknown_paths_are_rejected(path: str) -> None:
    with pytest.raises(SignalRejected) as caught:
        CATALOG.validate(path, 1)
    assert caught.value.reason.startswith("unknown signal")
    assert "VSS 6.0" in caught.value.reason
    assert len(caught.value.reason) < 300  # a huge path is not echoed back whole


@pytest.mark.parametrize("path", [None, 42, ("Vehicle", "Speed")])
def test_a_path_must_be_text(path: Any) -> None:
    with pytest.raises(SignalRejected, match="must be a string"):
        CATALOG.validate(path, 1)


def _bounds(row: dict[str, str]) -> tuple[float | None, float | None]:
    lo = float(row["min"]) if row["min"].strip() else None
    hi = float(row["max"]) if row["max"].strip() else None
    return lo, hi


def _valid_element(row: dict[str, str]) -> Any:
    element = row["datatype"].removesuffix("[]")
    allowed = orjson.loads(row["allowed"]) if row["allowed"].strip() else None
    if allowed:
        return allowed[-1]
    lo, hi = _bounds(row)
    if element == "boolean":
        return True
    if element in INT_BOUNDS:
        tlo, thi = INT_BOUNDS[element]
        return math.floor(hi) if hi is not None else thi if lo is None else max(tlo, math.ceil(lo))
    if element in ("float", "double"):
        if lo is not None and hi is not None:
            return (lo + hi) / 2
        return lo if lo is not None else hi if hi is not None else 1.5
    if element == "string":
        return "some text"
    raise AssertionError(f"a datatype the test does not know: {row['datatype']}")


def _wrong_type(row: dict[str, str]) -> Any:
    element = row["datatype"].removesuffix("[]")
    return {"boolean": "true", "string": 7}.get(element, "7")


@pytest.mark.parametrize("row", LEAVES, ids=[r["path"] for r in LEAVES])
def test_every_signal_accepts_its_type_and_rejects_others(row: dict[str, str]) -> None:
    """For each of the 1,267 signals: a value inside its definition passes, one outside fails."""
    path, datatype = row["path"], row["datatype"]
    element = _valid_element(row)
    is_array = datatype.endswith("[]")
    good = [element] if is_array else element
    assert CATALOG.validate(path, good) == good

    bad = [_wrong_type(row)] if is_array else _wrong_type(row)
    with pytest.raises(SignalRejected):
        CATALOG.validate(path, bad)
    if is_array:
        with pytest.raises(SignalRejected, match="expected an array"):
            CATALOG.validate(path, element)

    lo, hi = _bounds(row)
    base = datatype.removesuffix("[]")
    if base in INT_BOUNDS:
        tlo, thi = INT_BOUNDS[base]
        outside = [tlo - 1, thi + 1]
        outside += [math.ceil(lo) - 1] if lo is not None and lo > tlo else []
        outside += [math.floor(hi) + 1] if hi is not None and hi < thi else []
    elif base in ("float", "double"):
        outside = [math.inf, math.nan]
        outside += [lo - 0.5] if lo is not None else []
        outside += [hi + 0.5] if hi is not None else []
    else:
        outside = []
    if row["allowed"].strip():
        outside.append("NOT-AN-ALLOWED-VALUE" if base == "string" else 987654)
    for value in outside:
        with pytest.raises(SignalRejected):
            CATALOG.validate(path, [value] if is_array else value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)


@given(path=st.sampled_from(sorted(CATALOG.signals)), value=json_values)
def test_validation_either_accepts_or_gives_a_reason(path: str, value: Any) -> None:
    """Whatever a car sends (anything a JSON decoder yields), the answer is a value or a SignalRejected."""
    try:
        accepted = CATALOG.validate(path, value)
    except SignalRejected as exc:
        assert exc.reason
    else:
        assert CATALOG.validate(path, accepted) == accepted  # what was accepted is stable


@pytest.mark.parametrize("path", ["Vehicle.Speed", "Vehicle.CurrentLocation.Altitude"])
def test_a_huge_integer_for_a_number_signal_is_rejected_with_a_reason(path: str) -> None:
    with pytest.raises(SignalRejected):
        CATALOG.validate(path, 10**400)


def test_a_catalog_can_be_built_from_csv_text() -> None:
    text = (
        "path,type,datatype,unit,min,max,allowed,default,deprecation,description,comment\n"
        "Vehicle,branch,,,,,,,,root,\n"
        "Vehicle.Level,sensor,uint8,percent,10,90,,,,a level,\n"
        'Vehicle.Mode,actuator,string,,,,"[""A"", ""B""]",,,a mode,\n'
        "Vehicle.Weird,sensor,uint128,,,,,,,not a VSS type,\n"
        "Vehicle.Note,property,string,,,,,,,not a leaf type,\n"
    )
    catalog = Catalog.from_csv_text(text)
    assert set(catalog.signals) == {"Vehicle.Level", "Vehicle.Mode", "Vehicle.Weird"}
    assert catalog.validate("Vehicle.Level", 10) == 10
    with pytest.raises(SignalRejected, match=r"\[10, 90\]"):
        catalog.validate("Vehicle.Level", 91)
    assert catalog.validate("Vehicle.Mode", "B") == "B"
    with pytest.raises(SignalRejected, match="allowed"):
        catalog.validate("Vehicle.Mode", "C")
    with pytest.raises(SignalRejected, match="not supported"):
        catalog.validate("Vehicle.Weird", 1)
    with pytest.raises(SignalRejected, match="unknown signal"):
        catalog.validate("Vehicle.Note", "x")
