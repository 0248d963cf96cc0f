"""The CAN source on python-can's virtual bus: frames in, VSS values out in VSS units; commands out, confirmed by
the car (the demo ECU) or failed with a reason."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import can
import cantools
import pytest
from cantools.database.can import Database

from smartev.agent.can import (
    DEMO_DBC,
    DEMO_MAPPING,
    CanBusUnavailable,
    CanConfigError,
    CanMapping,
    CanSource,
    DemoEcu,
    from_options,
    unit_conversion,
)
from smartev.agent.source import SignalValue

SPEED = "Vehicle.Speed"
ODOMETER = "Vehicle.TraveledDistance"
OUTSIDE = "Vehicle.Exterior.AirTemperature"
SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
VOLTAGE = "Vehicle.Powertrain.TractionBattery.CurrentVoltage"
CURRENT = "Vehicle.Powertrain.TractionBattery.CurrentCurrent"
PACK_TEMP = "Vehicle.Powertrain.TractionBattery.Temperature.Average"
IS_CHARGING = "Vehicle.Powertrain.TractionBattery.Charging.IsCharging"
START_STOP = "Vehicle.Powertrain.TractionBattery.Charging.StartStopCharging"
CHARGE_LIMIT = "Vehicle.Powertrain.TractionBattery.Charging.ChargeLimit"
LOCKED = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"
HORN = "Vehicle.Body.Horn.IsActive"
HAZARD = "Vehicle.Body.Lights.Hazard.IsSignaling"


class Emitted:
    """What a source emitted, in order: (time, values)."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, dict[str, SignalValue]]] = []

    def __call__(self, ts: float, values: Mapping[str, SignalValue]) -> None:
        self.batches.append((ts, dict(values)))

    def latest(self, path: str) -> SignalValue | None:
        return next((values[path] for _, values in reversed(self.batches) if path in values), None)


