"""The stations registry: who may connect, what each station said at boot, its connectors' live status.

Stations live in memory (20,000 of them are a few MB) and are written behind: a heartbeat or a status
notification is answered from memory, so charging keeps working while the database is away, and the
registry is flushed every few seconds. Registration and passwords are written through at once.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from smartev.accounts.models import User
from smartev.accounts.service import Accounts
from smartev.csms.models import Connector, Station
from smartev.csms.store import GroupCommit, upsert
from smartev.errors import Conflict, InvalidInput, NotFound
from smartev.transport.credentials import hash_device_secret, verify_device_secret

logger = logging.getLogger(__name__)

# OCPP-J: the identity is the last path segment, up to 48 printable characters (2.0.1 "identifierString")
STATION_ID = re.compile(r"^[A-Za-z0-9*\-_=:+|@.]{1,48}$")
PASSWORD_MIN, PASSWORD_MAX = 16, 40
# Passwords may be chosen by a person (16+ characters): stretch them more than a car's 256-bit secret,
# while keeping a 20,000-station reconnect storm at a few seconds of CPU.
PASSWORD_ITERATIONS = 1000
HEARTBEAT_WRITE_MS = 60_000
_DUMMY_HASH = hash_device_secret(secrets.token_urlsafe(24), PASSWORD_ITERATIONS)


@dataclass(slots=True)
class ConnectorState:
    """A connector's last status notification."""

    status: str
    error_code: str | None
    updated_ms: int


@dataclass(slots=True)
class StationRecord:
    """A station as the central system keeps it in memory."""

    id: str
    owner_id: int | None
    password_hash: str
    created_ms: int
    protocol: str | None = None
    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    tariff_id: int | None = None
    configuration: dict[str, Any] | None = None
    last_boot_ms: int | None = None
    last_heartbeat_ms: int | None = None
    online: bool = False
    connectors: dict[tuple[int, int], ConnectorState] = field(default_factory=dict)
    heartbeat_written_ms: int = 0  # last_heartbeat_ms as last flushed


def check_station_id(station_id: str) -> None:
    """InvalidInput unless `station_id` is a valid OCPP-J identity."""
    if not STATION_ID.match(station_id):
        raise InvalidInput(
            "a station id is 1 to 48 letters, digits or *-_=:+|@. (it is the last segment of the URL)",
            ("body", "id"),
        )


def check_password(password: str) -> None:
    """InvalidInput unless the password has the length OCPP security profiles 1 and 2 require."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX or not password.isprintable():
        raise InvalidInput(
            f"a station password has {PASSWORD_MIN} to {PASSWORD_MAX} printable characters",
            ("body", "password"),
        )


def new_password() -> str:
    """A random Basic-auth password: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


