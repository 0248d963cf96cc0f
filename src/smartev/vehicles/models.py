"""Tables of the vehicles context.

Time columns are epoch milliseconds (BIGINT): the hot ingest path writes them without building datetime
objects, and they compare the same way on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from smartev.db.base import Base


class Vehicle(Base):
    """A registered car: identity, owner, MQTT credential hash, connectivity."""

    __tablename__ = "vehicles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vin: Mapped[str] = mapped_column(String(17), unique=True)
    model: Mapped[str] = mapped_column(String(100))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    mqtt_secret_hash: Mapped[str] = mapped_column(String(255))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class SignalPath(Base):
    """A VSS path's compact id, so history rows carry a small integer instead of the path."""

    __tablename__ = "signal_paths"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(255), unique=True)


# Append-only history: no primary key, one index for "this signal of this car over time".
telemetry_history = Table(
    "telemetry_history",
    Base.metadata,
    Column("vehicle_id", Integer, nullable=False),
    Column("signal_id", Integer, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("value_num", Float, nullable=True),
    Column("value_text", Text, nullable=True),
    Index("ix_telemetry_history_vehicle_signal_ts", "vehicle_id", "signal_id", "ts"),
)


class TelemetryMark(Base):
    """One stored telemetry message (vehicle, seq): what makes ingest idempotent."""

    __tablename__ = "telemetry_marks"

    vehicle_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    stored_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    min_ts: Mapped[int] = mapped_column(BigInteger)


class TwinValue(Base):
    """The twin's last value of one signal, flushed behind the in-memory twin."""

    __tablename__ = "twin_values"

    vehicle_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signal_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger)
    value_num: Mapped[float | None] = mapped_column(Float, nullable=True)
    value_text: Mapped[str | None] = mapped_column(Text, nullable=True)


class PlatformState(Base):
    """Small named values the platform keeps between runs (e.g. the twin flush watermark)."""

    __tablename__ = "platform_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Command(Base):
    """A remote command to a car, from request to the car's answer or expiry."""

    __tablename__ = "commands"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"))
    name: Mapped[str] = mapped_column(String(32))
    args: Mapped[str] = mapped_column(Text)  # JSON
    status: Mapped[str] = mapped_column(String(16), index=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_commands_vehicle_created", "vehicle_id", "created_ms"),)


class CommandEvent(Base):
    """The audit trail of a command: every status it passed through, who or what moved it, when."""

    __tablename__ = "command_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    command_id: Mapped[str] = mapped_column(ForeignKey("commands.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    actor: Mapped[str] = mapped_column(String(254))
    at_ms: Mapped[int] = mapped_column(BigInteger)