async def eventually(predicate: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(source: CanSource) -> AsyncIterator[Emitted]:
    """The source reading its bus; on leaving, checks that it was still running (nothing killed it)."""
    emitted = Emitted()
    task = asyncio.create_task(source.run(emitted))
    opened = asyncio.create_task(source.opened.wait())
    await asyncio.wait([task, opened], timeout=5, return_when=asyncio.FIRST_COMPLETED)
    opened.cancel()
    if task.done():
        task.result()  # raises what run raised
    assert source.opened.is_set()
    try:
        yield emitted
    finally:
        assert not task.done(), "the source stopped"
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def demo_car(channel: str) -> AsyncIterator[DemoEcu]:
    bus = can.Bus(interface="virtual", channel=channel)
    ecu = DemoEcu(bus, period=0.02)
    task = asyncio.create_task(ecu.run())
    try:
        yield ecu
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        bus.shutdown()


@pytest.fixture
def channel() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def db() -> Database:
    database = cantools.database.load_file(DEMO_DBC)
    assert isinstance(database, Database)
    return database


@pytest.fixture
def car_bus(channel: str) -> Iterator[can.BusABC]:
    """The car's side of the bus: the test sends status frames here."""
    bus = can.Bus(interface="virtual", channel=channel)
    yield bus
    bus.shutdown()


@pytest.fixture
def sniffer(channel: str) -> Iterator[can.BusABC]:
    """Another node on the bus that sees the frames the source sends."""
    bus = can.Bus(interface="virtual", channel=channel)
    yield bus
    bus.shutdown()


def frame(db: Database, name: str, data: bytes | None = None, **signals: Any) -> can.Message:
    message = db.get_message_by_name(name)
    return can.Message(
        arbitration_id=message.frame_id,
        is_extended_id=False,
        data=message.encode(signals) if data is None else data,
    )


def sent(bus: can.BusABC, db: Database, name: str) -> list[dict[str, Any]]:
    """The decoded frames of message `name` that reached `bus` so far."""
    message = db.get_message_by_name(name)
    found: list[dict[str, Any]] = []
    while (msg := bus.recv(0)) is not None:
        if msg.arbitration_id == message.frame_id:
            found.append(dict(message.decode_simple(bytes(msg.data))))
    return found


# --- reading ----------------------------------------------------------------------------------------------------


async def test_status_frames_become_vss_values_in_vss_units(
    channel: str, car_bus: can.BusABC, db: Database
) -> None:
    source = CanSource(DEMO_MAPPING, "virtual", channel)
    async with running(source) as emitted:
        before = time.time()
        car_bus.send(frame(db, "VCU_Status", VehicleSpeed=62.1371, Odometer=12345.6, OutsideTemp=50))
        car_bus.send(frame(db, "BMS_Status", SoC=64.3, PackVoltage=396.5, PackCurrent=50.0, PackTemp=77))
        await eventually(lambda: len(emitted.batches) == 2)
        after = time.time()
    (vcu_time, vcu), (bms_time, bms) = emitted.batches
    assert before <= vcu_time <= bms_time <= after  # the frames' own timestamps, epoch seconds
    assert vcu[SPEED] == pytest.approx(100.0, abs=0.01)  # mph → km/h
    assert vcu[ODOMETER] == round(12345.6 * 1609.344)  # miles → metres, a whole number (uint32)
    assert type(vcu[ODOMETER]) is int
    assert vcu[OUTSIDE] == pytest.approx(10.0)  # 50 °F
    assert bms == pytest.approx(
        # the car counts discharging as positive, VSS charging; 77 °F = 25 °C
        {SOC: 64.3, VOLTAGE: 396.5, CURRENT: -50.0, PACK_TEMP: 25.0}
    )


@pytest.mark.parametrize(
    ("state", "is_charging", "start_stop"),
    [("Charging", True, "START"), ("Complete", False, "STOP"), ("Idle", False, "STOP")],
)
async def test_named_dbc_values_become_booleans_and_strings(
    channel: str, car_bus: can.BusABC, db: Database, state: str, is_charging: bool, start_stop: str
) -> None:
    source = CanSource(DEMO_MAPPING, "virtual", channel)
    async with running(source) as emitted:
        car_bus.send(frame(db, "BMS_Charge", ChargingState=state, ChargeLimit=80))
        car_bus.send(frame(db, "BCM_Status", DoorLockState="Locked", HornActive=0, HazardActive=1))
        await eventually(lambda: len(emitted.batches) == 2)
    assert emitted.batches[0][1] == {IS_CHARGING: is_charging, START_STOP: start_stop, CHARGE_LIMIT: 80}
    assert emitted.batches[1][1] == {LOCKED: True, HORN: False, HAZARD: True}


async def test_values_the_car_marks_not_available_are_left_out(
    channel: str, car_bus: can.BusABC, db: Database
) -> None:
    source = CanSource(DEMO_MAPPING, "virtual", channel)
    async with running(source) as emitted:
        car_bus.send(frame(db, "VCU_Status", VehicleSpeed="SNA", Odometer=10.0, OutsideTemp=50))
        car_bus.send(frame(db, "BMS_Charge", ChargingState="SNA", ChargeLimit=80))
        car_bus.send(frame(db, "BCM_Status", DoorLockState="SNA", HornActive=0, HazardActive=0))
        await eventually(lambda: len(emitted.batches) == 3)
    assert [set(values) for _, values in emitted.batches] == [
        {ODOMETER, OUTSIDE},
        {CHARGE_LIMIT},
        {HORN, HAZARD},
    ]


async def test_an_undecodable_frame_is_counted_and_logged_once_and_the_next_good_frame_arrives(
    channel: str, car_bus: can.BusABC, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    source = CanSource(DEMO_MAPPING, "virtual", channel)
    good = frame(db, "VCU_Status", VehicleSpeed=30.0, Odometer=10.0, OutsideTemp=50)
    with caplog.at_level(logging.WARNING, logger="smartev.agent.can"):
        async with running(source) as emitted:
            car_bus.send(frame(db, "VCU_Status", data=bytes(good.data[:3])))  # 3 of its 8 bytes
            car_bus.send(frame(db, "VCU_Status", data=bytes(good.data[:5])))
            car_bus.send(good)
            await eventually(lambda: emitted.batches)
    assert source.stats.frames_undecodable == {0x100: 2}
    assert [values[SPEED] for _, values in emitted.batches] == [pytest.approx(48.28, abs=0.01)]
    warnings = [r.getMessage() for r in caplog.records if "cannot be decoded" in r.getMessage()]
    assert len(warnings) == 1
    assert "VCU_Status (0x100, 3 bytes)" in warnings[0]


async def test_frames_the_mapping_does_not_read_are_ignored(
    channel: str, car_bus: can.BusABC, db: Database
) -> None:
    source = CanSource(DEMO_MAPPING, "virtual", channel)
    async with running(source) as emitted:
        car_bus.send(can.Message(arbitration_id=0x7FF, is_extended_id=False, data=b"\xff" * 8))
        car_bus.send(
            can.Message(arbitration_id=0x100, is_extended_id=True, data=b"\xff" * 8)
        )  # not VCU_Status
        car_bus.send(frame(db, "BCM_Command", LockRequest="Lock", HornRequest=0, HazardRequest=0))  # not read
        car_bus.send(frame(db, "HVAC_Status", HvacOn=1, TargetTemp=70))
        await eventually(lambda: emitted.batches)
        await asyncio.sleep(0.05)
    assert [set(values) for _, values in emitted.batches] == [
        {"Vehicle.Cabin.HVAC.IsAirConditioningActive", "Vehicle.Cabin.HVAC.Station.Row1.Driver.Temperature"}
    ]
    assert not source.stats.frames_undecodable


async def test_an_error_raised_by_emit_stops_the_source(
    channel: str, car_bus: can.BusABC, db: Database
) -> None:
    source = CanSource(DEMO_MAPPING, "virtual", channel)

    def emit(ts: float, values: Mapping[str, SignalValue]) -> None:
        raise ValueError("the agent could not take it")

    task = asyncio.create_task(source.run(emit))
    await asyncio.wait_for(source.opened.wait(), 5)
    car_bus.send(frame(db, "HVAC_Status", HvacOn=1, TargetTemp=70))
    with pytest.raises(ValueError, match="could not take it"):
        await asyncio.wait_for(task, 5)
    assert not source.opened.is_set()


async def test_a_bus_that_cannot_be_opened_raises_can_bus_unavailable() -> None:
    source = CanSource(DEMO_MAPPING, "socketcan", "nosuchcan0")
    with pytest.raises(CanBusUnavailable, match="cannot open CAN bus socketcan:nosuchcan0"):
        await source.run(Emitted())


@pytest.mark.parametrize(
    ("value", "from_unit", "to_unit", "expected"),
    [
        (62.1371, "mph", "km/h", 100.0),
        (10.0, "m/s", "km/h", 36.0),
        (212.0, "degF", "Celsius", 100.0),
        (-40.0, "°F", "Celsius", -40.0),
        (273.15, "K", "Celsius", 0.0),
        (1.0, "mi", "m", 1609.344),
        (2.5, "km", "m", 2500.0),
        (1.0, "psi", "kPa", 6.894757),
        (2.5, "bar", "kPa", 250.0),
        (1500.0, "Wh", "kWh", 1.5),
        (7400.0, "W", "kW", 7.4),
        (55.0, "%", "percent", 55.0),
        (400.0, "V", "V", 400.0),
    ],
)
def test_unit_conversion(value: float, from_unit: str, to_unit: str, expected: float) -> None:
    conversion = unit_conversion(from_unit, to_unit)
    assert conversion is not None
    factor, offset = conversion
    assert value * factor + offset == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("from_unit", "to_unit"), [("psi", "km/h"), ("degF", "m"), ("rpm", "km/h"), ("kW", "kWh")]
)
def test_units_of_different_things_do_not_convert(from_unit: str, to_unit: str) -> None:
    assert unit_conversion(from_unit, to_unit) is None


# --- the mapping file -------------------------------------------------------------------------------------------


def speed(**extra: str) -> str:
    lines = [
        f"{k} = {v}" for k, v in {"message": '"VCU_Status"', "signal": '"VehicleSpeed"', **extra}.items()
    ]
    return '[signals."Vehicle.Speed"]\n' + "\n".join(lines)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            speed().replace("Vehicle.Speed", "Vehicle.Sped"),
            ['signals."Vehicle.Sped"', "unknown signal 'Vehicle.Sped'", "did you mean Vehicle.Speed?"],
            id="unknown-vss-path",
        ),
        pytest.param(
            speed().replace("Vehicle.Speed", "Vehicle.Cabin"), ["Vehicle.Cabin is a branch"], id="vss-branch"
        ),
        pytest.param(
            speed(signal='"Speed"'),
            ["signal: no signal 'Speed' in VCU_Status", "it has: VehicleSpeed, Odometer, OutsideTemp"],
            id="unknown-dbc-signal",
        ),
        pytest.param(
            speed(message='"VCU_Stat"'),
            ["message: no message 'VCU_Stat'", "VCU_Status, BMS_Status"],
            id="unknown-message",
        ),
        pytest.param(speed(message="0x123"), ["no message 0x123 in the DBC"], id="unknown-frame-id"),
        pytest.param(
            speed(unit='"psi"'),
            [
                'signals."Vehicle.Speed".unit',
                "'psi' cannot be converted to 'km/h'",
                "units that can: km/h, m/s, mph",
            ],
            id="unit-not-convertible",
        ),
        pytest.param(
            speed(signal='"OutsideTemp"'),
            [
                "the DBC gives VCU_Status.OutsideTemp the unit 'degF'",
                "'km/h'",
                'give the real unit with unit = "',
            ],
            id="dbc-unit-not-convertible",
        ),
        pytest.param(
            speed().replace("signals", "actuators"),
            ["Vehicle.Speed is a sensor in VSS; only actuators can be written"],
            id="sensor-as-actuator",
        ),
        pytest.param(speed(sigal='"x"'), ["sigal: unknown key; allowed: message, signal"], id="unknown-key"),
        pytest.param(
            speed(scale='"2"'), ['signals."Vehicle.Speed".scale: must be a number'], id="scale-not-a-number"
        ),
        pytest.param(
            speed(values="{ true = 1 }"), ["values applies to booleans and strings"], id="values-on-a-number"
        ),
        pytest.param(
            f'[signals."{START_STOP}"]\nmessage = "BMS_Charge"\nsignal = "ChargingState"\n'
            'values = { START = "Charging", STPO = "Idle" }',
            ["values.STPO: 'STPO' is not a value of", "VSS allows: START, STOP"],
            id="value-vss-does-not-allow",
        ),
        pytest.param(
            f'[signals."{LOCKED}"]\nmessage = "BCM_Status"\nsignal = "DoorLockState"\nvalues = {{ true = "Lockd" }}',
            ["BCM_Status.DoorLockState has no named value 'Lockd'", "it has: Unlocked, Locked, SNA"],
            id="unknown-dbc-named-value",
        ),
        pytest.param(
            f'[signals."{START_STOP}"]\nmessage = "BMS_Status"\nsignal = "SoC"',
            ["is a string in VSS but BMS_Status.SoC has no named values in the DBC"],
            id="string-without-named-values",
        ),
        pytest.param("", ["maps nothing"], id="empty"),
    ],
)
def test_mapping_file_errors_name_the_file_the_key_and_the_problem(
    tmp_path: Path, body: str, expected: list[str]
) -> None:
    file = tmp_path / "car.toml"
    file.write_text(f'dbc = "{DEMO_DBC}"\n{body}\n', encoding="utf-8")
    with pytest.raises(CanConfigError) as error:
        CanMapping.load(file)
    message = str(error.value)
    assert message.startswith(f"{file}: ")
    for part in expected:
        assert part in message


