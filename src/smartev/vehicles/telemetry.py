"""Decode and validate one telemetry message against the VSS catalog (pure; no I/O).

A message is rejected as a whole only when it cannot be read (not JSON, wrong shape, too big); otherwise
each signal is judged on its own, so good signals are stored beside rejected ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from smartev.clock import datetime_to_ms
from smartev.vss.catalog import Catalog, SignalRejected

MIN_TS_MS = 946_684_800_000  # 2000-01-01: older timestamps are clock errors, not data
MAX_SEQ = 2**63 - 1


class MessageRejected(ValueError):
    """The message cannot be read; `seq` is set when it could be found."""

    def __init__(self, reason: str, seq: int | None = None, kind: str = "bad_message") -> None:
        super().__init__(reason)
        self.reason = reason
        self.seq = seq
        self.kind = kind


@dataclass(slots=True)
class DecodedMessage:
    """The valid rows of a message and the reasons for everything rejected."""

    seq: int
    rows: list[tuple[str, int, Any]] = field(default_factory=list)  # (path, ts_ms, coerced value)
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def min_ts(self) -> int:
        """The earliest sample timestamp among the stored rows (0 when none)."""
        return min((r[1] for r in self.rows), default=0)


def parse_ts(raw: Any) -> int:
    """Epoch milliseconds from RFC 3339 text or an epoch-milliseconds number; ValueError with a reason."""
    if type(raw) is int:
        return raw
    if type(raw) is float and raw.is_integer():
        return int(raw)
    if type(raw) is str:
        try:
            # RFC 3339 allows lower-case t and z; they are its only letters, so upper-casing is safe
            dt = datetime.fromisoformat(raw.upper())
        except ValueError:
            raise ValueError(
                f"timestamp {raw[:40]!r} is not RFC 3339 (e.g. 2026-11-21T10:00:00.250Z)"
            ) from None
        if dt.tzinfo is None:
            raise ValueError(f"timestamp {raw[:40]!r} has no timezone; add Z or an offset")
        return datetime_to_ms(dt)
    raise ValueError("timestamp must be RFC 3339 text or epoch milliseconds (an integer)")


def decode(
    payload: bytes,
    catalog: Catalog,
    *,
    now_ms: int,
    max_bytes: int,
    max_samples: int,
    max_signals: int,
    max_future_ms: int,
) -> DecodedMessage:
    """The message's valid rows and rejections; raises MessageRejected if it cannot be read at all."""
    if len(payload) > max_bytes:
        raise MessageRejected(
            f"payload of {len(payload)} bytes exceeds the limit of {max_bytes}", kind="too_large"
        )
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise MessageRejected("payload is not valid JSON", kind="not_json") from None
    if type(doc) is not dict:
        raise MessageRejected(
            'payload must be a JSON object {"seq": ..., "samples": [...]}', kind="bad_shape"
        )
    seq = doc.get("seq")
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise MessageRejected(
            '"seq" must be a non-negative integer that increases per message', kind="bad_shape"
        )
    samples = doc.get("samples")
    if type(samples) is not list or not samples:
        raise MessageRejected('"samples" must be a non-empty array', seq, kind="bad_shape")
    if len(samples) > max_samples:
        raise MessageRejected(
            f"{len(samples)} samples exceed the limit of {max_samples} per message", seq, "too_large"
        )

    out = DecodedMessage(seq)
    rows, errors, signals_index = out.rows, out.errors, catalog.signals
    latest_ok = now_ms + max_future_ms
    for i, sample in enumerate(samples):
        where = f"samples[{i}]"
        if type(sample) is not dict:
            errors.append(
                {"path": where, "reason": 'each sample must be an object {"ts": ..., "signals": {...}}'}
            )
            continue
        values = sample.get("signals")
        if type(values) is not dict:
            errors.append(
                {"path": f"{where}.signals", "reason": '"signals" must be an object of path: value'}
            )
            continue
        if len(values) > max_signals:
            errors.append(
                {"path": f"{where}.signals", "reason": f"more than {max_signals} signals in one sample"}
            )
            continue
        try:
            ts = parse_ts(sample.get("ts"))
            if ts < MIN_TS_MS:
                raise ValueError("timestamp is before the year 2000: is the car's clock set?")
            if ts > latest_ok:
                raise ValueError("timestamp is too far in the future: is the car's clock set?")
        except ValueError as exc:
            errors.append({"path": f"{where}.ts", "reason": str(exc)})
            continue
        for path, value in values.items():
            signal = signals_index.get(path)
            if signal is None:
                errors.append({"path": path[:255], "reason": catalog.unknown_reason(path)})
                continue
            try:
                rows.append((path, ts, signal.coerce(value)))
            except SignalRejected as exc:
                errors.append({"path": path, "reason": exc.reason})
    return out
