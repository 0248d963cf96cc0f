"""Where the agent's signals come from, and what carries out its commands: one small interface.

A source reads the car (a CAN bus, the simulator, anything a user plugs in) and calls `emit` with VSS paths and
values whenever it has readings; the agent decides what of it is worth sending. Commands reach the source as
`actuate(name, args)` and come back as a `CommandOutcome`.

To plug in a source of your own, write a class with these two methods and a factory that builds it from its
`[source]` table of the agent's config, and name the factory in the config:

    [source]
    kind = "python"
    factory = "mypackage.mysource:make_source"   # called as make_source(options: dict) -> SignalSource
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple, Protocol

SignalValue = bool | int | float | str | list[str]
CommandStatus = Literal["succeeded", "failed", "rejected"]

Emit = Callable[[float, Mapping[str, SignalValue]], None]
"""Called by a source with the time of the readings (epoch seconds) and the VSS paths and values read."""


class CommandOutcome(NamedTuple):
    """What a command did: `succeeded`, `failed` (valid but not possible now) or `rejected` (invalid)."""

    status: CommandStatus
    detail: str


class SignalSource(Protocol):
    """Reads a car's signals and carries out its commands."""

    async def run(self, emit: Emit) -> None:
        """Read until cancelled, calling `emit` with each set of readings; raise only when the source is gone."""
        ...

    async def actuate(self, name: str, args: Mapping[str, Any]) -> CommandOutcome:
        """Carry out command `name` (lock, unlock, climate, charge, honk_flash) with its `args`."""
        ...


COMMAND_NAMES = ("lock", "unlock", "climate", "charge", "honk_flash")

LOCK = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"
AIR_CONDITIONING = "Vehicle.Cabin.HVAC.IsAirConditioningActive"
TARGET_TEMPERATURE = "Vehicle.Cabin.HVAC.Station.Row1.Driver.Temperature"
START_STOP_CHARGING = "Vehicle.Powertrain.TractionBattery.Charging.StartStopCharging"
CHARGE_LIMIT = "Vehicle.Powertrain.TractionBattery.Charging.ChargeLimit"
HORN = "Vehicle.Body.Horn.IsActive"
HAZARD = "Vehicle.Body.Lights.Hazard.IsSignaling"

MIN_TARGET_C, MAX_TARGET_C = 15.0, 30.0
MIN_CHARGE_LIMIT, MAX_CHARGE_LIMIT = 50, 100


def actuator_targets(name: str, args: Mapping[str, Any]) -> dict[str, SignalValue] | CommandOutcome:
    """The VSS actuator values a command asks for, or a `rejected` outcome saying what is wrong with it.

    For sources that act by writing actuators (a CAN bus); the simulator applies commands to its model directly.
    """
    if name not in COMMAND_NAMES:
        return CommandOutcome("rejected", f"unknown command {name!r}; known: {', '.join(COMMAND_NAMES)}")
    if not isinstance(args, Mapping):
        return CommandOutcome("rejected", "args must be a JSON object")
    allowed = {"climate": ("on", "target_temperature"), "charge": ("action", "limit")}.get(name, ())
    extra = sorted(str(k) for k in args if k not in allowed)
    if extra:
        if not allowed:
            return CommandOutcome("rejected", f"{name} takes no arguments, got {', '.join(extra)}")
        return CommandOutcome(
            "rejected", f"unexpected argument(s) {', '.join(extra)} for {name}; allowed: {', '.join(allowed)}"
        )
    if name in ("lock", "unlock"):
        return {LOCK: name == "lock"}
    if name == "honk_flash":
        return {HORN: True, HAZARD: True}
    if name == "climate":
        on = args.get("on")
        if not isinstance(on, bool):
            return CommandOutcome("rejected", "climate needs 'on': true or false")
        targets: dict[str, SignalValue] = {AIR_CONDITIONING: on}
        target = args.get("target_temperature")
        if target is not None:
            if isinstance(target, bool) or not isinstance(target, int | float) or not math.isfinite(target):
                return CommandOutcome("rejected", "target_temperature must be a number in °C")
            if not MIN_TARGET_C <= target <= MAX_TARGET_C:
                return CommandOutcome(
                    "rejected", f"target_temperature must be between {MIN_TARGET_C:g} and {MAX_TARGET_C:g} °C"
                )
            targets[TARGET_TEMPERATURE] = float(target)
        return targets
    # charge
    if not args:
        return CommandOutcome("rejected", "charge needs 'action' (start or stop), 'limit' or both")
    targets = {}
    limit = args.get("limit")
    if limit is not None:
        if type(limit) is not int:
            return CommandOutcome("rejected", "limit must be a whole number of percent")
        if not MIN_CHARGE_LIMIT <= limit <= MAX_CHARGE_LIMIT:
            return CommandOutcome(
                "rejected", f"limit must be between {MIN_CHARGE_LIMIT} and {MAX_CHARGE_LIMIT} percent"
            )
        targets[CHARGE_LIMIT] = limit
    action = args.get("action")
    if action is not None:
        if action not in ("start", "stop"):
            return CommandOutcome("rejected", "action must be 'start' or 'stop'")
        targets[START_STOP_CHARGING] = "START" if action == "start" else "STOP"
    return targets