def test_a_missing_dbc_file_is_named(tmp_path: Path) -> None:
    file = tmp_path / "car.toml"
    file.write_text(f'dbc = "nope.dbc"\n{speed()}\n', encoding="utf-8")
    with pytest.raises(CanConfigError, match=f"dbc: no such file {tmp_path / 'nope.dbc'}"):
        CanMapping.load(file)


# --- commands ---------------------------------------------------------------------------------------------------


async def test_lock_and_unlock_are_sent_and_confirmed_by_the_car(
    channel: str, sniffer: can.BusABC, db: Database
) -> None:
    source = CanSource(DEMO_MAPPING, "virtual", channel)
    async with demo_car(channel), running(source) as emitted:
        unlocked = await source.actuate("unlock", {})
        assert unlocked == ("succeeded", f"the car confirmed {LOCKED} = false")
        assert emitted.latest(LOCKED) is False
        locked = await source.actuate("lock", {})
        assert locked == ("succeeded", f"the car confirmed {LOCKED} = true")
        assert emitted.latest(LOCKED) is True
    requests = sent(sniffer, db, "BCM_Command")
    assert [r["LockRequest"] for r in requests] == ["Unlock", "Lock"]
    assert all(r["HornRequest"] == 0 and r["HazardRequest"] == 0 for r in requests)


