"""Charge sessions: authorisation, start, meter values, stop, cost, and the car that charged.

Knows no wire: the OCPP 1.6 and 2.0.1 adapters translate their messages into these calls. Every call that
changes a session returns only after the change is committed (through `GroupCommit`), so a station's
message is answered only once it is stored. Sessions are found by (station, transaction id): a station can
never reach another station's transaction. Replays are idempotent: a 1.6 StartTransaction sent again
finds the session it opened (`start_key`), a 2.0.1 event whose seqNo was applied is skipped, and an ended
session is never reopened.

A transaction whose id tag is refused (blocked, expired, unknown) is still a transaction on the station: it
ends it when told (StopTransactionOnInvalidId, stop reason DeAuthorized) or keeps it open without energy.
So its session stays active until the station's stop arrives, with its real stop time and energy, and can be
remote-stopped meanwhile; its `stop_reason` says "DeAuthorized (Blocked)" from the start.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from sqlalchemy import and_, bindparam, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from smartev.accounts.models import User
from smartev.accounts.service import Accounts
from smartev.csms.models import ChargeSession, IdTag, MeterSample, TariffRow
from smartev.csms.stations import StationRecord
from smartev.csms.store import GroupCommit, insert_ignoring_duplicates
from smartev.csms.tariffs import Tariff, session_cost
from smartev.errors import Conflict, InvalidInput, NotFound
from smartev.events import ChargeSessionEnded, ChargeSessionStarted, ChargeSessionUpdated, EventBus

logger = logging.getLogger(__name__)

ACTIVE, ENDED = "active", "ended"
TAG_KINDS = ("rfid", "vin", "evccid", "emaid", "other")


class VehicleLocator(Protocol):
    """What the charging context asks of the vehicles context (through the app's adapter)."""

    def owner_of(self, vin: str) -> int | None:
        """The owner's user id of a registered car, or None."""

    def charging_near(
        self, latitude: float, longitude: float, at_ms: int, owner_id: int | None
    ) -> str | None:
        """The VIN of the one car of `owner_id` whose telemetry says it is plugged in here then, or None."""

    def charged_energy_kwh(self, vin: str) -> float | None:
        """The car's battery counter of energy charged (kWh), or None."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One meter reading: the energy register (Wh), power (W) and the car's state of charge (%)."""

    ts_ms: int
    energy_wh: float | None = None
    power_w: float | None = None
    soc: float | None = None


@dataclass(frozen=True, slots=True)
class Authorization:
    """The answer to an id tag: OCPP status, and whose tag it is."""

    status: str  # Accepted | Invalid | Blocked | Expired
    user_id: int | None = None
    vin: str | None = None
    expiry_ms: int | None = None  # when an accepted tag stops being valid (stations cache it until then)

    @property
    def accepted(self) -> bool:
        """True when the tag may charge."""
        return self.status == "Accepted"


@dataclass(frozen=True, slots=True)
class SessionRef:
    """What an adapter needs back after a session changed."""

    id: int
    transaction_id: str
    status: str
    authorization: Authorization


def refusal(auth: Authorization) -> str:
    """The stop reason of a session whose id tag was refused, e.g. "DeAuthorized (Blocked)"."""
    return f"DeAuthorized ({auth.status})"


def new_transaction_id() -> str:
    """An unpredictable positive 31-bit integer (1.6's transactionId is an integer), as text."""
    return str(secrets.randbelow(2**31 - 2) + 1)


def _now_ms() -> int:
    return int(time.time() * 1000)


class ChargeSessions:
    """The charge sessions service."""

    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[Any],
        store: GroupCommit,
        accounts: Accounts,
        bus: EventBus,
        vehicles: VehicleLocator,
        default_tariff: str = "",
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._store = store
        self._accounts = accounts
        self._bus = bus
        self._vehicles = vehicles
        self._default_tariff = default_tariff
        self._tags: dict[str, IdTag] = {}
        self._tariffs: dict[int, tuple[str, Tariff]] = {}

    async def load(self) -> None:
        """Read id tags and tariffs into memory."""
        async with self._sessions() as s:
            for tag in (await s.execute(select(IdTag))).scalars():
                s.expunge(tag)
                self._tags[tag.tag.upper()] = tag
            for row in (await s.execute(select(TariffRow))).scalars():
                self._tariffs[row.id] = (row.name, Tariff.from_dict(orjson.loads(row.data)))

    # --- id tags ---

    def authorize(self, tag: str | None, now_ms: int | None = None) -> Authorization:
        """Whether `tag` may charge: an owner's card, or a registered car's VIN (autocharge)."""
        if not tag:
            return Authorization("Invalid")
        now_ms = now_ms if now_ms is not None else _now_ms()
        known = self._tags.get(tag.upper())
        if known is not None:
            if known.blocked:
                return Authorization("Blocked", known.user_id, known.vin)
            if known.expiry_ms is not None and known.expiry_ms < now_ms:
                return Authorization("Expired", known.user_id, known.vin)
            return Authorization("Accepted", known.user_id, known.vin, known.expiry_ms)
        owner = self._vehicles.owner_of(tag.upper())
        if owner is not None:
            return Authorization("Accepted", owner, tag.upper())
        return Authorization("Invalid")

    async def add_tag(
        self,
        tag: str,
        kind: str = "rfid",
        owner_email: str | None = None,
        vin: str | None = None,
        expiry_ms: int | None = None,
    ) -> IdTag:
        """Register an id tag (an owner's card, or a car's EVCCID/MAC for autocharge)."""
        tag = tag.strip()
        if not 1 <= len(tag) <= 36 or not tag.isprintable():
            raise InvalidInput("an id tag has 1 to 36 printable characters", ("body", "tag"))
        if kind not in TAG_KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(TAG_KINDS)}", ("body", "kind"))
        user_id = None
        if owner_email:
            user = await self._accounts.by_email(owner_email)
            if user is None:
                raise InvalidInput(f"no user with email {owner_email}", ("body", "owner"))
            user_id = user.id
        if vin is not None:
            vin = vin.upper()
            car_owner = self._vehicles.owner_of(vin)
            if car_owner is None:
                raise InvalidInput(f"no registered car with VIN {vin}", ("body", "vin"))
            user_id = user_id or car_owner
        if tag.upper() in self._tags:
            raise Conflict(f"id tag {tag} is registered already")
        row = IdTag(
            tag=tag,
            kind=kind,
            user_id=user_id,
            vin=vin,
            blocked=False,
            expiry_ms=expiry_ms,
            created_ms=_now_ms(),
        )
        async with self._sessions() as s:
            s.add(row)
            try:
                await s.commit()
            except IntegrityError:  # registered by a request running at the same time
                raise Conflict(f"id tag {tag} is registered already") from None
            s.expunge(row)
        self._tags[tag.upper()] = row
        return row

    async def set_tag_blocked(self, tag: str, blocked: bool) -> IdTag:
        """Block (or unblock) a lost card."""
        row = self._tags.get(tag.upper())
        if row is None:
            raise NotFound(f"no id tag {tag}")
        async with self._engine.begin() as conn:
            await conn.execute(update(IdTag).where(IdTag.tag == row.tag).values(blocked=blocked))
        row.blocked = blocked
        return row

    def tags(self, user: User | None = None) -> list[IdTag]:
        """Every id tag, or those of one user."""
        rows = [t for t in self._tags.values() if user is None or t.user_id == user.id]
        return sorted(rows, key=lambda t: t.tag)

    def tag(self, tag: str) -> IdTag | None:
        """A registered id tag (any case), or None."""
        return self._tags.get(tag.upper())

    def local_list(self) -> list[tuple[str, Authorization]]:
        """Every id tag with its status, for a station's local authorisation list."""
        return [(t.tag, self.authorize(t.tag)) for t in self.tags()]

    # --- tariffs ---

    async def add_tariff(self, name: str, tariff: Tariff) -> int:
        """Store a named tariff; returns its id."""
        if any(n == name for n, _ in self._tariffs.values()):
            raise Conflict(f"a tariff named {name} exists already")
        row = TariffRow(name=name, data=orjson.dumps(tariff.to_dict()).decode(), created_ms=_now_ms())
        async with self._sessions() as s:
            s.add(row)
            try:
                await s.commit()
            except IntegrityError:  # added by a request running at the same time
                raise Conflict(f"a tariff named {name} exists already") from None
        self._tariffs[row.id] = (name, tariff)
        return row.id

    def tariffs(self) -> dict[int, tuple[str, Tariff]]:
        """Tariffs by id: (name, tariff)."""
        return dict(self._tariffs)

    def tariff_for(self, station: StationRecord) -> Tariff | None:
        """The station's tariff, else the default tariff, else None (sessions without a price)."""
        if station.tariff_id is not None and station.tariff_id in self._tariffs:
            return self._tariffs[station.tariff_id][1]
        for name, tariff in self._tariffs.values():
            if name == self._default_tariff:
                return tariff
        return None

    # --- transactions ---

    async def start(
        self,
        station: StationRecord,
        *,
        protocol: str,
        evse_id: int,
        connector_id: int,
        id_tag: str | None,
        meter_start_wh: float | None,
        ts_ms: int,
        transaction_id: str | None = None,
        start_key: str | None = None,
        remote_start_id: int | None = None,
        offline: bool = False,
        seq_no: int | None = None,
        readings: Sequence[Reading] = (),
    ) -> SessionRef:
        """Open a session (or find the one this replayed start opened already)."""
        auth = self.authorize(id_tag, ts_ms) if id_tag else Authorization("Accepted")
        vin, linked_by = auth.vin, "id_tag" if auth.vin else None
        if vin is None and station.latitude is not None and station.longitude is not None:
            # whose car it may be: the card holder's, or (no card, or an anonymous one) the home charger's owner
            owner = auth.user_id if auth.user_id is not None else station.owner_id
            vin = self._vehicles.charging_near(station.latitude, station.longitude, ts_ms, owner)
            linked_by = "telemetry" if vin else None
        car_energy = self._vehicles.charged_energy_kwh(vin) if vin else None
        tariff = self.tariff_for(station)
        energies = [r.energy_wh for r in readings if r.energy_wh is not None]
        meter_start = meter_start_wh if meter_start_wh is not None else (min(energies) if energies else None)
        socs = [r.soc for r in sorted(readings, key=lambda r: r.ts_ms) if r.soc is not None]
        tx_id = transaction_id or new_transaction_id()

        async def write(conn: AsyncConnection) -> tuple[SessionRef, bool]:
            # A replay finds the session it opened: a 1.6 start by its start_key, a 2.0.1 one by its id (also
            # when this very write is retried after a commit whose answer the outage swallowed).
            if start_key is not None or transaction_id is not None:
                q = select(ChargeSession.id, ChargeSession.transaction_id, ChargeSession.status)
                if start_key is not None:
                    q = q.where(ChargeSession.start_key == start_key)
                else:
                    q = q.where(
                        and_(ChargeSession.station_id == station.id, ChargeSession.transaction_id == tx_id)
                    )
                found = (await conn.execute(q)).first()
                if found is not None:
                    return SessionRef(found[0], found[1], found[2], auth), False
            values: dict[str, Any] = dict(
                station_id=station.id,
                transaction_id=tx_id,
                start_key=start_key,
                protocol=protocol,
                evse_id=evse_id,
                connector_id=connector_id,
                id_tag=id_tag,
                user_id=auth.user_id,
                vin=vin,
                linked_by=linked_by,
                status=ACTIVE,
                start_ms=ts_ms,
                meter_start_wh=meter_start or 0.0,
                meter_last_wh=meter_start or 0.0,
                energy_wh=0.0,
                soc_start=socs[0] if socs else None,
                soc_last=socs[-1] if socs else None,
                car_energy_start_kwh=car_energy,
                offline=offline,
                last_seq_no=seq_no,
                remote_start_id=remote_start_id,
                tariff=orjson.dumps(tariff.to_dict()).decode() if tariff else None,
                currency=tariff.currency if tariff else None,
                stop_reason=None if auth.accepted or not id_tag else refusal(auth),
                updated_ms=_now_ms(),
            )
            result = await conn.execute(insert(ChargeSession).values(**values))
            session_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            await _store_readings(conn, session_id, readings)
            return SessionRef(session_id, tx_id, values["status"], auth), True

        ref, created = await self._store.store(write)
        if created:
            self._bus.publish(ChargeSessionStarted(station.id, ref.transaction_id, vin, ts_ms))
        return ref

    async def meter(
        self,
        station_id: str,
        transaction_id: str,
        readings: Sequence[Reading],
        seq_no: int | None = None,
        offline: bool = False,
    ) -> dict[str, Any] | None:
        """Store meter readings of the station's own transaction (a 2.0.1 Updated event: with its seqNo, applied
        once); returns the session's row, or None if the station has no such transaction."""
        item = _MeterItem(station_id, transaction_id, tuple(readings), seq_no, offline)
        row: dict[str, Any] | None = await self._store.store_item(_meter_many, item)
        if row is not None and row.pop(_CHANGED, False):
            self._updated(station_id, transaction_id, row)
        return row

    async def stop(
        self,
        station_id: str,
        transaction_id: str,
        *,
        meter_stop_wh: float | None,
        ts_ms: int,
        reason: str | None,
        readings: Sequence[Reading] = (),
        seq_no: int | None = None,
        offline: bool = False,
    ) -> SessionRef | None:
        """End the station's own transaction (once: a replayed stop changes nothing); None if unknown."""
        return await self._apply(
            station_id,
            transaction_id,
            readings=readings,
            seq_no=seq_no,
            offline=offline,
            end=(ts_ms, meter_stop_wh, reason),
        )

    async def event(
        self,
        station: StationRecord,
        *,
        event_type: str,
        transaction_id: str,
        seq_no: int,
        ts_ms: int,
        offline: bool,
        evse_id: int | None,
        connector_id: int | None,
        id_tag: str | None,
        readings: Sequence[Reading],
        stopped_reason: str | None,
        remote_start_id: int | None,
        trigger_reason: str | None = None,
    ) -> SessionRef:
        """A 2.0.1 TransactionEvent (Started, Updated or Ended), applied once and in seqNo order."""
        if event_type == "Updated" and not id_tag:  # the frequent one: a meter reading
            row = await self.meter(station.id, transaction_id, readings, seq_no=seq_no, offline=offline)
            if row is not None:
                return SessionRef(row["id"], transaction_id, row["status"], Authorization("Accepted"))
        ref = await self._apply(
            station.id,
            transaction_id,
            readings=readings,
            seq_no=seq_no,
            offline=offline,
            end=(ts_ms, None, stopped_reason or trigger_reason or "Local") if event_type == "Ended" else None,
            id_tag=id_tag,
        )
        if ref is not None:
            return ref
        # The first event we see of this transaction (Started, or a later one whose Started was lost): open it.
        ref = await self.start(
            station,
            protocol="ocpp2.0.1",
            evse_id=evse_id or 0,
            connector_id=connector_id or 1,
            id_tag=id_tag,
            meter_start_wh=None,
            ts_ms=ts_ms,
            transaction_id=transaction_id,
            remote_start_id=remote_start_id,
            offline=offline,
            seq_no=seq_no,
            readings=readings,
        )
        if event_type == "Ended" and ref.status == ACTIVE:
            ended = await self._apply(
                station.id,
                transaction_id,
                readings=(),
                seq_no=None,
                offline=offline,
                end=(ts_ms, None, stopped_reason or "Local"),
            )
            assert ended is not None
            return ended
        return ref

    async def _apply(
        self,
        station_id: str,
        transaction_id: str,
        *,
        readings: Sequence[Reading],
        seq_no: int | None,
        offline: bool,
        end: tuple[int, float | None, str | None] | None,
        id_tag: str | None = None,
    ) -> SessionRef | None:
        auth = self.authorize(id_tag) if id_tag else Authorization("Accepted")

        async def write(conn: AsyncConnection) -> tuple[SessionRef, dict[str, Any], bool] | None:
            row = await _find(conn, station_id, transaction_id)
            if row is None:
                return None
            ref = SessionRef(row["id"], transaction_id, row["status"], auth)
            if row["status"] == ENDED:
                await _store_readings(
                    conn, row["id"], readings
                )  # late samples, kept; the session stays ended
                return ref, row, False
            if seq_no is not None and row["last_seq_no"] is not None and seq_no <= row["last_seq_no"]:
                return ref, row, False  # applied already (a replay)
            await _store_readings(conn, row["id"], readings)
            changes = _progress(row, readings)
            if seq_no is not None:
                changes["last_seq_no"] = seq_no
            if offline and not row["offline"]:
                changes["offline"] = True
            if id_tag and not row["id_tag"]:
                changes.update(id_tag=id_tag, user_id=auth.user_id)
                if auth.vin and not row["vin"]:
                    changes.update(
                        vin=auth.vin,
                        linked_by="id_tag",
                        car_energy_start_kwh=self._vehicles.charged_energy_kwh(auth.vin),
                    )
                if not auth.accepted:
                    changes["stop_reason"] = refusal(auth)
            if end is not None:
                stop_ms, meter_stop, reason = end
                current = {**row, **changes}
                # a refused tag is why it ended, whatever the station says
                reason = current["stop_reason"] or reason
                meter_last = meter_stop if meter_stop is not None else current["meter_last_wh"]
                changes.update(
                    status=ENDED,
                    stop_ms=stop_ms,
                    stop_reason=reason,
                    meter_last_wh=meter_last,
                    energy_wh=max(0.0, meter_last - current["meter_start_wh"]),
                )
                changes.update(await self._final_figures(conn, {**current, **changes}))
            changes["updated_ms"] = _now_ms()
            await conn.execute(update(ChargeSession).where(ChargeSession.id == row["id"]).values(**changes))
            new = {**row, **changes}
            return SessionRef(row["id"], transaction_id, new["status"], auth), new, True

        result = await self._store.store(write)
        if result is None:
            return None
        ref, row, changed = result
        if changed:
            if end is not None:
                self._bus.publish(
                    ChargeSessionEnded(
                        station_id, transaction_id, row["vin"], row["stop_ms"], row["energy_wh"], row["cost"]
                    )
                )
            else:
                self._updated(station_id, transaction_id, row)
        return ref

    async def _final_figures(self, conn: AsyncConnection, row: dict[str, Any]) -> dict[str, Any]:
        """Cost from the tariff snapshot and the meter samples; the car's own battery energy."""
        out: dict[str, Any] = {}
        if row["tariff"]:
            tariff = Tariff.from_dict(orjson.loads(row["tariff"]))
            samples = [
                (int(ts), float(e))
                for ts, e in (
                    await conn.execute(
                        select(MeterSample.ts_ms, MeterSample.energy_wh)
                        .where(MeterSample.session_id == row["id"])
                        .order_by(MeterSample.ts_ms)
                    )
                ).all()
            ]
            samples = [
                (row["start_ms"], row["meter_start_wh"]),
                *samples,
                (row["stop_ms"], row["meter_last_wh"]),
            ]
            samples = _monotonic(samples, row["start_ms"], row["stop_ms"])
            breakdown = session_cost(tariff, samples, row["start_ms"], row["stop_ms"])
            out.update(
                cost=str(breakdown.total),
                currency=breakdown.currency,
                cost_breakdown=orjson.dumps(
                    {
                        "energy": str(breakdown.energy),
                        "time": str(breakdown.time),
                        "idle": str(breakdown.idle),
                        "session": str(breakdown.session),
                        "total": str(breakdown.total),
                        "idle_minutes": round(breakdown.idle_minutes, 1),
                    }
                ).decode(),
            )
        if row["vin"] and row["car_energy_start_kwh"] is not None:
            now = self._vehicles.charged_energy_kwh(row["vin"])
            if now is not None:
                out["car_energy_wh"] = round(max(0.0, now - row["car_energy_start_kwh"]) * 1000, 1)
        return out

    def _updated(self, station_id: str, transaction_id: str, row: dict[str, Any]) -> None:
        self._bus.publish(
            ChargeSessionUpdated(
                station_id, transaction_id, row["vin"], row["energy_wh"], row["power_w"], row["soc_last"]
            )
        )

    # --- queries ---

    async def search(
        self,
        user: User | None,
        *,
        station: str | None = None,
        vin: str | None = None,
        status: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        own_station_ids: Sequence[str] = (),
        own_vins: Sequence[str] = (),
        limit: int = 1000,
    ) -> list[ChargeSession]:
        """Sessions newest first, filtered; an owner (`user` not None) sees only theirs."""
        q = (
            select(ChargeSession)
            .order_by(ChargeSession.start_ms.desc(), ChargeSession.id.desc())
            .limit(limit)
        )
        if user is not None:
            mine = [ChargeSession.user_id == user.id]
            if own_station_ids:
                mine.append(ChargeSession.station_id.in_(own_station_ids))
            if own_vins:
                mine.append(ChargeSession.vin.in_(own_vins))
            q = q.where(or_(*mine))
        if station:
            q = q.where(ChargeSession.station_id == station)
        if vin:
            q = q.where(ChargeSession.vin == vin.upper())
        if status:
            q = q.where(ChargeSession.status == status)
        if since_ms is not None:
            q = q.where(ChargeSession.start_ms >= since_ms)
        if until_ms is not None:
            q = q.where(ChargeSession.start_ms < until_ms)
        async with self._sessions() as s:
            return list((await s.execute(q)).scalars())

    async def get(self, session_id: int) -> ChargeSession:
        """One session, or NotFound."""
        async with self._sessions() as s:
            row: ChargeSession | None = await s.get(ChargeSession, session_id)
        if row is None:
            raise NotFound(f"no charging session {session_id}")
        return row

    async def samples(self, session_id: int) -> list[MeterSample]:
        """A session's meter readings, oldest first."""
        async with self._sessions() as s:
            q = select(MeterSample).where(MeterSample.session_id == session_id).order_by(MeterSample.ts_ms)
            return list((await s.execute(q)).scalars())

    async def active_at(self, station_ids: Sequence[str]) -> list[ChargeSession]:
        """The open sessions of these stations (one query, for smart charging's re-plans)."""
        if not station_ids:
            return []
        async with self._sessions() as s:
            q = select(ChargeSession).where(
                and_(ChargeSession.station_id.in_(station_ids), ChargeSession.status == ACTIVE)
            )
            return list((await s.execute(q)).scalars())

    async def active_on(self, station_id: str) -> list[ChargeSession]:
        """The station's open sessions."""
        async with self._sessions() as s:
            q = select(ChargeSession).where(
                and_(ChargeSession.station_id == station_id, ChargeSession.status == ACTIVE)
            )
            return list((await s.execute(q)).scalars())


