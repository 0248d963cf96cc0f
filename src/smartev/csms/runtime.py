"""What the OCPP adapters share: the services, the clock and the settings they answer with."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from smartev.clock import Clock
from smartev.csms.control import rfc3339
from smartev.csms.sessions import ChargeSessions
from smartev.csms.stations import Stations
from smartev.events import ConnectorStatusChanged, EventBus

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """The services behind every station connection."""

    stations: Stations
    sessions: ChargeSessions
    bus: EventBus
    clock: Clock
    heartbeat_interval_s: int = 300
    response_timeout_s: float = 30.0
    firmware: dict[str, str] = field(default_factory=dict)  # station id -> last firmware status

    def now_text(self) -> str:
        """The current time as OCPP writes it."""
        return rfc3339(self.clock.now())

    def connector_status(
        self,
        station_id: str,
        evse_id: int,
        connector_id: int,
        status: str,
        error_code: str | None,
        at_ms: int,
    ) -> None:
        """Record a connector's status and tell whoever listens."""
        self.stations.connector_status(station_id, evse_id, connector_id, status, error_code, at_ms)
        self.bus.publish(ConnectorStatusChanged(station_id, evse_id, connector_id, status))

    def firmware_status(self, station_id: str, status: str) -> None:
        """A firmware update's progress as the station reports it."""
        self.firmware[station_id] = status
        logger.info("station %s firmware update: %s", station_id, status)
