"""Load the VSS catalog shipped in `data/` and validate and coerce signal values against it.

Each leaf signal gets one precomputed `coerce` function so that validating a value is a dict lookup and
one call on the ingest hot path.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson

INT_RANGES: dict[str, tuple[int, int]] = {
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
FLOAT_TYPES = {"float", "double"}
MAX_STRING = 4096
MAX_ARRAY = 1024
LEAF_TYPES = {"sensor", "actuator", "attribute"}


class SignalRejected(ValueError):
    """A value that the catalog does not accept for a signal; `reason` is meant for the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Coerce = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Signal:
    """One leaf of the VSS tree (sensor, actuator or attribute)."""

    path: str
    type: str
    datatype: str
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None
    description: str = ""
    coerce: Coerce = field(default=lambda v: v, compare=False, repr=False)

    @property
    def is_numeric(self) -> bool:
        """True for number and boolean signals (stored as numbers in history)."""
        return self.datatype in INT_RANGES or self.datatype in FLOAT_TYPES or self.datatype == "boolean"

    @property
    def is_array(self) -> bool:
        """True for array datatypes such as `string[]`."""
        return self.datatype.endswith("[]")


def _scalar_coercer(
    datatype: str, lo: float | None, hi: float | None, allowed: tuple[Any, ...] | None
) -> Coerce:
    if datatype == "boolean":

        def coerce_bool(v: Any) -> bool:
            if v is True or v is False:
                return v
            raise SignalRejected(f"expected a boolean (true/false), got {type(v).__name__}")

        return coerce_bool

    if datatype in INT_RANGES:
        tlo, thi = INT_RANGES[datatype]
        vlo = max(tlo, math.ceil(lo)) if lo is not None else tlo
        vhi = min(thi, math.floor(hi)) if hi is not None else thi

        def coerce_int(v: Any) -> int:
            if type(v) is int:
                n = v
            elif type(v) is float and v.is_integer():
                n = int(v)
            else:
                raise SignalRejected(f"expected an integer ({datatype}), got {_describe(v)}")
            if n < vlo or n > vhi:
                raise SignalRejected(f"{n} is outside the allowed range [{vlo}, {vhi}] of {datatype}")
            if allowed is not None and n not in allowed:
                raise SignalRejected(f"{n} is not one of the allowed values {list(allowed)}")
            return n

        return coerce_int

    if datatype in FLOAT_TYPES:
        limit = 3.4028235e38 if datatype == "float" else 1.7976931348623157e308

        def coerce_float(v: Any) -> float:
            if type(v) is float:
                f = v
            elif type(v) is int:
                try:
                    f = float(v)
                except OverflowError:
                    raise SignalRejected(f"{str(v)[:20]}… is not a finite {datatype}") from None
            else:
                raise SignalRejected(f"expected a number ({datatype}), got {_describe(v)}")
            if not math.isfinite(f) or abs(f) > limit:
                raise SignalRejected(f"{v} is not a finite {datatype}")
            if lo is not None and f < lo:
                raise SignalRejected(f"{f} is below the minimum {lo:g}")
            if hi is not None and f > hi:
                raise SignalRejected(f"{f} is above the maximum {hi:g}")
            if allowed is not None and f not in allowed:
                raise SignalRejected(f"{f} is not one of the allowed values {list(allowed)}")
            return f

        return coerce_float

    if datatype == "string":

        def coerce_str(v: Any) -> str:
            if type(v) is not str:
                raise SignalRejected(f"expected a string, got {_describe(v)}")
            if len(v) > MAX_STRING:
                raise SignalRejected(f"string longer than {MAX_STRING} characters")
            if "\x00" in v:
                # PostgreSQL text cannot hold NUL; such a value would make the whole batch unstorable
                raise SignalRejected("text must not contain NUL (\\u0000) characters")
            if allowed is not None and v not in allowed:
                raise SignalRejected(f"{v!r} is not one of the allowed values {list(allowed)}")
            return v

        return coerce_str

    def reject(v: Any) -> Any:
        raise SignalRejected(f"datatype {datatype} is not supported")

    return reject


