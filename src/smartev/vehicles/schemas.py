"""Request and response bodies of the vehicles API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class VehicleCreate(BaseModel):
    """An operator registers a car for an owner."""

    model_config = ConfigDict(extra="forbid")

    vin: str = Field(max_length=64, description="17 characters, ISO 3779, with a correct check digit")
    model: str = Field(min_length=1, max_length=100)
    owner: str = Field(min_length=3, max_length=254, description="the owner's email")


class VehicleOut(BaseModel):
    """A car as its owner and operators see it."""

    vin: str
    model: str
    owner: str | None = None
    online: bool
    last_seen: datetime | None


class VehicleRegistered(VehicleOut):
    """A newly registered car with its MQTT credentials (the password is shown only this once)."""

    mqtt_url: str
    mqtt_username: str
    mqtt_password: str


class SignalValue(BaseModel):
    """The twin's newest value of one signal."""

    value: Any
    ts: datetime


class VehicleState(BaseModel):
    """The live twin of one car."""

    vin: str
    online: bool
    last_seen: datetime | None
    signals: dict[str, SignalValue]


class HistoryPoint(BaseModel):
    """One point of a signal's history (a bucket's mean or last value when downsampled)."""

    ts: datetime
    value: Any


class History(BaseModel):
    """A signal's history over a period."""

    path: str
    start: datetime
    end: datetime
    interval: float | None = Field(None, description="bucket size in seconds when downsampled")
    aggregate: str | None = Field(None, description="mean (numbers) or last (others) when downsampled")
    truncated: bool = Field(
        description="true when more points exist than were returned: narrow or downsample"
    )
    points: list[HistoryPoint]


class CommandCreate(BaseModel):
    """A remote command request."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=32, description="lock, unlock, climate, charge or honk_flash")
    args: dict[str, Any] = Field(default_factory=dict)
    ttl_s: int | None = Field(None, ge=1, le=86_400, description="seconds until it expires unanswered")


class CommandOut(BaseModel):
    """A remote command and where it stands."""

    id: str
    vin: str
    name: str
    args: dict[str, Any]
    status: str = Field(description="queued, delivered, succeeded, failed, rejected or expired")
    detail: str | None
    created_at: datetime
    expires_at: datetime
    updated_at: datetime


class CommandEventOut(BaseModel):
    """One entry of a command's audit trail."""

    status: str
    detail: str | None
    actor: str
    at: datetime


class SignalInfo(BaseModel):
    """One signal of the VSS catalog."""

    path: str
    type: str
    datatype: str
    unit: str | None
    min: float | None
    max: float | None
    allowed: list[Any] | None
    description: str


class FleetSummary(BaseModel):
    """How many cars are in each state."""

    total: int
    online: int
    offline: int
    driving: int
    charging: int
    parked: int


class FleetCar(BaseModel):
    """One row of the fleet table."""

    vin: str
    model: str
    owner: str | None
    online: bool
    last_seen: datetime | None
    state: str = Field(description="driving, charging, parked or offline")
    soc: float | None = Field(description="state of charge, %")
    range_km: float | None
    speed: float | None = Field(description="km/h")
    lat: float | None
    lon: float | None


class FleetPage(BaseModel):
    """A page of the fleet table and how many cars matched in all."""

    total: int
    items: list[FleetCar]


class FleetPositions(BaseModel):
    """Every visible car with a known position, compact for maps of many cars: [vin, lat, lon, state]."""

    rows: list[list[str | float]]


class TelemetryErrorOut(BaseModel):
    """A signal or message the platform refused, and why."""

    at: datetime
    seq: int | None
    path: str
    reason: str
