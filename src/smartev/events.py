"""A small typed in-process publish/subscribe bus connecting bounded contexts.

Subscribers are synchronous callables that must not block: a live view puts events on its own bounded queue
and drops the oldest when full (live views want the newest), so a slow client never slows ingest.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class SignalsChanged:
    """New, newer-than-twin values for one vehicle, after they were committed to history."""

    vin: str
    signals: dict[str, tuple[Any, int]]  # path -> (value, ts_ms)


@dataclass(frozen=True, slots=True)
class VehicleConnectivityChanged:
    """A vehicle went online or offline."""

    vin: str
    online: bool
    at_ms: int


@dataclass(frozen=True, slots=True)
class CommandStatusChanged:
    """A remote command moved to a new status."""

    vin: str
    command_id: str
    name: str
    status: str
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class StationConnectivityChanged:
    """A charging station connected or disconnected."""

    station_id: str
    online: bool
    at_ms: int


@dataclass(frozen=True, slots=True)
class ConnectorStatusChanged:
    """A station's connector reported a new status (Available, Charging, Faulted, ...)."""

    station_id: str
    evse_id: int
    connector_id: int
    status: str


@dataclass(frozen=True, slots=True)
class ChargeSessionStarted:
    """A charging transaction was stored as started."""

    station_id: str
    transaction_id: str
    vin: str | None
    at_ms: int


@dataclass(frozen=True, slots=True)
class ChargeSessionUpdated:
    """New meter values of a running transaction were stored."""

    station_id: str
    transaction_id: str
    vin: str | None
    energy_wh: float
    power_w: float | None
    soc: float | None


@dataclass(frozen=True, slots=True)
class ChargeSessionEnded:
    """A charging transaction was stored as ended, with its energy and cost."""

    station_id: str
    transaction_id: str
    vin: str | None
    at_ms: int
    energy_wh: float
    cost: str | None


@dataclass
class EventBus:
    """Typed publish/subscribe; `publish` never awaits and never raises into the publisher."""

    _handlers: dict[type[Any], list[Callable[[Any], None]]] = field(default_factory=lambda: defaultdict(list))

    def subscribe(self, event_type: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        """Call `handler` for every event of this type; returns a function that unsubscribes."""
        self._handlers[event_type].append(handler)

        def unsubscribe() -> None:
            try:
                self._handlers[event_type].remove(handler)
            except ValueError:
                pass

        return unsubscribe

    def publish(self, event: object) -> None:
        """Deliver `event` to its type's subscribers; a failing subscriber is logged, not propagated."""
        for handler in list(self._handlers.get(type(event), ())):
            try:
                handler(event)
            except Exception:
                logger.exception("event handler %r failed for %s", handler, type(event).__name__)