@pytest.mark.parametrize(
    ("command", "args", "message", "fields", "detail"),
    [
        (
            "climate",
            {"on": True, "target_temperature": 21.5},
            "HVAC_Command",
            {"HvacRequest": "On", "TargetTempRequest": 71},  # whole °F: 70.7 → 71
            "the car confirmed Vehicle.Cabin.HVAC.IsAirConditioningActive = true, "
            "Vehicle.Cabin.HVAC.Station.Row1.Driver.Temperature = 21.6667",  # 71 °F,
        ),
        (
            "charge",
            {"action": "start", "limit": 90},
            "Charge_Command",
            {"ChargeRequest": "Start", "ChargeLimitRequest": 90},
            f"the car confirmed {CHARGE_LIMIT} = 90, {START_STOP} = 'START'",
        ),
        (
            "charge",
            {"limit": 70},
            "Charge_Command",
            {"ChargeRequest": "NoRequest", "ChargeLimitRequest": 70},
            f"the car confirmed {CHARGE_LIMIT} = 70",
        ),
        (
            "honk_flash",
            {},
            "BCM_Command",
            {"LockRequest": "NoRequest", "HornRequest": 1, "HazardRequest": 1},
            "sent BCM_Command",  # momentary: not read back
        ),
    ],
)
async def test_commands_become_request_frames_and_the_car_confirms_them(
    channel: str,
    sniffer: can.BusABC,
    db: Database,
    command: str,
    args: dict[str, Any],
    message: str,
    fields: dict[str, Any],
    detail: str,
) -> None:
    source = CanSource(DEMO_MAPPING, "virtual", channel)
    async with demo_car(channel), running(source):
        outcome = await source.actuate(command, args)
    assert outcome == ("succeeded", detail)
    assert sent(sniffer, db, message) == [fields]