_COLUMNS = (
    ChargeSession.id,
    ChargeSession.status,
    ChargeSession.last_seq_no,
    ChargeSession.offline,
    ChargeSession.id_tag,
    ChargeSession.vin,
    ChargeSession.start_ms,
    ChargeSession.meter_start_wh,
    ChargeSession.meter_last_wh,
    ChargeSession.energy_wh,
    ChargeSession.power_w,
    ChargeSession.soc_start,
    ChargeSession.soc_last,
    ChargeSession.stop_reason,
    ChargeSession.tariff,
    ChargeSession.cost,
    ChargeSession.car_energy_start_kwh,
)


_CHANGED = "_changed"
_UPDATED_COLUMNS = (
    "meter_last_wh",
    "energy_wh",
    "power_w",
    "soc_start",
    "soc_last",
    "last_seq_no",
    "offline",
)


@dataclass(frozen=True, slots=True)
class _MeterItem:
    station_id: str
    transaction_id: str
    readings: tuple[Reading, ...]
    seq_no: int | None
    offline: bool


async def _meter_many(conn: AsyncConnection, items: list[_MeterItem]) -> list[dict[str, Any] | None]:
    """Meter readings of many transactions in three statements: find them, add the readings, update them."""
    keys = list({(i.station_id, i.transaction_id) for i in items})
    q = select(*_COLUMNS, ChargeSession.station_id, ChargeSession.transaction_id).where(
        tuple_(ChargeSession.station_id, ChargeSession.transaction_id).in_(keys)
    )
    rows = {(r.station_id, r.transaction_id): dict(r._mapping) for r in await conn.execute(q)}
    samples: dict[tuple[int, int], dict[str, Any]] = {}
    updates: dict[int, dict[str, Any]] = {}
    now = _now_ms()
    out: list[dict[str, Any] | None] = []
    for item in items:
        row = rows.get((item.station_id, item.transaction_id))
        if row is None:
            out.append(None)
            continue
        for sample in _sample_rows(row["id"], item.readings):
            samples[(row["id"], sample["ts_ms"])] = sample
        replay = (
            item.seq_no is not None and row["last_seq_no"] is not None and item.seq_no <= row["last_seq_no"]
        )
        if row["status"] == ENDED or replay:  # late readings are kept; the session is not changed
            out.append(dict(row))
            continue
        changes = _progress(row, item.readings)
        if item.seq_no is not None:
            changes["last_seq_no"] = item.seq_no
        if item.offline and not row["offline"]:
            changes["offline"] = True
        if changes:
            row.update(changes)
            updates[row["id"]] = {
                "_id": row["id"],
                "updated_ms": now,
                **{c: row[c] for c in _UPDATED_COLUMNS},
            }
        out.append({**row, _CHANGED: bool(changes)})
    await insert_ignoring_duplicates(conn, MeterSample, list(samples.values()))
    if updates:
        stmt = (
            update(ChargeSession)
            .where(ChargeSession.id == bindparam("_id"))
            .values({c: bindparam(c) for c in (*_UPDATED_COLUMNS, "updated_ms")})
        )
        await conn.execute(stmt, list(updates.values()))
    return out