class Stations:
    """The stations registry service."""

    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[Any],
        accounts: Accounts,
        store: GroupCommit | None = None,
    ) -> None:
        self._engine = engine
        self._store = store
        self._sessions = sessions
        self._accounts = accounts
        self._by_id: dict[str, StationRecord] = {}
        self._dirty: set[str] = set()

    async def load(self) -> None:
        """Read every station and connector into memory."""
        async with self._sessions() as s:
            for st in (await s.execute(select(Station))).scalars():
                self._by_id[st.id] = StationRecord(
                    id=st.id,
                    owner_id=st.owner_id,
                    password_hash=st.password_hash,
                    created_ms=st.created_ms,
                    protocol=st.protocol,
                    vendor=st.vendor,
                    model=st.model,
                    serial=st.serial,
                    firmware=st.firmware,
                    latitude=st.latitude,
                    longitude=st.longitude,
                    tariff_id=st.tariff_id,
                    configuration=orjson.loads(st.configuration) if st.configuration else None,
                    last_boot_ms=st.last_boot_ms,
                    last_heartbeat_ms=st.last_heartbeat_ms,
                    online=False,  # nobody is connected to a process that just started
                )
            for c in (await s.execute(select(Connector))).scalars():
                rec = self._by_id.get(c.station_id)
                if rec is not None:
                    rec.connectors[(c.evse_id, c.connector_id)] = ConnectorState(
                        c.status, c.error_code, c.updated_ms
                    )
        self._dirty = set(self._by_id)

    async def register(
        self,
        station_id: str,
        owner_email: str | None = None,
        password: str | None = None,
        latitude: float | None = None,
        longitude: float | None = None,
        tariff_id: int | None = None,
    ) -> tuple[StationRecord, str]:
        """A new station; returns it with its Basic-auth password (shown once, stored hashed)."""
        check_station_id(station_id)
        if password is None:
            password = new_password()
        check_password(password)
        owner: User | None = None
        if owner_email:
            owner = await self._accounts.by_email(owner_email)
            if owner is None:
                raise InvalidInput(f"no user with email {owner_email}", ("body", "owner"))
        if station_id in self._by_id:
            raise Conflict(f"station {station_id} is registered already")
        now = int(time.time() * 1000)
        row = Station(
            id=station_id,
            owner_id=owner.id if owner else None,
            password_hash=hash_device_secret(password, PASSWORD_ITERATIONS),
            latitude=latitude,
            longitude=longitude,
            tariff_id=tariff_id,
            created_ms=now,
            online=False,
        )
        async with self._sessions() as s:
            s.add(row)
            try:
                await s.commit()
            except IntegrityError:  # registered by a request running at the same time
                raise Conflict(f"station {station_id} is registered already") from None
        rec = StationRecord(
            id=station_id,
            owner_id=row.owner_id,
            password_hash=row.password_hash,
            created_ms=now,
            latitude=latitude,
            longitude=longitude,
            tariff_id=tariff_id,
        )
        self._by_id[station_id] = rec
        return rec, password

    async def set_password(self, station_id: str, password: str | None = None) -> str:
        """Replace a station's password (a new random one by default); returns it."""
        rec = self.get(station_id)
        password = password or new_password()
        check_password(password)
        hashed = hash_device_secret(password, PASSWORD_ITERATIONS)
        async with self._engine.begin() as conn:
            await conn.execute(update(Station).where(Station.id == station_id).values(password_hash=hashed))
        rec.password_hash = hashed
        return password

    async def update(self, station_id: str, **values: Any) -> StationRecord:
        """Write through operator-set fields (location, tariff)."""
        rec = self.get(station_id)
        async with self._engine.begin() as conn:
            await conn.execute(update(Station).where(Station.id == station_id).values(**values))
        for k, v in values.items():
            setattr(rec, k, v)
        return rec

    def get(self, station_id: str) -> StationRecord:
        """The station, or NotFound."""
        rec = self._by_id.get(station_id)
        if rec is None:
            raise NotFound(f"no station {station_id}")
        return rec

    def find(self, station_id: str) -> StationRecord | None:
        """The station or None."""
        return self._by_id.get(station_id)

    def all(self) -> list[StationRecord]:
        """Every station, in id order."""
        return sorted(self._by_id.values(), key=lambda r: r.id)

    def authenticate(self, station_id: str, password: str) -> bool:
        """True when the station exists and the password matches its stored hash."""
        rec = self._by_id.get(station_id)
        # an unknown id costs the same hash as a known one, so the timing does not tell which ids exist
        return verify_device_secret(password, rec.password_hash if rec else _DUMMY_HASH) and rec is not None

    # --- what stations tell us (memory first, written behind) ---

    def connected(self, station_id: str, protocol: str, now_ms: int) -> None:
        """A station's websocket is up."""
        rec = self.get(station_id)
        rec.online, rec.protocol, rec.last_heartbeat_ms = True, protocol, now_ms
        self._dirty.add(station_id)

    def disconnected(self, station_id: str) -> None:
        """A station's websocket closed."""
        rec = self._by_id.get(station_id)
        if rec is not None:
            rec.online = False
            self._dirty.add(station_id)

    def booted(
        self, station_id: str, vendor: str, model: str, serial: str | None, firmware: str | None, now_ms: int
    ) -> None:
        """A BootNotification: what the station says it is."""
        rec = self.get(station_id)
        rec.vendor, rec.model, rec.serial, rec.firmware = vendor, model, serial, firmware
        rec.last_boot_ms = rec.last_heartbeat_ms = now_ms
        self._dirty.add(station_id)

    def heartbeat(self, station_id: str, now_ms: int) -> None:
        """Any sign of life."""
        rec = self._by_id.get(station_id)
        if rec is not None:
            rec.last_heartbeat_ms = now_ms
            # every message is a sign of life: written at most once a minute, or 1,000 busy stations would
            # rewrite their rows every flush and hold the charging writer for a second
            if now_ms - rec.heartbeat_written_ms >= HEARTBEAT_WRITE_MS:
                self._dirty.add(station_id)

    def connector_status(
        self,
        station_id: str,
        evse_id: int,
        connector_id: int,
        status: str,
        error_code: str | None,
        at_ms: int,
    ) -> None:
        """A StatusNotification; an older one than what we hold is ignored (offline replays)."""
        rec = self.get(station_id)
        key = (evse_id, connector_id)
        old = rec.connectors.get(key)
        if old is None or at_ms >= old.updated_ms:
            rec.connectors[key] = ConnectorState(status, error_code, at_ms)
            self._dirty.add(station_id)

    def configuration_read(self, station_id: str, configuration: dict[str, Any]) -> None:
        """The station's configuration as last read (GetConfiguration / NotifyReport)."""
        rec = self.get(station_id)
        rec.configuration = configuration
        self._dirty.add(station_id)

    async def flush(self) -> int:
        """Write changed stations and connectors; returns how many stations were written.

        Through the charging writer while it runs (`store`): on SQLite a second writer's transaction
        held the write lock for seconds, and charging writes failed with "database is locked" behind it.
        One UPDATE executed for all rows, one upsert for their connectors: per-row statements took ~3 ms
        a station on a busy event loop.
        """
        if not self._dirty:
            return 0
        dirty, self._dirty = self._dirty, set()
        records = [r for r in map(self._by_id.get, dirty) if r is not None]
        stations = [
            {
                "b_id": rec.id,
                "protocol": rec.protocol,
                "vendor": rec.vendor,
                "model": rec.model,
                "serial": rec.serial,
                "firmware": rec.firmware,
                "configuration": orjson.dumps(rec.configuration).decode() if rec.configuration else None,
                "last_boot_ms": rec.last_boot_ms,
                "last_heartbeat_ms": rec.last_heartbeat_ms,
                "online": rec.online,
            }
            for rec in records
        ]
        connectors = [row for rec in records for row in _connector_rows(rec)]
        for rec in records:
            rec.heartbeat_written_ms = rec.last_heartbeat_ms or 0

        async def write(conn: Any) -> None:
            if stations:
                await conn.execute(_UPDATE_STATION, stations)
            if connectors:
                await upsert(conn, Connector, connectors, ("station_id", "evse_id", "connector_id"))

        try:
            if self._store is not None and self._store.running:
                await self._store.store(write)
            else:
                async with self._engine.begin() as conn:
                    await write(conn)
        except BaseException:
            self._dirty |= dirty
            raise
        return len(records)


_UPDATE_STATION = (
    update(Station)
    .where(Station.id == bindparam("b_id"))
    .values(
        {
            c: bindparam(c)
            for c in (
                "protocol",
                "vendor",
                "model",
                "serial",
                "firmware",
                "configuration",
                "last_boot_ms",
                "last_heartbeat_ms",
                "online",
            )
        }
    )
)


def _connector_rows(rec: StationRecord) -> list[dict[str, Any]]:
    return [
        {
            "station_id": rec.id,
            "evse_id": evse,
            "connector_id": connector,
            "status": c.status,
            "error_code": c.error_code,
            "updated_ms": c.updated_ms,
        }
        for (evse, connector), c in rec.connectors.items()
    ]