async def test_a_command_the_car_does_not_confirm_fails_after_the_timeout(
    channel: str, sniffer: can.BusABC, db: Database
) -> None:
    source = CanSource(DEMO_MAPPING, "virtual", channel, confirm_timeout=0.3)
    async with running(source):
        started = time.monotonic()
        outcome = await source.actuate("lock", {})
        waited = time.monotonic() - started
    assert outcome == ("failed", f"the car did not confirm {LOCKED} = true within 0.3 s (sent BCM_Command)")
    assert 0.3 <= waited < 2.0
    assert [r["LockRequest"] for r in sent(sniffer, db, "BCM_Command")] == ["Lock"]


async def test_a_command_fails_when_the_car_keeps_reporting_the_old_value(
    channel: str, car_bus: can.BusABC, db: Database
) -> None:
    async def stubborn_car() -> None:  # reports its doors unlocked whatever it is asked
        while True:
            car_bus.send(frame(db, "BCM_Status", DoorLockState="Unlocked", HornActive=0, HazardActive=0))
            await asyncio.sleep(0.02)

    source = CanSource(DEMO_MAPPING, "virtual", channel, confirm_timeout=0.3)
    async with running(source) as emitted:
        car = asyncio.create_task(stubborn_car())
        outcome = await source.actuate("lock", {})
        car.cancel()
    assert outcome == ("failed", f"the car did not confirm {LOCKED} = true within 0.3 s (sent BCM_Command)")
    assert emitted.latest(LOCKED) is False


@pytest.mark.parametrize(
    ("command", "args", "detail"),
    [
        ("lock", {"force": True}, "lock takes no arguments, got force"),
        (
            "climate",
            {"on": True, "target_temperature": 40},
            "target_temperature must be between 15 and 30 °C",
        ),
        ("charge", {"action": "go"}, "action must be 'start' or 'stop'"),
        ("open_trunk", {}, "unknown command 'open_trunk'"),
    ],
)
async def test_invalid_commands_are_rejected_and_nothing_is_sent(
    channel: str, sniffer: can.BusABC, command: str, args: dict[str, Any], detail: str
) -> None:
    source = CanSource(DEMO_MAPPING, "virtual", channel)
    async with running(source):
        outcome = await source.actuate(command, args)
    assert outcome.status == "rejected"
    assert detail in outcome.detail
    assert sniffer.recv(0.1) is None


