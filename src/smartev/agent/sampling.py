"""What of the car's readings is worth sending, and how readings become telemetry messages.

Per-signal rules: send on change (numbers only when they moved more than a deadband since the value last sent),
and at most every N ms — a value held back by that limit is not lost: the latest one goes out when the limit
allows. A heartbeat sends the full known state at a slower rate, so the platform's twin never goes stale.
Samples are batched into one message until it is big enough or old enough.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from smartev.agent.source import SignalValue


@dataclass(frozen=True, slots=True)
class Rule:
    """How one signal (or a glob of signals, e.g. `Vehicle.Cabin.*`) is sampled."""

    match: str
    on_change: bool = True  # False: every reading is sent (subject to min_interval_ms)
    deadband: float = (
        0.0  # numbers: only a move larger than this since the last sent value counts as a change
    )
    min_interval_ms: int = 0  # at most one value every N ms; the latest held-back value follows when allowed

    def __post_init__(self) -> None:
        if self.deadband < 0 or not math.isfinite(self.deadband):
            raise ValueError(f"rule {self.match!r}: deadband must be a number >= 0")
        if self.min_interval_ms < 0:
            raise ValueError(f"rule {self.match!r}: min_interval_ms must be >= 0")


DEFAULT_RULE = Rule("*")


@dataclass(slots=True)
class _Track:
    rule: Rule
    sent: SignalValue | None = None
    sent_at_ms: int | None = None
    held: SignalValue | None = None  # a changed value the interval held back
    held_ts_ms: int = 0
    has_held: bool = False


class Sampler:
    """Decides which readings to send; one per agent, fed with every reading of the source."""

    def __init__(self, rules: Sequence[Rule] = (), heartbeat_s: float = 60.0) -> None:
        """Rules are matched in order, first match wins (exact paths before globs is the usual order)."""
        if heartbeat_s <= 0:
            raise ValueError("heartbeat_s must be positive")
        self._rules = list(rules)
        self.heartbeat_ms = int(heartbeat_s * 1000)
        self._tracks: dict[str, _Track] = {}
        self._latest: dict[str, SignalValue] = {}
        self._next_heartbeat_ms: int | None = None

    def rule_for(self, path: str) -> Rule:
        """The first rule matching `path`, or the default (every change, no limit)."""
        for rule in self._rules:
            if rule.match == path or fnmatch.fnmatchcase(path, rule.match):
                return rule
        return DEFAULT_RULE

    @property
    def latest(self) -> dict[str, SignalValue]:
        """The newest reading of every signal seen."""
        return self._latest

    def offer(self, ts_ms: int, readings: Mapping[str, SignalValue]) -> dict[str, SignalValue]:
        """The readings at `ts_ms` to send now."""
        out: dict[str, SignalValue] = {}
        for path, value in readings.items():
            self._latest[path] = value
            track = self._tracks.get(path)
            if track is None:
                track = self._tracks[path] = _Track(self.rule_for(path))
            if track.sent_at_ms is not None and not _changed(track, value):
                track.has_held = False  # back where it was sent: nothing to follow up
                continue
            interval = track.rule.min_interval_ms
            if track.sent_at_ms is not None and interval and ts_ms - track.sent_at_ms < interval:
                track.held, track.held_ts_ms, track.has_held = value, ts_ms, True
                continue
            self._mark_sent(track, value, ts_ms)
            out[path] = value
        return out

    def due(self, now_ms: int) -> list[tuple[int, dict[str, SignalValue]]]:
        """Held-back values whose interval has passed, and the heartbeat when due, as (ts_ms, signals)."""
        samples: dict[int, dict[str, SignalValue]] = {}
        for path, track in self._tracks.items():
            if track.has_held and track.sent_at_ms is not None:
                if now_ms - track.sent_at_ms >= track.rule.min_interval_ms:
                    samples.setdefault(track.held_ts_ms, {})[path] = track.held  # type: ignore[assignment]
                    self._mark_sent(track, track.held, track.held_ts_ms)  # type: ignore[arg-type]
        if self._next_heartbeat_ms is None:
            self._next_heartbeat_ms = now_ms + self.heartbeat_ms
        elif now_ms >= self._next_heartbeat_ms and self._latest:
            self._next_heartbeat_ms = now_ms + self.heartbeat_ms
            full = samples.setdefault(now_ms, {})
            for path, value in self._latest.items():
                track = self._tracks[path]
                if track.sent_at_ms != now_ms:  # sent at this very moment already: once is enough
                    full[path] = value
                    self._mark_sent(track, value, now_ms)
            if not full:
                del samples[now_ms]
        return sorted(samples.items())

    @staticmethod
    def _mark_sent(track: _Track, value: SignalValue, ts_ms: int) -> None:
        track.sent, track.sent_at_ms, track.has_held = value, ts_ms, False


def _changed(track: _Track, value: SignalValue) -> bool:
    last = track.sent
    deadband = track.rule.deadband
    if not track.rule.on_change:
        return True
    if (
        deadband
        and isinstance(value, int | float)
        and isinstance(last, int | float)
        and not isinstance(value, bool)
        and not isinstance(last, bool)
    ):
        return abs(value - last) > deadband
    return bool(value != last or type(value) is not type(last))


@dataclass(slots=True)
class Batch:
    """Samples gathered for one telemetry message."""

    samples: list[dict[str, Any]] = field(default_factory=list)
    signals: int = 0
    first_ts_ms: int = 0
    opened_at_ms: int = 0


class Batcher:
    """Gathers samples into messages: a message closes when it has `max_samples` or its first is `max_delay_ms` old."""

    def __init__(self, max_samples: int = 100, max_signals: int = 1500, max_delay_ms: int = 1000) -> None:
        if max_samples <= 0 or max_signals <= 0 or max_delay_ms < 0:
            raise ValueError("batch limits must be positive")
        self.max_samples = max_samples
        self.max_signals = max_signals
        self.max_delay_ms = max_delay_ms
        self._batch: Batch | None = None

    def add(self, ts: str, ts_ms: int, signals: dict[str, SignalValue], now_ms: int) -> list[Batch]:
        """Add a sample; returns the batches that closed because of it (zero, one or two)."""
        if not signals:
            return []
        closed = []
        batch = self._batch
        if batch is not None and batch.signals + len(signals) > self.max_signals:
            closed.append(batch)
            batch = None
        if batch is None:
            batch = self._batch = Batch(first_ts_ms=ts_ms, opened_at_ms=now_ms)
        batch.samples.append({"ts": ts, "signals": signals})
        batch.signals += len(signals)
        batch.first_ts_ms = min(batch.first_ts_ms, ts_ms)
        if len(batch.samples) >= self.max_samples or batch.signals >= self.max_signals:
            closed.append(batch)
            self._batch = None
        elif closed:
            self._batch = batch
        return closed

    def due(self, now_ms: int) -> Batch | None:
        """The open batch if it is old enough to send."""
        batch = self._batch
        if batch is not None and now_ms - batch.opened_at_ms >= self.max_delay_ms:
            self._batch = None
            return batch
        return None

    def flush(self) -> Batch | None:
        """The open batch, whatever its age (on shutdown)."""
        batch, self._batch = self._batch, None
        return batch

    def next_due_ms(self) -> int | None:
        """When the open batch becomes due, or None when nothing is gathered."""
        return None if self._batch is None else self._batch.opened_at_ms + self.max_delay_ms
