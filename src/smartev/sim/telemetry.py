"""What a simulated car puts on the wire: only the signals that changed, and every message until it is acked.

Both classes are plain bookkeeping with time passed in, so the MQTT client stays thin.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TypedDict

from smartev.agent.protocol import rfc3339_ms
from smartev.sim.model import SignalValue

__all__ = ["Outbox", "PendingMessage", "Sample", "SignalDelta", "rfc3339_ms"]


class Sample(TypedDict):
    """One timestamped set of signal values, as in the telemetry payload."""

    ts: str
    signals: dict[str, SignalValue]


class SignalDelta:
    """Chooses what to report: what changed since the last report, and periodically everything."""

    def __init__(self, full_every_s: float = 30.0) -> None:
        self.full_every_s = full_every_s
        self._last: dict[str, SignalValue] = {}
        self._last_full_at: float | None = None

    def changes(self, signals: Mapping[str, SignalValue], at: float) -> dict[str, SignalValue]:
        """The signals to send at simulated time `at`; empty when nothing changed and no full state is due."""
        if self._last_full_at is None or at - self._last_full_at >= self.full_every_s:
            self._last_full_at = at
            out = dict(signals)
        else:
            last = self._last
            out = {path: value for path, value in signals.items() if path not in last or last[path] != value}
        self._last.update(out)
        return out


@dataclass(slots=True)
class PendingMessage:
    """A telemetry message not yet acknowledged by the platform."""

    seq: int
    payload: bytes
    attempts: int = 0
    due_at: float = 0.0  # monotonic seconds; 0 = send as soon as connected


class Outbox:
    """Telemetry messages awaiting their ack, re-sent with their original seq until acknowledged.

    A resend waits `resend_after_s`, doubling per attempt up to `max_resend_after_s`, so a message the
    platform keeps refusing to ack costs little. Beyond `capacity` messages the oldest are dropped: a car
    offline for hours keeps its recent history rather than its memory.
    """

    def __init__(
        self, resend_after_s: float = 5.0, max_resend_after_s: float = 60.0, capacity: int = 10_000
    ) -> None:
        self.resend_after_s = resend_after_s
        self.max_resend_after_s = max(max_resend_after_s, resend_after_s)
        self.capacity = capacity
        self.dropped = 0
        self._pending: dict[int, PendingMessage] = {}  # insertion order is seq order

    def add(self, seq: int, payload: bytes) -> int:
        """Queue a new message; returns how many old messages were dropped to make room."""
        self._pending[seq] = PendingMessage(seq, payload)
        dropped = 0
        while len(self._pending) > self.capacity:
            del self._pending[next(iter(self._pending))]
            dropped += 1
        self.dropped += dropped
        return dropped

    def due(self, now: float) -> list[PendingMessage]:
        """Messages to (re)send now, oldest first."""
        return [message for message in self._pending.values() if message.due_at <= now]

    def mark_sent(self, seq: int, now: float) -> None:
        """Record that `seq` went out at `now`; it becomes due again if no ack arrives in time."""
        message = self._pending.get(seq)
        if message is None:
            return
        wait = min(self.resend_after_s * 2**message.attempts, self.max_resend_after_s)
        message.attempts += 1
        message.due_at = now + wait

    def ack(self, seq: int) -> bool:
        """Settle `seq`; False for a seq not pending or never sent in this run (a stale or repeated ack)."""
        message = self._pending.get(seq)
        if message is None or message.attempts == 0:
            return False
        del self._pending[seq]
        return True

    def all_due(self) -> None:
        """Make every pending message due now (after a reconnect the broker may have lost them)."""
        for message in self._pending.values():
            message.due_at = 0.0

    def next_due_at(self) -> float | None:
        """When the next message becomes due, or None when nothing is pending."""
        return min((message.due_at for message in self._pending.values()), default=None)

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, seq: object) -> bool:
        return seq in self._pending

    def __iter__(self) -> Iterator[PendingMessage]:
        return iter(list(self._pending.values()))
