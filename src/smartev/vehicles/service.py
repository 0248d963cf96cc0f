"""The vehicle registry: register cars, look them up, decide who may see them.

The registry keeps an in-memory index of every car (id, VIN, owner, credential hash), so that the broker's
authentication and the ingest hot path never wait for the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from smartev.accounts.models import User
from smartev.accounts.service import Accounts
from smartev.errors import Conflict, InvalidInput, InvalidVIN, NotFound
from smartev.transport.credentials import hash_device_secret, new_device_secret
from smartev.vehicles.models import SignalPath, Vehicle
from smartev.vehicles.vin import validate_vin
from smartev.vss.catalog import Catalog

logger = logging.getLogger(__name__)
UNKNOWN_TTL_S = 30.0
UNKNOWN_CACHE_SIZE = 100_000


@dataclass(slots=True)
class VehicleRecord:
    """What the hot paths need to know about a registered car."""

    id: int
    vin: str
    model: str
    owner_id: int
    secret_hash: str
    created_ms: int


def may_see(user: User, record: VehicleRecord) -> bool:
    """Owners see their own cars; operators and admins see all."""
    return record.owner_id == user.id or user.role in ("operator", "admin")


class Registry:
    """Registered vehicles, their credentials and the signal-path ids."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[Any], accounts: Accounts) -> None:
        self._engine = engine
        self._sessions = sessions
        self._accounts = accounts
        self._by_vin: dict[str, VehicleRecord] = {}
        self._by_id: dict[int, VehicleRecord] = {}
        self._unknown: dict[str, float] = {}  # VIN -> monotonic time until which a miss is remembered
        self.signal_ids: dict[str, int] = {}
        self.signal_paths: dict[int, str] = {}

    async def load(self, catalog: Catalog) -> None:
        """Fill the in-memory index and make sure every catalog path has a compact id."""
        async with self._sessions() as s:
            for v in (await s.execute(select(Vehicle))).scalars():
                self._remember(v)
            known = {p: i for i, p in (await s.execute(select(SignalPath.id, SignalPath.path))).all()}
            missing = [p for p in catalog.signals if p not in known]
            if missing:
                start = (await s.execute(select(func.max(SignalPath.id)))).scalar() or 0
                rows = [{"id": start + n + 1, "path": p} for n, p in enumerate(missing)]
                try:
                    await s.execute(insert(SignalPath), rows)
                    await s.commit()
                except IntegrityError:  # another worker assigned them first
                    await s.rollback()
                known = {p: i for i, p in (await s.execute(select(SignalPath.id, SignalPath.path))).all()}
        self.signal_ids = known
        self.signal_paths = {i: p for p, i in known.items()}

    def _remember(self, v: Vehicle) -> VehicleRecord:
        self._unknown.pop(v.vin, None)
        rec = VehicleRecord(v.id, v.vin, v.model, v.owner_id, v.mqtt_secret_hash, v.created_ms)
        self._by_vin[v.vin] = rec
        self._by_id[v.id] = rec
        return rec

    async def register(self, vin: str, model: str, owner_email: str) -> tuple[VehicleRecord, str]:
        """Register a car for an owner; returns it with its MQTT password (shown once, stored hashed)."""
        try:
            vin = validate_vin(vin)
        except InvalidVIN as exc:
            raise InvalidVIN(exc.message, ("body", "vin")) from None
        model = model.strip()
        if not model:
            raise InvalidInput("model must not be empty", ("body", "model"))
        owner = await self._accounts.by_email(owner_email)
        if owner is None:
            raise InvalidInput(
                f"no user with email {owner_email!r}: create the owner first", ("body", "owner")
            )
        if vin in self._by_vin:
            raise Conflict(f"vehicle {vin} is registered already")
        secret = new_device_secret()
        vehicle = Vehicle(
            vin=vin,
            model=model,
            owner_id=owner.id,
            mqtt_secret_hash=hash_device_secret(secret),
            created_ms=int(time.time() * 1000),
            online=False,
        )
        async with self._sessions() as s:
            s.add(vehicle)
            try:
                await s.commit()
            except IntegrityError:
                raise Conflict(f"vehicle {vin} is registered already") from None
        return self._remember(vehicle), secret

    async def rotate_secret(self, vin: str) -> str:
        """A new MQTT password for the car (the old one stops working)."""
        rec = self.by_vin(vin)
        if rec is None:
            raise NotFound(f"vehicle {vin} not found")
        secret = new_device_secret()
        rec.secret_hash = hash_device_secret(secret)
        async with self._sessions() as s:
            await s.execute(
                update(Vehicle).where(Vehicle.id == rec.id).values(mqtt_secret_hash=rec.secret_hash)
            )
            await s.commit()
        return secret

    def by_vin(self, vin: str) -> VehicleRecord | None:
        """The registered car with this VIN (from memory), or None."""
        return self._by_vin.get(vin)

    async def lookup(self, vin: str) -> VehicleRecord | None:
        """The car with this VIN, asking the database on a miss (another worker may have registered it)."""
        rec = self._by_vin.get(vin)
        if rec is not None:
            return rec
        now = time.monotonic()
        if self._unknown.get(vin, 0.0) > now:
            return None  # a flood of unknown VINs must not become a flood of queries
        async with self._sessions() as s:
            v = (await s.execute(select(Vehicle).where(Vehicle.vin == vin))).scalar_one_or_none()
        if v is None:
            if len(self._unknown) >= UNKNOWN_CACHE_SIZE:
                self._unknown.clear()
            self._unknown[vin] = now + UNKNOWN_TTL_S
            return None
        return self._remember(v)

    def by_id(self, vehicle_id: int) -> VehicleRecord | None:
        """The registered car with this id, or None."""
        return self._by_id.get(vehicle_id)

    def secret_hash(self, vin: str) -> str | None:
        """The stored credential hash of a car (for the embedded broker), or None if unknown."""
        rec = self._by_vin.get(vin)
        return rec.secret_hash if rec else None

    def visible_to(self, user: User) -> Iterable[VehicleRecord]:
        """Every car this user may see."""
        if user.role in ("operator", "admin"):
            return list(self._by_vin.values())
        return [r for r in self._by_vin.values() if r.owner_id == user.id]

    def get_for(self, user: User, vin: str) -> VehicleRecord:
        """The car if this user may see it; NotFound otherwise (never reveals other owners' cars)."""
        rec = self._by_vin.get(vin.strip().upper())
        if rec is None or not may_see(user, rec):
            raise NotFound(f"vehicle {vin[:17]} not found")
        return rec

    def all(self) -> list[VehicleRecord]:
        """Every registered car."""
        return list(self._by_vin.values())
