"""A fleet of simulated cars run together, for `smartev demo`, load tests and end-to-end tests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from smartev.clock import Clock, SystemClock
from smartev.sim.car import SimulatedCar
from smartev.sim.model import DEFAULT_MODEL, car_spec

logger = logging.getLogger(__name__)

_WATCH_EVERY_S = 1.0
_CONNECTS_PER_S = 500.0  # spread the first connections so a big fleet does not hit the broker at once


@dataclass(frozen=True, slots=True)
class CarIdentity:
    """Who a simulated car is: its VIN (also its MQTT username), its MQTT password and its model."""

    vin: str
    password: str = field(repr=False)
    model: str = DEFAULT_MODEL


@dataclass(frozen=True, slots=True)
class FleetStats:
    """Counters summed over the fleet."""

    cars: int
    connected: int
    sent: int
    acked: int
    pending: int
    resent: int
    dropped: int
    errors: int
    commands: int


class Fleet:
    """Simulated cars, each with its own MQTT connection, run under one task group."""

    def __init__(
        self,
        cars: Iterable[CarIdentity],
        *,
        mqtt_host: str,
        mqtt_port: int,
        seed: int = 1,
        speed: float = 1.0,
        report_interval_s: float = 1.0,
        full_state_every_s: float = 30.0,
        resend_after_s: float = 5.0,
        start: datetime | None = None,
        wall_clock_ts: bool = False,
        clock: Clock | None = None,
        ledger_size: int = 1000,
        fault_rate: float = 0.0,
    ) -> None:
        """Create the cars; nothing connects until `run`.

        Args:
            cars: the identities; VINs must be unique and models known (see `CAR_MODELS`).
            seed: the fleet's seed; each car's is derived from it and its VIN.
            speed: simulated seconds per real second.
            report_interval_s: real seconds between a car's telemetry messages.
            start: simulated time to start at (the same for every car); now when not given.
            wall_clock_ts: stamp samples with the wall clock (see SimulatedCar).
            ledger_size: messages and commands each car's ledger keeps; 0 for big fleets.
            fault_rate: the share of cars that develop a fault in their first simulated week.
        """
        clock = clock or SystemClock()
        start = start or clock.now()
        self._cars: dict[str, SimulatedCar] = {}
        for identity in cars:
            if identity.vin in self._cars:
                raise ValueError(f"VIN {identity.vin} appears twice in the fleet")
            car_spec(identity.model)  # fail here, with the known models, rather than inside a task
            self._cars[identity.vin] = SimulatedCar(
                identity,
                mqtt_host=mqtt_host,
                mqtt_port=mqtt_port,
                seed=seed,
                speed=speed,
                report_interval_s=report_interval_s,
                full_state_every_s=full_state_every_s,
                resend_after_s=resend_after_s,
                start=start,
                wall_clock_ts=wall_clock_ts,
                clock=clock,
                ledger_size=ledger_size,
                fault_rate=fault_rate,
            )

    async def run(self) -> None:
        """Run every car until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for i, car in enumerate(self._cars.values()):
                tg.create_task(car.run(start_delay_s=i / _CONNECTS_PER_S), name=f"car {car.vin}")
            tg.create_task(self._watch(), name="fleet watch")

    def car(self, vin: str) -> SimulatedCar:
        """The car with this VIN; raises KeyError."""
        return self._cars[vin]

    @property
    def vins(self) -> list[str]:
        """The VINs of the fleet, in the order given."""
        return list(self._cars)

    def __iter__(self) -> Iterator[SimulatedCar]:
        return iter(self._cars.values())

    def __len__(self) -> int:
        return len(self._cars)

    def stats(self) -> FleetStats:
        """Connected cars and message counters, summed over the fleet."""
        per_car = [car.stats() for car in self._cars.values()]
        return FleetStats(
            cars=len(per_car),
            connected=sum(s.connected for s in per_car),
            sent=sum(s.sent for s in per_car),
            acked=sum(s.acked for s in per_car),
            pending=sum(s.pending for s in per_car),
            resent=sum(s.resent for s in per_car),
            dropped=sum(s.dropped for s in per_car),
            errors=sum(s.errors for s in per_car),
            commands=sum(s.commands for s in per_car),
        )

    async def _watch(self) -> None:
        """Log when cars lose the broker and when all are back, rather than per car and retry."""
        total = len(self._cars)
        all_connected = False
        while True:
            await asyncio.sleep(_WATCH_EVERY_S)
            connected = sum(car.connected for car in self._cars.values())
            if connected == total and not all_connected:
                all_connected = True
                logger.info("all %d simulated cars are connected", total)
            elif connected < total and all_connected:
                all_connected = False
                logger.warning("%d of %d simulated cars lost their MQTT connection", total - connected, total)
