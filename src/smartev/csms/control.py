"""What the central system can ask of a connected station, whatever its OCPP version (the `ChargerControl` port).

The API, and later smart charging, call these; the 1.6 and 2.0.1 adapters translate them into their CALLs.
Results are the station's own status words (Accepted, Rejected, ...), so a user sees what the station said.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from smartev.csms.sessions import Reading

ResetKind = Literal["soft", "hard"]


@dataclass(frozen=True, slots=True)
class ChargingLimit:
    """A power or current limit for one EVSE (0 = the whole station), optionally for a while only."""

    limit: float
    unit: Literal["W", "A"] = "W"
    evse_id: int = 0
    duration_s: int | None = None
    purpose: Literal["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"] = "TxDefaultProfile"
    transaction_id: str | None = None
    profile_id: int = 1
    stack_level: int = 0


class ChargerControl(Protocol):
    """Operations on one connected station."""

    version: str

    async def remote_start(self, id_tag: str, evse_id: int | None, remote_start_id: int) -> str:
        """Ask the station to start charging for `id_tag`."""

    async def remote_stop(self, transaction_id: str) -> str:
        """Ask the station to stop one of its transactions."""

    async def reset(self, kind: ResetKind) -> str:
        """Reboot the station (soft: after transactions end gracefully)."""

    async def unlock(self, evse_id: int, connector_id: int) -> str:
        """Release a stuck cable."""

    async def change_availability(self, evse_id: int, operative: bool) -> str:
        """Take an EVSE (0 = the station) in or out of service."""

    async def get_configuration(self, keys: list[str] | None) -> dict[str, Any]:
        """Read configuration keys / variables (all when `keys` is None)."""

    async def set_configuration(self, key: str, value: str) -> str:
        """Write one configuration key / variable."""

    async def trigger(self, message: str, evse_id: int | None) -> str:
        """Ask the station to send a message now (e.g. StatusNotification, MeterValues)."""

    async def set_charging_limit(self, limit: ChargingLimit) -> str:
        """Send a charging profile that caps power or current."""

    async def clear_charging_limit(self, evse_id: int | None, profile_id: int | None) -> str:
        """Remove charging profiles."""

    async def composite_schedule(self, evse_id: int, duration_s: int, unit: str | None) -> dict[str, Any]:
        """The limits the station will apply over the next `duration_s`."""

    async def update_firmware(self, location: str, retrieve_at: datetime, request_id: int) -> str:
        """Tell the station to download and install firmware from `location`."""

    async def reserve(self, reservation_id: int, evse_id: int, id_tag: str, expires_at: datetime) -> str:
        """Hold an EVSE for `id_tag` until `expires_at`."""

    async def cancel_reservation(self, reservation_id: int) -> str:
        """Release a reservation."""

    async def send_local_list(self, version: int, entries: list[tuple[str, str]]) -> str:
        """Replace the station's local authorisation list with (tag, status) entries."""


def rfc3339(at: datetime) -> str:
    """OCPP's timestamp format, UTC with milliseconds."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def timestamp_ms(text: str | None, default_ms: int) -> int:
    """An OCPP timestamp as epoch ms; `default_ms` when absent."""
    if not text:
        return default_ms
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # OCPP requires UTC; some stations omit the Z
    return int(at.timestamp() * 1000)


ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
SOC = "SoC"
_SCALE = {"Wh": 1.0, "kWh": 1000.0, "W": 1.0, "kW": 1000.0, "Percent": 1.0}


def reading(ts_ms: int, values: list[tuple[str, str | None, float, str | None]]) -> Reading:
    """One Reading from (measurand, phase, value, unit) tuples: totals win over per-phase sums."""
    totals: dict[str, float] = {}
    phases: dict[str, float] = {}
    for measurand, phase, value, unit in values:
        scaled = value * _SCALE.get(unit or "", 1.0)
        if phase is None:
            totals[measurand] = scaled
        elif phase in ("L1", "L2", "L3", "L1-N", "L2-N", "L3-N"):
            phases[measurand] = phases.get(measurand, 0.0) + scaled
    merged = {**phases, **totals}
    return Reading(ts_ms, merged.get(ENERGY), merged.get(POWER), merged.get(SOC))
