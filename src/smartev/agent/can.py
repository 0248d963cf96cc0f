"""Read a car's CAN bus and write its actuators: DBC signals mapped to VSS 6.0 signals by a small TOML file.

`CanSource` is the agent's `SignalSource` for a CAN bus (python-can: `socketcan` on a Raspberry Pi, `virtual` in
tests, any other python-can interface). Frames are decoded with cantools from a DBC file; a mapping file says
which DBC signal is which VSS signal, converts units to the VSS unit and, for commands, which DBC signal to write
for which VSS actuator. The format is described in docs/agent-can.md; `data/smartev-demo-can.toml` is an example.

`DemoEcu` plays the car of the shipped demo DBC, for the tests and for people without a car:
`python -m smartev.agent.can --interface socketcan --channel vcan0`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import logging
import math
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import can
import cantools
from cantools.database.can import Database
from cantools.database.can import Message as DbcMessage
from cantools.database.can import Signal as DbcSignal
from cantools.database.errors import DecodeError, EncodeError, UnsupportedDatabaseFormatError

from smartev.agent.config import ConfigError
from smartev.agent.source import CommandOutcome, Emit, SignalValue, actuator_targets
from smartev.errors import Unavailable
from smartev.vss.catalog import FLOAT_TYPES, INT_RANGES, Catalog, Signal, SignalRejected, default_catalog

logger = logging.getLogger(__name__)

DATA = Path(__file__).parent / "data"
DEMO_DBC = DATA / "smartev-demo.dbc"
DEMO_MAPPING = DATA / "smartev-demo-can.toml"

DEFAULT_CONFIRM_TIMEOUT_S = 2.0
MOMENTARY_COMMANDS = frozenset({"honk_flash"})
"""Commands whose effect is over in a moment: done once the request is on the bus, no read-back awaited."""

_MAX_BATCH = 1000
_RECV_POLL_S = 0.1
_SEND_TIMEOUT_S = 1.0
_PLAUSIBLE_CLOCK_SKEW_S = 86_400.0


class CanConfigError(ConfigError):
    """The CAN source's `[source]` options, its mapping file or its DBC file are wrong; the message says how."""


class CanBusUnavailable(Unavailable):
    """The CAN interface cannot be opened, or stopped working."""


# --- units ------------------------------------------------------------------------------------------------------

_UNITS: dict[str, tuple[str, float, float]] = {
    # unit: (quantity, factor, offset) such that value in the quantity's first unit = value * factor + offset
    "km/h": ("speed", 1.0, 0.0),
    "m/s": ("speed", 3.6, 0.0),
    "mph": ("speed", 1.609344, 0.0),
    "Celsius": ("temperature", 1.0, 0.0),
    "Fahrenheit": ("temperature", 5 / 9, -32 * 5 / 9),
    "Kelvin": ("temperature", 1.0, -273.15),
    "m": ("distance", 1.0, 0.0),
    "km": ("distance", 1000.0, 0.0),
    "mi": ("distance", 1609.344, 0.0),
    "mm": ("distance", 0.001, 0.0),
    "ft": ("distance", 0.3048, 0.0),
    "inch": ("distance", 0.0254, 0.0),
    "kPa": ("pressure", 1.0, 0.0),
    "Pa": ("pressure", 0.001, 0.0),
    "mbar": ("pressure", 0.1, 0.0),
    "bar": ("pressure", 100.0, 0.0),
    "psi": ("pressure", 6.894757293168361, 0.0),
    "kWh": ("energy", 1.0, 0.0),
    "Wh": ("energy", 0.001, 0.0),
    "kW": ("power", 1.0, 0.0),
    "W": ("power", 0.001, 0.0),
    "percent": ("ratio", 1.0, 0.0),
}
_UNIT_ALIASES = {
    **{unit.lower(): unit for unit in _UNITS},
    **{"kph": "km/h", "kmh": "km/h", "km/hr": "km/h", "mi/h": "mph"},
    **dict.fromkeys(["°c", "degc", "deg c", "c", "degrees celsius"], "Celsius"),
    **dict.fromkeys(["°f", "degf", "deg f", "f", "degrees fahrenheit"], "Fahrenheit"),
    **dict.fromkeys(["k", "kelvin"], "Kelvin"),
    **dict.fromkeys(["meter", "meters", "metre", "metres"], "m"),
    **dict.fromkeys(["mile", "miles"], "mi"),
    **dict.fromkeys(["in", "inches"], "inch"),
    **dict.fromkeys(["%", "pct"], "percent"),
}


def _canonical_unit(unit: str) -> str:
    return _UNIT_ALIASES.get(unit.strip().lower(), unit.strip())


def unit_conversion(from_unit: str, to_unit: str) -> tuple[float, float] | None:
    """`(factor, offset)` with `to = from * factor + offset`, or None if the units measure different things."""
    source, target = _canonical_unit(from_unit), _canonical_unit(to_unit)
    if source.lower() == target.lower():
        return 1.0, 0.0
    if source not in _UNITS or target not in _UNITS or _UNITS[source][0] != _UNITS[target][0]:
        return None
    _, f_from, o_from = _UNITS[source]
    _, f_to, o_to = _UNITS[target]
    return f_from / f_to, (o_from - o_to) / f_to


def _units_like(unit: str) -> list[str]:
    quantity = _UNITS.get(_canonical_unit(unit), ("",))[0]
    return [u for u, (q, _, _) in _UNITS.items() if q == quantity] if quantity else [unit]


