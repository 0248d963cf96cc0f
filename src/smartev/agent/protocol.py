"""The car's side of the MQTT contract (docs/protocol.md), shared by the agent and the simulated fleet.

Topic names, the expiry check every command passes before it may act, and the reconnect backoff.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from smartev.agent.source import CommandOutcome

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one car."""

    telemetry: str
    ack: str
    errors: str
    commands: str
    results: str
    status: str

    @classmethod
    def for_vin(cls, vin: str) -> Topics:
        """The topics of the car with this VIN."""
        base = f"vehicles/{vin}"
        return cls(
            telemetry=f"{base}/telemetry",
            ack=f"{base}/telemetry/ack",
            errors=f"{base}/errors",
            commands=f"{base}/commands",
            results=f"{base}/command-results",
            status=f"{base}/status",
        )

    def subscriptions(self) -> list[tuple[str, int]]:
        """What a car subscribes to, at QoS 1."""
        return [(self.commands, 1), (self.ack, 1), (self.errors, 1)]


def rfc3339_ms(epoch_s: float) -> str:
    """Epoch seconds as RFC 3339 UTC with milliseconds and `Z`, e.g. `2026-11-21T10:00:00.250Z`."""
    ms = round(epoch_s * 1000)
    # Integer milliseconds avoid the float rounding that could print .1000 or step back a millisecond.
    moment = _EPOCH + timedelta(milliseconds=ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def expiry_refusal(expires_at: Any, now: datetime) -> CommandOutcome | None:
    """Why a command must be refused because of its expiry, or None when it is still wanted at `now`."""
    # A command without a readable expiry could act long after anyone wanted it: refuse it.
    if not isinstance(expires_at, str):
        return CommandOutcome("rejected", "expires_at missing")
    try:
        deadline = datetime.fromisoformat(expires_at)
    except ValueError:
        return CommandOutcome("rejected", f"expires_at {expires_at[:40]!r} is not an RFC 3339 time")
    if deadline.tzinfo is None:
        deadline = deadline.replace(tzinfo=UTC)
    if deadline <= now:
        return CommandOutcome(
            "rejected", f"expired at {expires_at}, received at {rfc3339_ms(now.timestamp())}"
        )
    return None


def granted_all(granted: Any) -> bool:
    """True when a SUBACK granted every subscription (paho gives ints on 3.1.1, reason codes on 5)."""
    return not any(code >= 0x80 if isinstance(code, int) else code.is_failure for code in granted)


class Backoff:
    """Reconnect delays that double up to a cap, half fixed and half random ("equal jitter").

    Cars that lost the same broker do not all come back in the same instant, and none waits longer than the cap.
    """

    def __init__(self, first_s: float = 0.5, max_s: float = 30.0, rng: random.Random | None = None) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.failures = 0
        self._rng = rng or random.Random()

    def reset(self) -> None:
        """A connection worked: start again from the first delay."""
        self.failures = 0

    def next_delay(self) -> float:
        """The delay before the next attempt, counting this failure."""
        self.failures += 1
        delay = min(self.first_s * 2.0 ** (self.failures - 1), self.max_s)
        return delay / 2 + self._rng.uniform(0, delay / 2)

    async def sleep(self) -> None:
        """Wait the next delay."""
        await asyncio.sleep(self.next_delay())


def raise_if_cancelled() -> None:
    """Raise a cancel that `asyncio.wait_for` swallowed (on 3.11 a result arriving with the cancel wins)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