async def test_a_command_the_car_has_no_mapping_for_fails_and_nothing_is_sent(
    tmp_path: Path, channel: str, sniffer: can.BusABC
) -> None:
    file = tmp_path / "car.toml"
    file.write_text(
        f'dbc = "{DEMO_DBC}"\n[actuators."{LOCKED}"]\nmessage = "BCM_Command"\nsignal = "LockRequest"\n'
        'values = { true = "Lock", false = "Unlock" }\n',
        encoding="utf-8",
    )
    source = CanSource(file, "virtual", channel)
    async with running(source):
        outcome = await source.actuate("honk_flash", {})
    assert outcome == ("failed", f"this car has no CAN mapping for {HORN}, {HAZARD}")
    assert sniffer.recv(0.1) is None


async def test_a_command_while_the_source_is_not_running_fails(channel: str) -> None:
    source = CanSource(DEMO_MAPPING, "virtual", channel)
    assert await source.actuate("lock", {}) == (
        "failed",
        "the CAN bus is not open (the CAN source is not running)",
    )


# --- the agent's config -----------------------------------------------------------------------------------------


def test_from_options_reads_the_source_table_with_paths_relative_to_the_config(tmp_path: Path) -> None:
    shutil.copy(DEMO_DBC, tmp_path / "smartev-demo.dbc")
    shutil.copy(DEMO_MAPPING, tmp_path / "my-car.toml")
    source = from_options(
        {
            "kind": "can",
            "mapping": "my-car.toml",
            "interface": "socketcan",
            "channel": "can0",
            "bitrate": 500000,
        },
        tmp_path,
    )
    assert (source.mapping.file, source.mapping.dbc_file) == (
        tmp_path / "my-car.toml",
        tmp_path / "smartev-demo.dbc",
    )
    assert (source.interface, source.channel, source.bitrate, source.confirm_timeout) == (
        "socketcan",
        "can0",
        500000,
        2.0,
    )


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"interface": "virtual", "channel": "x"}, "[source] mapping: missing"),
        (
            {"mapping": "demo", "interface": "socketcn", "channel": "can0"},
            "[source] interface: 'socketcn'; python-can knows:",
        ),
        ({"mapping": "demo", "channel": "can0"}, "[source] interface: missing"),
        ({"mapping": "demo", "interface": "socketcan"}, "[source] channel: missing"),
        ({"mapping": "demo", "interface": "socketcan", "chanel": "can0"}, "[source] chanel: unknown key"),
        (
            {"mapping": "demo", "interface": "socketcan", "channel": "can0", "bitrate": "500k"},
            "bitrate: must be",
        ),
        (
            {"mapping": "demo", "interface": "socketcan", "channel": "can0", "confirm_timeout": 0},
            "between 0 and 60",
        ),
        ({"kind": "sim", "mapping": "demo", "interface": "socketcan", "channel": "can0"}, "kind: is 'sim'"),
        (
            {"mapping": "absent.toml", "interface": "socketcan", "channel": "can0"},
            "cannot read the CAN mapping file",
        ),
    ],
)
def test_from_options_errors_name_the_key(tmp_path: Path, options: dict[str, Any], expected: str) -> None:
    with pytest.raises(CanConfigError) as error:
        from_options(options, tmp_path)
    assert expected in str(error.value)


async def test_the_demo_car_option_runs_the_agent_without_a_car(channel: str) -> None:
    source = from_options(
        {"kind": "can", "mapping": "demo", "interface": "virtual", "channel": channel, "demo_ecu": True},
        Path(),
    )
    async with running(source) as emitted:
        await eventually(lambda: emitted.latest(SOC) is not None)
        assert emitted.latest(SOC) == pytest.approx(64.0)
        assert await source.actuate("unlock", {}) == ("succeeded", f"the car confirmed {LOCKED} = false")