# --- the mapping file -------------------------------------------------------------------------------------------

_ENTRY_KEYS = ("message", "signal", "unit", "scale", "offset", "values")
_TOP_KEYS = ("dbc", "signals", "actuators")


class NotSendable(ValueError):
    """A VSS value that the mapped DBC signal cannot carry; the message says why, for the command's result."""


@dataclass(frozen=True, slots=True)
class MappedSignal:
    """One DBC signal read as (or written for) one VSS signal.

    Numbers: `vss = raw * factor + offset`, which folds the DBC's own scaling, the mapping's `scale`/`offset` and
    the unit conversion into one step. Booleans and strings: looked up in `named` (raw → VSS value) and, for
    sending, `raw_for` (VSS value → raw).
    """

    path: str
    vss: Signal
    message: DbcMessage
    signal: DbcSignal
    factor: float = 1.0
    offset: float = 0.0
    named: Mapping[int | float, SignalValue] | None = None
    raw_for: Mapping[SignalValue, int] | None = None
    no_value: frozenset[int | float] = frozenset()
    """Raw values that mean "no reading" (a numeric signal's DBC named values such as SNA, its invalid value)."""

    def decode(self, raw: int | float) -> SignalValue | None:
        """The VSS value of a raw DBC value; None if the raw value means "no reading".

        Raises SignalRejected when the value does not fit the VSS signal (out of range).
        """
        if self.named is not None:
            return self.named.get(raw)
        if raw in self.no_value:
            return None
        value = raw * self.factor + self.offset
        checked: SignalValue = self.vss.coerce(
            round(value) if self.vss.datatype in INT_RANGES else float(value)
        )
        return checked

    def encode(self, value: SignalValue) -> tuple[int | float, SignalValue]:
        """The raw DBC value to send for a VSS value, and the VSS value the car will actually get (after rounding).

        Raises NotSendable.
        """
        name = f"{self.message.name}.{self.signal.name}"
        if self.raw_for is not None:
            named_raw = None if isinstance(value, list) else self.raw_for.get(value)
            if named_raw is None:
                raise NotSendable(f"the CAN mapping has no value of {name} for {self.path} = {_show(value)}")
            return named_raw, value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise NotSendable(f"{self.path} = {_show(value)} is not a number")
        exact = (value - self.offset) / self.factor
        raw: int | float = exact if self.signal.conversion.is_float else round(exact)
        if isinstance(raw, int):
            bits = self.signal.length
            lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if self.signal.is_signed else (0, 2**bits - 1)
            if not lo <= raw <= hi:
                raise NotSendable(f"{self.path} = {value:g} does not fit in {name}")
        if raw in self.no_value:
            raise NotSendable(f"{self.path} = {value:g} would be sent as {name}'s special value {raw}")
        scaled = self.signal.conversion.raw_to_scaled(raw, decode_choices=False)
        assert isinstance(scaled, int | float)
        slack = abs(self.signal.conversion.scale) * 1e-6
        lo_dbc, hi_dbc = self.signal.minimum, self.signal.maximum
        if (lo_dbc is not None and scaled < lo_dbc - slack) or (
            hi_dbc is not None and scaled > hi_dbc + slack
        ):
            unit = f" {self.signal.unit}" if self.signal.unit else ""
            raise NotSendable(
                f"{self.path} = {value:g} is outside what {name} can carry ({lo_dbc:g} to {hi_dbc:g}{unit})"
            )
        effective = raw * self.factor + self.offset
        return raw, round(effective) if self.vss.datatype in INT_RANGES else float(effective)

    def matches(self, reported: SignalValue, expected: SignalValue) -> bool:
        """Whether a value read back from the car confirms `expected`, within this signal's resolution."""
        if self.named is None and isinstance(reported, int | float) and isinstance(expected, int | float):
            return abs(reported - expected) <= abs(self.factor) / 2 + 1e-9 * max(1.0, abs(expected))
        return reported == expected


