"""A simulated car over a real MQTT broker: reports until acked, obeys commands once, refuses stale ones."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from smartev.sim.car import SimulatedCar
from smartev.sim.fleet import CarIdentity, Fleet
from smartev.vehicles.vin import make_vin
from smartev.vss import default_catalog

from brokers import BrokerUnderTest, FakePlatform, eventually, free_port

LOCKED = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"


@contextlib.asynccontextmanager
async def running(car: SimulatedCar | Fleet) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(car.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def identity(seed: int = 1) -> CarIdentity:
    return CarIdentity(make_vin(random.Random(seed)), "car-password")


async def test_car_reports_until_acked_obeys_commands_once_and_refuses_expired_ones(
    broker: BrokerUnderTest,
) -> None:
    # Reports are a minute apart, so every telemetry message after the first is the car's answer to a command.
    car = SimulatedCar(
        identity(), mqtt_host="127.0.0.1", mqtt_port=broker.port, report_interval_s=60.0, first_seq=1
    )
    vin = car.vin
    async with FakePlatform(broker.port) as platform, running(car):
        await eventually(lambda: platform.status.get(vin) == "online")
        await eventually(lambda: car.ledger.acked == {1})
        first = platform.telemetry[0][1]
        assert first["seq"] == 1
        assert first["samples"][0]["signals"] == car.model.signals()  # the first message is the full state
        assert first["samples"][0]["ts"].endswith("Z")

        await platform.command(vin, "c-unlock", "unlock")
        assert (await eventually(lambda: platform.results_for("c-unlock")))[0]["status"] == "succeeded"
        assert platform.latest(vin, LOCKED) is False  # the new state was sent before the result
        await platform.command(vin, "c-lock", "lock")
        assert (await eventually(lambda: platform.results_for("c-lock")))[0] == {
            "id": "c-lock",
            "status": "succeeded",
            "detail": "locked",
        }
        assert platform.latest(vin, LOCKED) is True
        await platform.command(vin, "c-unlock-2", "unlock")
        await eventually(lambda: platform.results_for("c-unlock-2"))

        # The platform did not see the lock result and sends the command again: answered, not executed.
        await platform.command(vin, "c-lock", "lock")
        replies = await eventually(
            lambda: len(platform.results_for("c-lock")) == 2 and platform.results_for("c-lock")
        )
        assert replies[1] == replies[0]
        assert [c.id for c in car.ledger.commands] == ["c-unlock", "c-lock", "c-unlock-2"]
        assert car.model.locked is False

        await platform.command(vin, "c-old", "lock", ttl_s=-1.0)
        (late,) = await eventually(lambda: platform.results_for("c-old"))
        assert late["status"] == "rejected" and "expired" in late["detail"]
        assert car.model.locked is False

        await platform.command(vin, "c-bad", "charge", {"limit": 20})
        (bad,) = await eventually(lambda: platform.results_for("c-bad"))
        assert bad["status"] == "rejected" and "between 50 and 100" in bad["detail"]

        await eventually(lambda: car.pending == 0 and not car.ledger.unacked())
        assert car.ledger.acked == set(range(1, car.stats().sent + 1))
        catalog = default_catalog()
        for _, message in platform.telemetry:
            for sample in message["samples"]:
                for path, value in sample["signals"].items():
                    catalog.validate(path, value)
    # A car that is switched off says so (the broker only publishes the will when a car vanishes).
    async with FakePlatform(broker.port) as platform:
        await eventually(lambda: platform.status.get(vin) == "offline")


async def test_nothing_is_lost_across_platform_and_broker_restarts(broker: BrokerUnderTest) -> None:
    car = SimulatedCar(
        identity(2),
        mqtt_host="127.0.0.1",
        mqtt_port=broker.port,
        report_interval_s=0.1,
        full_state_every_s=0.0,  # every report carries everything, so there is a message every 0.1 s
        resend_after_s=0.3,
        first_seq=1,
    )
    vin = car.vin
    received: dict[int, set[bytes]] = {}
    async with running(car):
        async with FakePlatform(broker.port) as platform:
            await eventually(lambda: len(car.ledger.acked) >= 5)
        received |= {seq: p for (v, seq), p in platform.payloads.items() if v == vin}

        # The platform is down: nobody acks, the car keeps its messages.
        await eventually(lambda: car.pending >= 10)
        async with FakePlatform(broker.port) as platform:
            last = car.stats().sent
            await eventually(lambda: set(range(1, last + 1)) <= car.ledger.acked)
        received |= {
            seq: received.get(seq, set()) | p for (v, seq), p in platform.payloads.items() if v == vin
        }

        # The broker is down and comes back empty (no persistence): the car reconnects and resubscribes.
        await broker.stop()
        await eventually(lambda: not car.connected)
        await eventually(lambda: car.pending >= 10)
        await broker.start()
        async with FakePlatform(broker.port) as platform:
            last = car.stats().sent
            await eventually(lambda: set(range(1, last + 1)) <= car.ledger.acked)
            assert car.connected
        received |= {
            seq: received.get(seq, set()) | p for (v, seq), p in platform.payloads.items() if v == vin
        }

    assert set(range(1, last + 1)) <= set(received)
    assert car.stats().resent > 0
    # A message sent again carries its original seq and content.
    assert all(len(payloads) == 1 for payloads in received.values())


async def test_fleet_runs_every_car_and_adds_up_their_counters(broker: BrokerUnderTest) -> None:
    rng = random.Random(5)
    cars = [
        CarIdentity(make_vin(rng), f"pw-{i}", model)
        for i, model in enumerate(["smartev S1", "smartev X1"] * 2)
    ]
    start = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # Monday morning: some cars are on the road
    fleet = Fleet(
        cars,
        mqtt_host="127.0.0.1",
        mqtt_port=broker.port,
        seed=3,
        speed=60.0,
        report_interval_s=0.2,
        start=start,
    )
    assert fleet.vins == [c.vin for c in cars]
    assert fleet.car(cars[0].vin).model.spec.name == "smartev S1"
    async with FakePlatform(broker.port) as platform, running(fleet):
        await eventually(lambda: fleet.stats().connected == 4)
        await eventually(lambda: all(len(platform.seqs(c.vin)) >= 3 for c in cars))
        stats = fleet.stats()
        assert stats.cars == 4 and stats.sent >= 12 and stats.errors == 0
        assert stats.acked == sum(len(fleet.car(c.vin).ledger.acked) for c in cars)
        first_ts = platform.telemetry[0][1]["samples"][0]["ts"]
        assert first_ts.startswith("2026-11-23T07:0")  # simulated time, from the given start
    assert fleet.stats().connected == 0


def test_fleet_refuses_duplicate_vins_and_unknown_models() -> None:
    one = identity()
    with pytest.raises(ValueError, match="twice"):
        Fleet([one, one], mqtt_host="127.0.0.1", mqtt_port=1)
    with pytest.raises(ValueError, match="known models: smartev S1"):
        Fleet([CarIdentity(one.vin, "pw", "Trabant 601")], mqtt_host="127.0.0.1", mqtt_port=1)
    assert "car-password" not in repr(one)


async def test_a_car_that_cannot_reach_its_broker_keeps_driving_and_stops_when_cancelled() -> None:
    car = SimulatedCar(
        identity(3), mqtt_host="127.0.0.1", mqtt_port=free_port(), report_interval_s=0.05, speed=60.0
    )
    async with running(car) as task:
        await eventually(lambda: car.pending >= 5)  # messages wait in the outbox for a broker
        assert not car.connected
    assert task.cancelled()
    assert car.stats().acked == 0


def test_fault_rate_gives_cars_faults_within_their_first_week() -> None:
    def faulty_after_a_week(rate: float, n: int) -> int:
        count = 0
        for i in range(n):
            identity = CarIdentity(f"SEVFAULT{i:09d}", "pw")
            car = SimulatedCar(identity, mqtt_host="127.0.0.1", mqtt_port=1, fault_rate=rate, seed=3)
            car.model.step(8 * 24 * 3600.0)
            count += bool(car.model.faults)
        return count

    assert faulty_after_a_week(1.0, 5) == 5
    assert faulty_after_a_week(0.0, 5) == 0
