"""The ports through which the vehicles context talks to cars, implemented by adapters in `transport/`."""

from __future__ import annotations

from typing import Any, Protocol


class VehicleLink(Protocol):
    """Sends messages to cars; the MQTT adapter is the real one."""

    async def send_ack(self, vin: str, seq: int) -> None:
        """Tell the car that telemetry message `seq` is durably stored."""
        ...

    async def send_errors(self, vin: str, seq: int | None, errors: list[dict[str, str]]) -> None:
        """Tell the car what was rejected in message `seq` (None: the message could not be read)."""
        ...

    async def send_command(self, vin: str, command: dict[str, Any]) -> None:
        """Deliver a command to the car (QoS 1, never retained); raises if the broker did not take it."""
        ...