@dataclass(frozen=True)
class CanMapping:
    """A loaded, checked mapping file: the DBC and which of its signals are which VSS signals."""

    file: Path
    dbc_file: Path
    database: Database
    signals: tuple[MappedSignal, ...]
    actuators: Mapping[str, MappedSignal]

    @classmethod
    def load(cls, file: Path | str, catalog: Catalog | None = None) -> CanMapping:
        """Read and check a mapping file and its DBC; raises CanConfigError naming the file, key and problem."""
        file = Path(file)
        catalog = catalog or default_catalog()
        try:
            document = tomllib.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CanConfigError(f"cannot read the CAN mapping file {file}: {exc.strerror or exc}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CanConfigError(f"{file}: not a valid TOML file: {exc}") from exc
        unknown = sorted(set(document) - set(_TOP_KEYS))
        if unknown:
            _fail(file, unknown[0], f"unknown key; allowed at the top level: {', '.join(_TOP_KEYS)}")
        dbc = document.get("dbc")
        if not isinstance(dbc, str) or not dbc:
            _fail(file, "dbc", 'missing or not a string; give the DBC file, e.g. dbc = "my-car.dbc"')
        dbc_file = file.parent / dbc
        database = _load_dbc(file, dbc_file)
        sections: dict[str, dict[str, MappedSignal]] = {"signals": {}, "actuators": {}}
        for section, mapped in sections.items():
            table = document.get(section, {})
            if not isinstance(table, dict):
                _fail(file, section, f'must be a table of VSS paths, e.g. [{section}."Vehicle.Speed"]')
            for path, entry in table.items():
                mapped[path] = _parse_entry(
                    file, f'{section}."{path}"', path, entry, database, catalog, section == "actuators"
                )
        if not sections["signals"] and not sections["actuators"]:
            _fail(
                file, "signals", 'maps nothing; add [signals."<VSS path>"] or [actuators."<VSS path>"] tables'
            )
        return cls(file, dbc_file, database, tuple(sections["signals"].values()), sections["actuators"])


def _fail(file: Path, key: str, problem: str) -> NoReturn:
    raise CanConfigError(f"{file}: {key}: {problem}")


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _listing(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "") if names else "(none)"


def _load_dbc(file: Path, dbc_file: Path) -> Database:
    try:
        database = cantools.database.load_file(dbc_file)
    except FileNotFoundError as exc:
        raise CanConfigError(f"{file}: dbc: no such file {dbc_file}") from exc
    except (OSError, UnicodeDecodeError, UnsupportedDatabaseFormatError) as exc:
        raise CanConfigError(f"{file}: dbc: cannot read {dbc_file}: {exc}") from exc
    if not isinstance(database, Database):
        raise CanConfigError(f"{file}: dbc: {dbc_file} is a diagnostics database, not a CAN database")
    return database


def _parse_entry(
    file: Path, key: str, path: str, entry: Any, database: Database, catalog: Catalog, actuator: bool
) -> MappedSignal:
    vss = catalog.get(path)
    if vss is None:
        close = difflib.get_close_matches(path, catalog.signals.keys(), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        _fail(file, key, catalog.unknown_reason(path) + hint)
    if actuator and vss.type != "actuator":
        _fail(file, key, f"{path} is a {vss.type} in VSS; only actuators can be written")
    if vss.is_array:
        _fail(file, key, f"{path} is an array ({vss.datatype}) in VSS; a CAN signal carries one value")
    if not isinstance(entry, dict):
        _fail(file, key, "must be a table with message and signal")
    for name in entry:
        if name not in _ENTRY_KEYS:
            _fail(file, f"{key}.{name}", f"unknown key; allowed: {', '.join(_ENTRY_KEYS)}")
    message = _find_message(file, f"{key}.message", entry.get("message"), database)
    if actuator and message.is_multiplexed():
        _fail(
            file,
            f"{key}.message",
            f"{message.name} is multiplexed; commands in such messages are not supported",
        )
    signal_name = entry.get("signal")
    if not isinstance(signal_name, str):
        _fail(
            file,
            f"{key}.signal",
            f'missing or not a string; the DBC signal in {message.name}, e.g. signal = "…"',
        )
    try:
        signal = message.get_signal_by_name(signal_name)
    except KeyError:
        names = [s.name for s in message.signals]
        _fail(
            file, f"{key}.signal", f"no signal {signal_name!r} in {message.name}; it has: {_listing(names)}"
        )
    choices = {raw: str(name) for raw, name in (signal.conversion.choices or {}).items()}
    if vss.datatype in INT_RANGES or vss.datatype in FLOAT_TYPES:
        return _numeric(file, key, path, entry, vss, message, signal, choices)
    if vss.datatype not in ("boolean", "string"):
        _fail(file, key, f"{path} has datatype {vss.datatype}, which a CAN signal cannot carry")
    for name in ("unit", "scale", "offset"):
        if name in entry:
            _fail(file, f"{key}.{name}", f"{path} is a {vss.datatype} in VSS; {name} applies to numbers only")
    return _named(file, key, path, entry.get("values"), vss, message, signal, choices, actuator)


def _find_message(file: Path, key: str, ref: Any, database: Database) -> DbcMessage:
    try:
        if isinstance(ref, str):
            return database.get_message_by_name(ref)
        if isinstance(ref, int) and not isinstance(ref, bool):
            return database.get_message_by_frame_id(ref)
    except KeyError:
        names = [m.name for m in database.messages]
        shown = f"0x{ref:X}" if isinstance(ref, int) else repr(ref)
        _fail(file, key, f"no message {shown} in the DBC; it has: {_listing(names)}")
    _fail(
        file, key, 'missing; give the DBC message name (message = "VCU_Status") or frame id (message = 0x100)'
    )


def _number(file: Path, key: str, value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _fail(file, key, f"must be a number, got {value!r}")
    return float(value)


def _numeric(
    file: Path,
    key: str,
    path: str,
    entry: dict[str, Any],
    vss: Signal,
    message: DbcMessage,
    signal: DbcSignal,
    choices: dict[int, str],
) -> MappedSignal:
    if "values" in entry:
        _fail(
            file,
            f"{key}.values",
            f"{path} is a number ({vss.datatype}) in VSS; values applies to booleans and strings",
        )
    scale = _number(file, f"{key}.scale", entry.get("scale"), 1.0)
    offset = _number(file, f"{key}.offset", entry.get("offset"), 0.0)
    if scale == 0:
        _fail(file, f"{key}.scale", "must not be 0")
    unit = entry.get("unit")
    if unit is not None and not isinstance(unit, str):
        _fail(file, f"{key}.unit", f"must be a string such as {_listing(list(_UNITS))}")
    conversion = (1.0, 0.0)
    if vss.unit is None:
        if unit is not None:
            _fail(file, f"{key}.unit", f"{path} has no unit in VSS, so there is nothing to convert to")
    else:
        source = unit or (signal.unit or "").strip() or vss.unit
        converted = unit_conversion(source, vss.unit)
        if converted is None:
            target = f"{vss.unit!r} (the unit of {path} in VSS); units that can: {', '.join(_units_like(vss.unit))}"
            if unit:
                _fail(file, f"{key}.unit", f"{unit!r} cannot be converted to {target}")
            _fail(
                file,
                key,
                f"the DBC gives {message.name}.{signal.name} the unit {source!r}, which cannot be converted to "
                f'{target}; if the DBC is wrong, give the real unit with unit = "…"',
            )
        conversion = converted
    dbc_scale, dbc_offset = float(signal.conversion.scale), float(signal.conversion.offset)
    # scale/offset correct the decoded value in its own unit; the unit conversion comes after
    factor = dbc_scale * scale * conversion[0]
    total_offset = (dbc_offset * scale + offset) * conversion[0] + conversion[1]
    no_value: set[int | float] = set(choices)
    if signal.raw_invalid is not None:
        no_value.add(signal.raw_invalid)
    return MappedSignal(path, vss, message, signal, factor, total_offset, no_value=frozenset(no_value))


def _named(
    file: Path,
    key: str,
    path: str,
    values: Any,
    vss: Signal,
    message: DbcMessage,
    signal: DbcSignal,
    choices: dict[int, str],
    actuator: bool,
) -> MappedSignal:
    raw_of_name = {name: raw for raw, name in choices.items()}
    if values is None:
        if vss.datatype == "boolean":
            return MappedSignal(
                path, vss, message, signal, named={0: False, 1: True}, raw_for={False: 0, True: 1}
            )
        if not choices:
            _fail(
                file,
                key,
                f"{path} is a string in VSS but {message.name}.{signal.name} has no named values in the DBC; "
                "say which raw value is which string with values = { NAME = 1, … }",
            )
        usable = {raw: name for raw, name in choices.items() if vss.allowed is None or name in vss.allowed}
        named_values: dict[int | float, SignalValue] = {raw: name for raw, name in usable.items()}
        raw_of_value: dict[SignalValue, int] = {name: raw for raw, name in usable.items()}
        return MappedSignal(path, vss, message, signal, named=named_values, raw_for=raw_of_value)
    where = f"{key}.values"
    if not isinstance(values, dict) or not values:
        _fail(
            file,
            where,
            'must be a table of VSS value = DBC value, e.g. values = { true = "Locked", false = 0 }',
        )
    named: dict[int | float, SignalValue] = {}
    raw_for: dict[SignalValue, int] = {}
    for text, dbc_values in values.items():
        vss_value: SignalValue
        if vss.datatype == "boolean":
            if text not in ("true", "false"):
                _fail(file, f"{where}.{text}", f"{path} is a boolean; the keys of values are true and false")
            vss_value = text == "true"
        else:
            if vss.allowed is not None and text not in vss.allowed:
                allowed = ", ".join(str(a) for a in vss.allowed)
                _fail(file, f"{where}.{text}", f"{text!r} is not a value of {path}; VSS allows: {allowed}")
            vss_value = text
        items = dbc_values if isinstance(dbc_values, list) and not actuator else [dbc_values]
        if not items:
            _fail(file, f"{where}.{text}", "needs at least one DBC value")
        for item in items:
            raw = _raw_value(file, f"{where}.{text}", item, message, signal, raw_of_name, actuator)
            if raw in named and named[raw] != vss_value:
                _fail(file, f"{where}.{text}", f"raw value {raw} is already mapped to {_show(named[raw])}")
            named[raw] = vss_value
            raw_for.setdefault(vss_value, raw)
    return MappedSignal(path, vss, message, signal, named=named, raw_for=raw_for)


def _raw_value(
    file: Path,
    key: str,
    item: Any,
    message: DbcMessage,
    signal: DbcSignal,
    raw_of_name: dict[str, int],
    actuator: bool,
) -> int:
    name = f"{message.name}.{signal.name}"
    if isinstance(item, str):
        if item not in raw_of_name:
            _fail(file, key, f"{name} has no named value {item!r}; it has: {_listing(list(raw_of_name))}")
        return raw_of_name[item]
    if isinstance(item, int) and not isinstance(item, bool):
        bits = signal.length
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signal.is_signed else (0, 2**bits - 1)
        if not lo <= item <= hi:
            _fail(file, key, f"raw value {item} does not fit in {name} ({bits} bits: {lo} to {hi})")
        return item
    what = "a raw integer or a DBC named value" + ("" if actuator else ", or a list of them")
    _fail(file, key, f"must be {what}, got {item!r}")


# --- the source -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class CanStats:
    """What the source has seen since it was made; for `smartev agent status` and tests."""

    frames_decoded: int = 0
    frames_ignored: int = 0
    """Frames of ids the mapping does not read that got past the bus's filters (remote, error, unmapped)."""
    frames_undecodable: Counter[int] = field(default_factory=Counter)
    """Per frame id: frames that could not be decoded (wrong length, bad multiplexer id…)."""
    values_rejected: Counter[str] = field(default_factory=Counter)
    """Per VSS path: decoded values outside what VSS allows for the signal, not emitted."""


@dataclass(frozen=True, slots=True)
class _Route:
    """What to do with the frames of one id."""

    message: DbcMessage
    signals: tuple[MappedSignal, ...]
    keep_raw: bool
    """Remember the last decoded raw values, because commands are sent in this message too."""


class _Confirmation:
    """VSS values a command waits to see reported back by the car."""

    def __init__(self, expected: dict[str, tuple[MappedSignal, SignalValue]]) -> None:
        self.pending = dict(expected)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def seen(self, values: Mapping[str, SignalValue]) -> None:
        for path in [p for p in self.pending if p in values]:
            mapped, expected = self.pending[path]
            if mapped.matches(values[path], expected):
                del self.pending[path]
        if not self.pending and not self.done.done():
            self.done.set_result(None)


class CanSource:
    """Reads VSS signals from a CAN bus and writes VSS actuators to it, as a mapping file says.

    The bus is open while `run` runs; `actuate` needs it open.
    """

    def __init__(
        self,
        mapping_path: Path | str,
        interface: str,
        channel: str | int,
        bitrate: int | None = None,
        *,
        confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT_S,
        bus_options: Mapping[str, Any] | None = None,
        demo_ecu: bool = False,
        catalog: Catalog | None = None,
    ) -> None:
        """Load and check the mapping (raises CanConfigError); the bus is opened by `run`.

        Args:
            bus_options: more keyword arguments for `can.Bus` (e.g. `fd`, `receive_own_messages`).
            demo_ecu: also run a `DemoEcu` on the same channel, for trying the agent without a car.
        """
        self.mapping = CanMapping.load(mapping_path, catalog)
        self.interface = interface
        self.channel = channel
        self.bitrate = bitrate
        self.confirm_timeout = confirm_timeout
        self.bus_options = dict(bus_options or {})
        self.demo_ecu = demo_ecu
        self.stats = CanStats()
        self.opened = asyncio.Event()
        """Set while the bus is open."""
        self._bus: can.BusABC | None = None
        self._readback = {m.path: m for m in self.mapping.signals}
        command_messages = {m.message.frame_id for m in self.mapping.actuators.values()}
        by_id: dict[int, list[MappedSignal]] = {}
        for mapped in self.mapping.signals:
            by_id.setdefault(mapped.message.frame_id, []).append(mapped)
        self._routes = {
            frame_id: _Route(signals[0].message, tuple(signals), frame_id in command_messages)
            for frame_id, signals in by_id.items()
        }
        self._last_raw: dict[int, Mapping[str, Any]] = {}
        self._confirmations: list[_Confirmation] = []
        self._failing: set[int] = set()
        self._warned_paths: set[str] = set()

    def __repr__(self) -> str:
        return f"CanSource({self.mapping.file.name!r}, {self.interface!r}, {self.channel!r})"

    # reading

    async def run(self, emit: Emit) -> None:
        """Read the bus until cancelled, emitting the mapped VSS values of each frame at the frame's time.

        Raises CanBusUnavailable when the bus cannot be opened or stops working. An exception raised by `emit`
        stops the source too.
        """
        if self._bus is not None:
            raise RuntimeError(f"{self!r} is running already")
        loop = asyncio.get_running_loop()
        bus = await self._open_bus()
        stopped: asyncio.Future[None] = loop.create_future()

        def stop(exc: BaseException) -> None:
            if not stopped.done():
                stopped.set_exception(exc)

        reader = _FrameReader(bus, loop, lambda frames: self._on_frames(emit, frames), stop)
        ecu_bus: can.BusABC | None = None
        ecu_task: asyncio.Task[None] | None = None
        self._bus = bus
        try:
            reader.start()
            if self.demo_ecu:
                ecu_bus = await self._open_bus(filtered=False)
                ecu_task = asyncio.create_task(DemoEcu(ecu_bus, self.mapping.database).run())
                ecu_task.add_done_callback(lambda task: None if task.cancelled() else stop(_ended(task)))
            self.opened.set()
            logger.info("reading CAN bus %s:%s with %s", self.interface, self.channel, self.mapping.file.name)
            try:
                await stopped
            except (can.CanError, OSError) as exc:
                raise CanBusUnavailable(
                    f"CAN bus {self.interface}:{self.channel} stopped working: {exc}"
                ) from exc
        finally:
            self.opened.clear()
            self._bus = None
            if ecu_task is not None:
                ecu_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ecu_task
            try:
                await reader.stop()
            finally:
                bus.shutdown()
                if ecu_bus is not None:
                    ecu_bus.shutdown()

    async def _open_bus(self, filtered: bool = True) -> can.BusABC:
        options: dict[str, Any] = dict(self.bus_options)
        if self.bitrate is not None:
            options["bitrate"] = self.bitrate
        if filtered:
            # on socketcan the kernel drops the frames nobody reads; elsewhere python-can does, before decoding
            options["can_filters"] = [
                {
                    "can_id": frame_id,
                    "can_mask": 0x1FFFFFFF if route.message.is_extended_frame else 0x7FF,
                    "extended": route.message.is_extended_frame,
                }
                for frame_id, route in self._routes.items()
            ] or None
        try:
            return await asyncio.to_thread(can.Bus, channel=self.channel, interface=self.interface, **options)
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise CanBusUnavailable(f"cannot open CAN bus {self.interface}:{self.channel}: {exc}") from exc

    def _on_frames(self, emit: Emit, frames: list[can.Message]) -> None:
        routes, stats = self._routes, self.stats
        now = time.time()
        for frame in frames:
            route = routes.get(frame.arbitration_id)
            if (
                route is None
                or frame.is_extended_id != route.message.is_extended_frame
                or frame.is_error_frame
                or frame.is_remote_frame
            ):
                stats.frames_ignored += 1
                continue
            try:
                raw: Mapping[str, Any] = route.message.decode_simple(
                    bytes(frame.data), decode_choices=False, scaling=False
                )
            except Exception as exc:  # a bad frame (cantools raises several kinds) must not stop the source
                self._undecodable(route, frame, exc)
                continue
            stats.frames_decoded += 1
            if self._failing and frame.arbitration_id in self._failing:
                self._failing.discard(frame.arbitration_id)
                logger.info("CAN frame %s (0x%X) decodes again", route.message.name, frame.arbitration_id)
            if route.keep_raw:
                self._last_raw[frame.arbitration_id] = raw
            values: dict[str, SignalValue] = {}
            for mapped in route.signals:
                value = raw.get(mapped.signal.name)
                if value is None:
                    continue  # a multiplexed signal that this frame does not carry
                try:
                    vss_value = mapped.decode(value)
                except SignalRejected as exc:
                    self._rejected(mapped, exc)
                    continue
                if vss_value is not None:
                    values[mapped.path] = vss_value
            if not values:
                continue
            stamp = frame.timestamp
            if not -_PLAUSIBLE_CLOCK_SKEW_S < stamp - now < _PLAUSIBLE_CLOCK_SKEW_S:
                stamp = now  # the interface counts from its own epoch (boot, adapter power-on)
            emit(stamp, values)
            for confirmation in self._confirmations:
                confirmation.seen(values)

    def _undecodable(self, route: _Route, frame: can.Message, exc: Exception) -> None:
        frame_id = frame.arbitration_id
        self.stats.frames_undecodable[frame_id] += 1
        if frame_id not in self._failing:
            self._failing.add(frame_id)
            logger.warning(
                "CAN frame %s (0x%X, %d bytes) cannot be decoded: %s; counting such frames until it decodes again",
                route.message.name,
                frame_id,
                len(frame.data),
                exc,
            )

    def _rejected(self, mapped: MappedSignal, exc: SignalRejected) -> None:
        self.stats.values_rejected[mapped.path] += 1
        if mapped.path not in self._warned_paths:
            self._warned_paths.add(mapped.path)
            logger.warning(
                "%s.%s gives %s a value VSS does not accept (%s); counting such values, logging only this one",
                mapped.message.name,
                mapped.signal.name,
                mapped.path,
                exc.reason,
            )

    # commands

    async def actuate(self, name: str, args: Mapping[str, Any]) -> CommandOutcome:
        """Send the request frames of a command and wait until the car reports the new values back.

        Momentary commands (honk_flash), and actuators the car does not report back, succeed once their
        request frames are on the bus.
        """
        targets = actuator_targets(name, args)
        if isinstance(targets, CommandOutcome):
            return targets
        missing = [path for path in targets if path not in self.mapping.actuators]
        if missing:
            return CommandOutcome("failed", f"this car has no CAN mapping for {', '.join(missing)}")
        bus = self._bus
        if bus is None:
            return CommandOutcome("failed", "the CAN bus is not open (the CAN source is not running)")
        requests: dict[str, dict[str, int | float]] = {}
        expected: dict[str, tuple[MappedSignal, SignalValue]] = {}
        for path, value in targets.items():
            mapped = self.mapping.actuators[path]
            try:
                raw, effective = mapped.encode(value)
            except NotSendable as exc:
                return CommandOutcome("failed", str(exc))
            requests.setdefault(mapped.message.name, {})[mapped.signal.name] = raw
            if name not in MOMENTARY_COMMANDS and path in self._readback:
                expected[path] = (self._readback[path], effective)
        frames = []
        for message_name, raws in requests.items():
            message = self.mapping.database.get_message_by_name(message_name)
            try:
                frames.append(self._request_frame(message, raws))
            except (EncodeError, ValueError) as exc:
                return CommandOutcome("failed", f"cannot encode {message_name}: {exc}")
        confirmation = _Confirmation(expected) if expected else None
        if confirmation is not None:
            self._confirmations.append(confirmation)  # before sending: the car may answer at once
        try:
            for frame, message_name in zip(frames, requests, strict=True):
                try:
                    await asyncio.to_thread(bus.send, frame, _SEND_TIMEOUT_S)
                except can.CanError as exc:
                    return CommandOutcome("failed", f"could not send {message_name} on the CAN bus: {exc}")
            sent = ", ".join(requests)
            if confirmation is None:
                unconfirmed = (
                    "" if name in MOMENTARY_COMMANDS else "; this car does not report the result back"
                )
                return CommandOutcome("succeeded", f"sent {sent}{unconfirmed}")
            try:
                await asyncio.wait_for(confirmation.done, self.confirm_timeout)
            except TimeoutError:
                waiting = ", ".join(f"{p} = {_show(v)}" for p, (_, v) in confirmation.pending.items())
                return CommandOutcome(
                    "failed",
                    f"the car did not confirm {waiting} within {self.confirm_timeout:g} s (sent {sent})",
                )
            confirmed = ", ".join(f"{p} = {_show(v)}" for p, (_, v) in expected.items())
            return CommandOutcome("succeeded", f"the car confirmed {confirmed}")
        finally:
            if confirmation is not None:
                self._confirmations.remove(confirmation)

    def _request_frame(self, message: DbcMessage, raws: dict[str, int | float]) -> can.Message:
        """One frame of `message` with the requested raw values; its other signals as last seen, else as the DBC
        starts them."""
        last = self._last_raw.get(message.frame_id, {})
        data = {s.name: last.get(s.name, _initial_raw(s)) for s in message.signals} | raws
        payload = message.encode(data, scaling=False, strict=True)
        return can.Message(
            arbitration_id=message.frame_id,
            is_extended_id=message.is_extended_frame,
            is_fd=message.is_fd,
            data=payload,
        )


def _ended(task: asyncio.Task[None]) -> BaseException:
    return task.exception() or RuntimeError("the demo car stopped")


def _initial_raw(signal: DbcSignal) -> int | float:
    if signal.raw_initial is not None:
        return signal.raw_initial
    if signal.minimum is not None and signal.minimum > signal.conversion.offset:
        return signal.conversion.numeric_scaled_to_raw(signal.minimum)
    return 0


class _FrameReader:
    """Hands a bus's frames, in batches, to a callback on the event loop.

    Through the loop's selector when the bus has a file descriptor (socketcan), from one thread otherwise
    (virtual, pcan, kvaser…). python-can's Notifier does the same one frame at a time, and reports the errors of
    the selector path to the loop's exception handler, where the source would not learn of them.
    """

    def __init__(
        self,
        bus: can.BusABC,
        loop: asyncio.AbstractEventLoop,
        on_frames: Callable[[list[can.Message]], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._bus, self._loop, self._on_frames, self._on_error = bus, loop, on_frames, on_error
        self._fd = -1
        self._thread: threading.Thread | None = None
        self._stopped = False

    def start(self) -> None:
        try:
            self._fd = self._bus.fileno()
        except NotImplementedError:
            self._fd = -1
        if self._fd >= 0:
            self._loop.add_reader(self._fd, self._readable)
        else:
            self._thread = threading.Thread(target=self._read_in_thread, name=f"CAN {self._bus.channel_info}")
            self._thread.daemon = True
            self._thread.start()

    async def stop(self) -> None:
        self._stopped = True
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5 * _RECV_POLL_S)

    def _batch(self, timeout: float) -> list[can.Message]:
        frame = self._bus.recv(timeout)
        if frame is None:
            return []
        frames = [frame]
        while len(frames) < _MAX_BATCH and (frame := self._bus.recv(0)) is not None:
            frames.append(frame)
        return frames

    def _readable(self) -> None:
        try:
            frames = self._batch(0)
        except Exception as exc:  # the bus failed: hand it to the source, stop reading
            self._loop.remove_reader(self._fd)
            self._on_error(exc)
            return
        self._deliver(frames)

    def _deliver(self, frames: list[can.Message]) -> None:
        if self._stopped or not frames:
            return
        try:
            self._on_frames(frames)
        except Exception as exc:  # emit failed: the source stops with its error
            self._stopped = True
            self._on_error(exc)

    def _read_in_thread(self) -> None:
        try:
            while not self._stopped:
                frames = self._batch(_RECV_POLL_S)
                if frames:
                    self._loop.call_soon_threadsafe(self._deliver, frames)
        except Exception as exc:  # the bus failed: hand it to the source
            if not self._stopped:
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    self._loop.call_soon_threadsafe(self._on_error, exc)


# --- configuration ----------------------------------------------------------------------------------------------

_OPTION_KEYS = (
    "kind",
    "mapping",
    "interface",
    "channel",
    "bitrate",
    "confirm_timeout",
    "bus_options",
    "demo_ecu",
)


def from_options(options: Mapping[str, Any], base_dir: Path) -> CanSource:
    """A CanSource from the `[source]` table of the agent's config; relative paths are relative to `base_dir`.

    `mapping = "demo"` uses the shipped demo mapping (data/smartev-demo-can.toml). Raises CanConfigError.
    """

    def fail(key: str, problem: str) -> NoReturn:
        raise CanConfigError(f"[source] {key}: {problem}")

    for key in options:
        if key not in _OPTION_KEYS:
            fail(key, f"unknown key for a CAN source; allowed: {', '.join(_OPTION_KEYS)}")
    if options.get("kind", "can") != "can":
        fail("kind", f'is {options["kind"]!r}; a CAN source has kind = "can"')
    mapping = options.get("mapping")
    if not isinstance(mapping, str) or not mapping:
        fail("mapping", 'missing; the CAN mapping file, e.g. mapping = "can-mapping.toml" (or "demo")')
    interface = options.get("interface")
    if not isinstance(interface, str) or interface not in can.interfaces.VALID_INTERFACES:
        known = ", ".join(sorted(can.interfaces.VALID_INTERFACES))
        fail("interface", f"{'missing' if interface is None else repr(interface)}; python-can knows: {known}")
    channel = options.get("channel")
    if isinstance(channel, bool) or not isinstance(channel, str | int) or channel == "":
        fail("channel", 'missing or not a string; the CAN channel, e.g. channel = "can0"')
    bitrate = options.get("bitrate")
    if bitrate is not None and (isinstance(bitrate, bool) or not isinstance(bitrate, int) or bitrate <= 0):
        fail("bitrate", f"must be a positive whole number of bit/s such as 500000, got {bitrate!r}")
    timeout = options.get("confirm_timeout", DEFAULT_CONFIRM_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60:
        fail("confirm_timeout", f"must be a number of seconds between 0 and 60, got {timeout!r}")
    bus_options = options.get("bus_options", {})
    if not isinstance(bus_options, Mapping):
        fail("bus_options", "must be a table of python-can bus arguments, e.g. bus_options = { fd = true }")
    demo_ecu = options.get("demo_ecu", False)
    if not isinstance(demo_ecu, bool):
        fail("demo_ecu", f"must be true or false, got {demo_ecu!r}")
    mapping_path = DEMO_MAPPING if mapping == "demo" else base_dir / mapping
    return CanSource(
        mapping_path,
        interface,
        channel,
        bitrate,
        confirm_timeout=float(timeout),
        bus_options=bus_options,
        demo_ecu=demo_ecu,
    )


# --- the demo car -----------------------------------------------------------------------------------------------


class DemoEcu:
    """A make-believe car speaking the shipped demo DBC: sends its status frames every `period` seconds and obeys
    the request frames (lock, climate, charge, horn and hazard lights), so that they show in the next status."""

    STATUS = ("VCU_Status", "BMS_Status", "BMS_Charge", "BCM_Status", "HVAC_Status")

    def __init__(self, bus: can.BusABC, database: Database | None = None, period: float = 0.1) -> None:
        self.bus = bus
        loaded = database or cantools.database.load_file(DEMO_DBC)
        assert isinstance(loaded, Database)
        self.database = loaded
        self.period = period
        self.state: dict[str, dict[str, Any]] = {
            "VCU_Status": {"VehicleSpeed": 0.0, "Odometer": 12345.6, "OutsideTemp": 68},
            "BMS_Status": {"SoC": 64.0, "PackVoltage": 396.5, "PackCurrent": 0.0, "PackTemp": 77},
            "BMS_Charge": {"ChargingState": "Idle", "ChargeLimit": 80},
            "BCM_Status": {"DoorLockState": "Locked", "HornActive": 0, "HazardActive": 0},
            "HVAC_Status": {"HvacOn": 0, "TargetTemp": 70},
        }
        self._honking_until = 0.0
        self._hazards_until = 0.0

    async def run(self) -> None:
        """Send status frames and answer requests until cancelled."""
        while True:
            while (frame := self.bus.recv(0)) is not None:
                self.obey(frame)
            self._tick()
            for name in self.STATUS:
                message = self.database.get_message_by_name(name)
                payload = message.encode(self.state[name])
                self.bus.send(
                    can.Message(
                        arbitration_id=message.frame_id,
                        is_extended_id=message.is_extended_frame,
                        data=payload,
                    )
                )
            await asyncio.sleep(self.period)

    def obey(self, frame: can.Message) -> None:
        """Apply one request frame to the car's state; other frames are ignored."""
        try:
            message = self.database.get_message_by_frame_id(frame.arbitration_id)
            request = message.decode_simple(bytes(frame.data))
        except (KeyError, DecodeError):
            return
        bcm, hvac, bms = self.state["BCM_Status"], self.state["HVAC_Status"], self.state["BMS_Charge"]
        if message.name == "BCM_Command":
            if request["LockRequest"] in ("Lock", "Unlock"):
                bcm["DoorLockState"] = "Locked" if request["LockRequest"] == "Lock" else "Unlocked"
            if request["HornRequest"]:
                self._honking_until = time.monotonic() + 0.5
            if request["HazardRequest"]:
                self._hazards_until = time.monotonic() + 3.0
        elif message.name == "HVAC_Command":
            if request["HvacRequest"] in ("On", "Off"):
                hvac["HvacOn"] = int(request["HvacRequest"] == "On")
            if request["TargetTempRequest"] != "NoRequest":
                hvac["TargetTemp"] = request["TargetTempRequest"]
        elif message.name == "Charge_Command":
            if request["ChargeLimitRequest"] != "NoRequest":
                bms["ChargeLimit"] = request["ChargeLimitRequest"]
            if request["ChargeRequest"] == "Start":
                bms["ChargingState"] = "Charging"
            elif request["ChargeRequest"] == "Stop":
                bms["ChargingState"] = "Idle"

    def _tick(self) -> None:
        now = time.monotonic()
        self.state["BCM_Status"]["HornActive"] = int(now < self._honking_until)
        self.state["BCM_Status"]["HazardActive"] = int(now < self._hazards_until)
        battery, charge = self.state["BMS_Status"], self.state["BMS_Charge"]
        charging = charge["ChargingState"] == "Charging"
        battery["PackCurrent"] = -30.0 if charging else 0.0
        if charging:
            battery["SoC"] = min(100.0, round(battery["SoC"] + 0.1, 1))
            if battery["SoC"] >= charge["ChargeLimit"]:
                charge["ChargingState"] = "Complete"


def main(argv: list[str] | None = None) -> None:
    """Run the demo car on a CAN bus, e.g. `python -m smartev.agent.can --interface socketcan --channel vcan0`."""
    parser = argparse.ArgumentParser(prog="python -m smartev.agent.can", description=DemoEcu.__doc__)
    parser.add_argument("--interface", default="socketcan", help="python-can interface (default socketcan)")
    parser.add_argument("--channel", default="vcan0", help="CAN channel (default vcan0)")
    parser.add_argument(
        "--period", type=float, default=0.1, help="seconds between status frames (default 0.1)"
    )
    args = parser.parse_args(argv)
    with can.Bus(channel=args.channel, interface=args.interface) as bus:
        print(f"demo car on {args.interface}:{args.channel}; Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(DemoEcu(bus, period=args.period).run())


if __name__ == "__main__":
    main()
