"""Request and response bodies of the charging API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class StationCreate(BaseModel):
    """An operator registers a station; `owner` makes it someone's home charger."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="the OCPP identity, the last segment of the station's URL")
    owner: str | None = Field(None, description="email of the owner, for a home charger")
    password: str | None = Field(None, description="16-40 characters; a random one is made when absent")
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    tariff: str | None = Field(None, description="name of the tariff this station charges")


class ConnectorOut(BaseModel):
    """One connector's live status."""

    evse_id: int
    connector_id: int
    status: str
    error_code: str | None
    updated_at: datetime


class StationOut(BaseModel):
    """A station as the API shows it."""

    id: str
    owner: str | None
    online: bool
    status: str = Field(description="online, offline, or faulted (a connector reports a fault)")
    protocol: str | None
    vendor: str | None
    model: str | None
    serial: str | None
    firmware: str | None
    firmware_status: str | None = None
    latitude: float | None
    longitude: float | None
    tariff: str | None
    last_heartbeat: datetime | None
    last_boot: datetime | None
    connectors: list[ConnectorOut]


class StationRegistered(StationOut):
    """A new station with its Basic-auth password, shown once, and the URL to configure it with."""

    password: str
    ocpp_url: str


class StationPassword(BaseModel):
    """A new Basic-auth password for a station (shown once)."""

    password: str


class RemoteStart(BaseModel):
    """Start charging on a station, for a car (VIN, autocharge) or an id tag."""

    model_config = ConfigDict(extra="forbid")

    vin: str | None = None
    id_tag: str | None = None
    evse_id: int | None = Field(None, ge=1)


class RemoteStop(BaseModel):
    """Stop a session on a station (its transaction id; the only active one when absent)."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: str | None = None


class Problem(BaseModel):
    """Why a request failed, in words."""

    detail: str


class StationAnswer(BaseModel):
    """What the station answered."""

    status: str
    detail: dict[str, Any] | None = None


class ResetRequest(BaseModel):
    """Reboot a station."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["soft", "hard"] = "soft"


class UnlockRequest(BaseModel):
    """Release a cable."""

    model_config = ConfigDict(extra="forbid")

    evse_id: int = Field(1, ge=1)
    connector_id: int = Field(1, ge=1)


class AvailabilityRequest(BaseModel):
    """Take an EVSE (0: the whole station) in or out of service."""

    model_config = ConfigDict(extra="forbid")

    evse_id: int = Field(0, ge=0)
    operative: bool


class TriggerRequest(BaseModel):
    """Ask the station to send a message now."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(description="e.g. BootNotification, Heartbeat, StatusNotification, MeterValues")
    evse_id: int | None = Field(None, ge=0)


class ChargingProfileRequest(BaseModel):
    """Cap the power (W) or current (A) of an EVSE (0: the whole station)."""

    model_config = ConfigDict(extra="forbid")

    limit: float = Field(gt=0)
    unit: Literal["W", "A"] = "W"
    evse_id: int = Field(0, ge=0)
    duration_s: int | None = Field(None, gt=0)
    purpose: Literal["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"] = "TxDefaultProfile"
    transaction_id: str | None = None


class FirmwareRequest(BaseModel):
    """Install firmware from a URL."""

    model_config = ConfigDict(extra="forbid")

    location: str = Field(min_length=8, max_length=512, description="where the station downloads it from")
    retrieve_at: datetime | None = None


class ConfigurationChange(BaseModel):
    """Write configuration keys (1.6: key names; 2.0.1: Component.Variable)."""

    model_config = ConfigDict(extra="forbid")

    values: dict[str, str] = Field(min_length=1)


class ReservationRequest(BaseModel):
    """Hold an EVSE for an id tag until a time."""

    model_config = ConfigDict(extra="forbid")

    evse_id: int = Field(1, ge=0)
    id_tag: str
    expires_at: datetime
    reservation_id: int | None = Field(None, ge=1)


class IdTagCreate(BaseModel):
    """An RFID card or a car identity (EVCCID/MAC) that may charge."""

    model_config = ConfigDict(extra="forbid")

    tag: str
    kind: Literal["rfid", "vin", "evccid", "emaid", "other"] = "rfid"
    owner: str | None = None
    vin: str | None = None
    expires_at: datetime | None = None


class IdTagOut(BaseModel):
    """An id tag."""

    tag: str
    kind: str
    owner: str | None
    vin: str | None
    blocked: bool
    expires_at: datetime | None


class TariffCreate(BaseModel):
    """A named tariff (prices as decimal strings or numbers; periods with HH:MM start/end)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    tariff: dict[str, Any]


class TariffOut(BaseModel):
    """A tariff."""

    id: int
    name: str
    tariff: dict[str, Any]


class SessionOut(BaseModel):
    """A charging session, with the charger's energy next to the car's battery energy and the cost."""

    id: int
    station: str
    transaction_id: str
    evse_id: int
    connector_id: int
    status: str
    vin: str | None
    linked_by: str | None = Field(None, description="id_tag, or telemetry (the car said it charged there)")
    id_tag: str | None
    start: datetime
    stop: datetime | None
    duration_s: float | None
    energy_wh: float
    car_energy_wh: float | None
    power_w: float | None
    soc_start: float | None
    soc_stop: float | None
    stop_reason: str | None = Field(
        description="the station's reason; DeAuthorized (Blocked) and the like when the id tag was refused, "
        "set from the start: such a session stays active until the station stops it"
    )
    cost: str | None
    currency: str | None
    cost_breakdown: dict[str, Any] | None
    offline: bool


class MeterSampleOut(BaseModel):
    """One meter reading."""

    ts: datetime
    energy_wh: float
    power_w: float | None
    soc: float | None


class SessionDetail(SessionOut):
    """A session with its meter readings."""

    samples: list[MeterSampleOut]