async def _find(conn: AsyncConnection, station_id: str, transaction_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            select(*_COLUMNS).where(
                and_(ChargeSession.station_id == station_id, ChargeSession.transaction_id == transaction_id)
            )
        )
    ).first()
    return dict(row._mapping) if row is not None else None


def _sample_rows(session_id: int, readings: Sequence[Reading]) -> list[dict[str, Any]]:
    """Meter-sample rows of the readings that carry an energy register value."""
    return [
        {
            "session_id": session_id,
            "ts_ms": r.ts_ms,
            "energy_wh": r.energy_wh,
            "power_w": r.power_w,
            "soc": r.soc,
        }
        for r in readings
        if r.energy_wh is not None
    ]


async def _store_readings(conn: AsyncConnection, session_id: int, readings: Sequence[Reading]) -> None:
    rows = _sample_rows(session_id, readings)
    # one row per timestamp: a replayed reading is not stored twice
    unique = list({r["ts_ms"]: r for r in rows}.values())
    await insert_ignoring_duplicates(conn, MeterSample, unique)


def _progress(row: dict[str, Any], readings: Sequence[Reading]) -> dict[str, Any]:
    """Column changes from new readings: the register only moves forward (replays may come late)."""
    changes: dict[str, Any] = {}
    ordered = sorted(readings, key=lambda r: r.ts_ms)
    energies = [r.energy_wh for r in ordered if r.energy_wh is not None and math.isfinite(r.energy_wh)]
    if energies and max(energies) > row["meter_last_wh"]:
        changes["meter_last_wh"] = max(energies)
        changes["energy_wh"] = max(0.0, changes["meter_last_wh"] - row["meter_start_wh"])
    powers = [r.power_w for r in ordered if r.power_w is not None]
    if powers:
        changes["power_w"] = powers[-1]
    socs = [r.soc for r in ordered if r.soc is not None]
    if socs:
        changes["soc_last"] = socs[-1]
        if row["soc_start"] is None:
            changes["soc_start"] = socs[0]
    return changes


def _monotonic(samples: list[tuple[int, float]], start_ms: int, stop_ms: int) -> list[tuple[int, float]]:
    """Readings inside the session, sorted, the register never going back (a meter reset is not energy)."""
    out: list[tuple[int, float]] = []
    for ts, e in sorted(samples):
        ts = min(max(ts, start_ms), stop_ms)
        if out and e < out[-1][1]:
            e = out[-1][1]
        if out and ts == out[-1][0]:
            out[-1] = (ts, max(e, out[-1][1]))
        else:
            out.append((ts, e))
    return out
