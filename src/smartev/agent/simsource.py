"""The simulator as a signal source: a `CarModel` read at a fixed rate, its commands applied to the model.

For a bench without a car, for the demo, and for the agent's own tests (a car driving at 10 Hz).

    [source]
    kind = "simulator"
    rate_hz = 10          # readings per (simulated) second
    speed = 1             # simulated seconds per real second
    seed = "my-car"       # everything random about the car; the VIN when not given
    model = "smartev S1"  # a car model of smartev.sim.model.CAR_MODELS
    start = "2026-11-21T07:30:00+01:00"   # simulated time to start at; now when not given
    timestamps = "simulated"               # or "wall": stamp readings with the wall clock
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from smartev.agent.source import CommandOutcome, Emit
from smartev.clock import Clock, SystemClock
from smartev.sim.model import CarModel, car_spec

_OPTIONS = ("kind", "rate_hz", "speed", "seed", "model", "start", "timestamps", "soc")


class SimulatorSource:
    """A simulated car read `rate_hz` times per simulated second."""

    def __init__(
        self,
        model: CarModel,
        *,
        rate_hz: float = 1.0,
        speed: float = 1.0,
        timestamps: Literal["simulated", "wall"] = "simulated",
        clock: Clock | None = None,
    ) -> None:
        if rate_hz <= 0 or speed <= 0:
            raise ValueError("rate_hz and speed must be positive")
        self.model = model
        self.rate_hz = rate_hz
        self.speed = speed
        self.timestamps = timestamps
        self._clock: Clock = clock or SystemClock()
        self.readings = 0

    async def run(self, emit: Emit) -> None:
        """Step the model by 1/rate_hz simulated seconds at `speed` times real time, emitting each state."""
        loop = asyncio.get_running_loop()
        dt = 1.0 / self.rate_hz
        wall_dt = dt / self.speed
        next_at = loop.time()
        emit(self._ts(), self.model.signals())
        while True:
            next_at += wall_dt
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:
                next_at = loop.time()  # stalled for over a second: skip ahead rather than burst
            signals = self.model.step(dt)
            self.readings += 1
            emit(self._ts(), signals)

    def _ts(self) -> float:
        return self._clock.now().timestamp() if self.timestamps == "wall" else self.model.time

    async def actuate(self, name: str, args: Mapping[str, Any]) -> CommandOutcome:
        """Apply the command to the model, as the car's ECUs would."""
        outcome = self.model.apply_command(name, args)
        return CommandOutcome(outcome.status, outcome.detail)


def from_options(options: Mapping[str, Any], vin: str, clock: Clock | None = None) -> SimulatorSource:
    """Build the source from the `[source]` table of the agent config; ValueError says what is wrong."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"[source] unknown key(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS[1:])}")
    clock = clock or SystemClock()
    start_text = options.get("start")
    try:
        start = datetime.fromisoformat(start_text) if start_text else clock.now()
    except (TypeError, ValueError):
        raise ValueError(f"[source] start {start_text!r} is not an ISO 8601 time with an offset") from None
    if start.tzinfo is None:
        raise ValueError("[source] start needs a timezone offset, e.g. 2026-11-21T07:30:00+01:00")
    timestamps = options.get("timestamps", "simulated")
    if timestamps not in ("simulated", "wall"):
        raise ValueError("[source] timestamps must be 'simulated' or 'wall'")
    soc = options.get("soc")
    model = CarModel(
        str(options.get("seed", vin)),
        start,
        car_spec(str(options.get("model", "smartev S1"))),
        soc=float(soc) if soc is not None else None,
    )
    return SimulatorSource(
        model,
        rate_hz=float(options.get("rate_hz", 1.0)),
        speed=float(options.get("speed", 1.0)),
        timestamps=timestamps,
        clock=clock,
    )