def _describe(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return repr(v)[:40]


def _coercer(datatype: str, lo: float | None, hi: float | None, allowed: tuple[Any, ...] | None) -> Coerce:
    if not datatype.endswith("[]"):
        return _scalar_coercer(datatype, lo, hi, allowed)
    element = _scalar_coercer(datatype[:-2], lo, hi, allowed)

    def coerce_array(v: Any) -> list[Any]:
        if type(v) is not list:
            raise SignalRejected(f"expected an array ({datatype}), got {_describe(v)}")
        if len(v) > MAX_ARRAY:
            raise SignalRejected(f"array longer than {MAX_ARRAY} elements")
        out = []
        for i, item in enumerate(v):
            try:
                out.append(element(item))
            except SignalRejected as exc:
                raise SignalRejected(f"element {i}: {exc.reason}") from None
        return out

    return coerce_array


def _num(text: str) -> float | None:
    return float(text) if text.strip() else None


class Catalog:
    """The set of VSS signals smartev accepts, keyed by dotted path."""

    def __init__(self, signals: dict[str, Signal], branches: set[str]) -> None:
        self.signals = signals
        self.branches = branches

    @classmethod
    def from_csv_text(cls, text: str) -> Catalog:
        """Build a catalog from the flat `vss.csv` export (see data/README.md)."""
        signals: dict[str, Signal] = {}
        branches: set[str] = set()
        for row in csv.DictReader(text.splitlines()):
            kind = row["type"]
            if kind == "branch":
                branches.add(row["path"])
                continue
            if kind not in LEAF_TYPES:
                continue
            allowed_raw = row.get("allowed") or ""
            allowed = tuple(orjson.loads(allowed_raw)) if allowed_raw.strip() else None
            lo, hi = _num(row.get("min") or ""), _num(row.get("max") or "")
            datatype = row["datatype"]
            signals[row["path"]] = Signal(
                path=row["path"],
                type=kind,
                datatype=datatype,
                unit=row.get("unit") or None,
                min=lo,
                max=hi,
                allowed=allowed,
                description=row.get("description") or "",
                coerce=_coercer(datatype, lo, hi, allowed),
            )
        return cls(signals, branches)

    def get(self, path: str) -> Signal | None:
        """The signal at `path`, or None."""
        return self.signals.get(path)

    def validate(self, path: str, value: Any) -> Any:
        """The value coerced to the signal's datatype; raises SignalRejected with a reason."""
        signal = self.signals.get(path)
        if signal is None:
            raise SignalRejected(self.unknown_reason(path))
        return signal.coerce(value)

    def unknown_reason(self, path: Any) -> str:
        """Why `path` is not a signal, in the sender's words."""
        if not isinstance(path, str):
            return "signal path must be a string"
        if path in self.branches:
            return f"{path} is a branch, not a signal"
        return f"unknown signal {path[:200]!r} (not in the VSS 6.0 catalog)"

    def search(self, text: str = "", limit: int = 100) -> Iterator[Signal]:
        """Signals whose path or description contains `text` (case-insensitive)."""
        needle = text.lower()
        count = 0
        for signal in self.signals.values():
            if needle in signal.path.lower() or needle in signal.description.lower():
                yield signal
                count += 1
                if count >= limit:
                    return

    def __len__(self) -> int:
        return len(self.signals)

    def __contains__(self, path: object) -> bool:
        return path in self.signals


@functools.cache
def default_catalog() -> Catalog:
    """The VSS 6.0 catalog shipped with smartev (MPL-2.0, see data/LICENSE)."""
    text = resources.files("smartev.vss").joinpath("data/vss.csv").read_text(encoding="utf-8")
    return Catalog.from_csv_text(text)
