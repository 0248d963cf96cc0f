"""Tables of the charging context: stations, their connectors, id tags, tariffs and charge sessions.

Time columns are epoch milliseconds (BIGINT), as in the vehicles context.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from smartev.db.base import Base


class Station(Base):
    """A charging station (charge point): identity, Basic-auth hash, what it told us at boot, liveness."""

    __tablename__ = "stations"

    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    protocol: Mapped[str | None] = mapped_column(String(16), nullable=True)
    vendor: Mapped[str | None] = mapped_column(String(50), nullable=True)
    model: Mapped[str | None] = mapped_column(String(50), nullable=True)
    serial: Mapped[str | None] = mapped_column(String(50), nullable=True)
    firmware: Mapped[str | None] = mapped_column(String(50), nullable=True)
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    tariff_id: Mapped[int | None] = mapped_column(ForeignKey("tariffs.id"), nullable=True)
    configuration: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON, last read from the station
    created_ms: Mapped[int] = mapped_column(BigInteger)
    last_boot_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_heartbeat_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)


class Connector(Base):
    """One connector's last reported status (1.6: connector N is EVSE N, connector 1)."""

    __tablename__ = "station_connectors"

    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), primary_key=True)
    evse_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connector_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class IdTag(Base):
    """An identifier a station may authorise: an owner's RFID card, or a car's VIN/EVCCID (autocharge)."""

    __tablename__ = "id_tags"

    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    vin: Mapped[str | None] = mapped_column(String(17), nullable=True)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    expiry_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class TariffRow(Base):
    """A named tariff; its prices live as JSON (`smartev.csms.tariffs.Tariff.to_dict`)."""

    __tablename__ = "tariffs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    data: Mapped[str] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class ChargeSession(Base):
    """One charging transaction, from start to stop, with its energy, the car that charged and the cost."""

    __tablename__ = "charge_sessions"
    __table_args__ = (
        UniqueConstraint("station_id", "transaction_id"),
        Index("ix_charge_sessions_vin_start", "vin", "start_ms"),
        Index("ix_charge_sessions_station_start", "station_id", "start_ms"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    transaction_id: Mapped[str] = mapped_column(String(64))
    # what makes a 1.6 StartTransaction replay (answer lost) find the session it already opened
    start_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    protocol: Mapped[str] = mapped_column(String(16))
    evse_id: Mapped[int] = mapped_column(Integer)
    connector_id: Mapped[int] = mapped_column(Integer)
    id_tag: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    vin: Mapped[str | None] = mapped_column(String(17), nullable=True)
    linked_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # active | ended
    start_ms: Mapped[int] = mapped_column(BigInteger)
    stop_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    meter_start_wh: Mapped[float] = mapped_column(Float)
    meter_last_wh: Mapped[float] = mapped_column(Float)
    energy_wh: Mapped[float] = mapped_column(Float, default=0.0)
    power_w: Mapped[float | None] = mapped_column(Float, nullable=True)
    soc_start: Mapped[float | None] = mapped_column(Float, nullable=True)
    soc_last: Mapped[float | None] = mapped_column(Float, nullable=True)
    car_energy_start_kwh: Mapped[float | None] = mapped_column(Float, nullable=True)
    car_energy_wh: Mapped[float | None] = mapped_column(Float, nullable=True)
    stop_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_seq_no: Mapped[int | None] = mapped_column(Integer, nullable=True)
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    remote_start_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tariff: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON snapshot taken at start
    cost: Mapped[str | None] = mapped_column(String(32), nullable=True)  # decimal text
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    cost_breakdown: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class MeterSample(Base):
    """A meter reading of a session: the register (Wh) and, when reported, power and the car's SoC."""

    __tablename__ = "charge_meter_samples"

    session_id: Mapped[int] = mapped_column(
        ForeignKey("charge_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    ts_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    energy_wh: Mapped[float] = mapped_column(Float)
    power_w: Mapped[float | None] = mapped_column(Float, nullable=True)
    soc: Mapped[float | None] = mapped_column(Float, nullable=True)
