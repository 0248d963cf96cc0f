"""How signal values are stored: numbers and booleans as a double, strings as text, arrays as JSON text."""

from __future__ import annotations

from typing import Any

import orjson

from smartev.vss.catalog import INT_RANGES, Signal


def encode(signal: Signal, value: Any) -> tuple[float | None, str | None]:
    """(value_num, value_text) for a value already coerced by the catalog."""
    if signal.is_array:
        return None, orjson.dumps(value).decode()
    if type(value) is str:
        return None, value
    return float(value), None


def decode(signal: Signal | None, num: float | None, text: str | None) -> Any:
    """The typed value back from its stored form."""
    if signal is None:
        return num if num is not None else text
    if signal.is_array:
        return orjson.loads(text) if text is not None else None
    if num is None:
        return text
    if signal.datatype == "boolean":
        return num != 0.0
    if signal.datatype in INT_RANGES:
        return int(num)
    return num
