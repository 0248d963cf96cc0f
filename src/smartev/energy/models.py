"""Tables of smart charging: sites with their limits, how each station is wired, and drivers' goals.

A site is anything that shares one supply: a depot, a car park, a home. Its limits are a tree (site connection
→ feeders/circuits, per-phase caps) kept as JSON, in the shape `smartev.energy.sites.limits_from_dict` reads.
The planner's plain data lives in `domain.py`; these are only the stored settings.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from smartev.db.base import Base


class ChargingSite(Base):
    """A group of stations behind one connection, planned together."""

    __tablename__ = "charging_sites"

    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    limits: Mapped[str] = mapped_column(Text)  # JSON tree
    objective: Mapped[str] = mapped_column(String(16))
    tariff_id: Mapped[int | None] = mapped_column(ForeignKey("tariffs.id"), nullable=True)
    voltage_v: Mapped[float] = mapped_column(Float, default=230.0)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # what a session gets when nobody said: ready by a time of day (a home), else a stay of some hours
    ready_by: Mapped[str | None] = mapped_column(String(5), nullable=True)
    target_soc: Mapped[float] = mapped_column(Float, default=100.0)
    default_stay_h: Mapped[float] = mapped_column(Float, default=8.0)
    default_energy_kwh: Mapped[float] = mapped_column(Float, default=20.0)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class SiteStation(Base):
    """Where a station hangs in its site's limits: the circuit, the phases it draws on, its current range."""

    __tablename__ = "charging_site_stations"

    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("charging_sites.id", ondelete="CASCADE"), index=True)
    circuit: Mapped[str | None] = mapped_column(String(48), nullable=True)
    phases: Mapped[str] = mapped_column(String(3), default="ABC")
    max_a: Mapped[float] = mapped_column(Float, default=32.0)
    min_a: Mapped[float] = mapped_column(Float, default=6.0)


class ChargeGoal(Base):
    """What the driver of a charge session asked for: when they leave, and how full or how much energy."""

    __tablename__ = "charge_goals"

    session_id: Mapped[int] = mapped_column(
        ForeignKey("charge_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    departure_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    target_soc: Mapped[float | None] = mapped_column(Float, nullable=True)
    energy_kwh: Mapped[float | None] = mapped_column(Float, nullable=True)
    set_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
