"""HTTP routes of the charging context: stations, id tags, tariffs, sessions, and commands to stations.

Operators see and command every station. An owner sees their home chargers and the sessions of their
cards and cars, and may remote-start their own charger for their own car only.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import Response, StreamingResponse

from smartev.accounts.dependencies import CurrentUser, StaffUser, is_staff
from smartev.accounts.models import User
from smartev.clock import datetime_to_ms, ms_to_datetime
from smartev.csms import v16, v201
from smartev.csms.control import ChargerControl, ChargingLimit
from smartev.csms.models import ChargeSession
from smartev.csms.schemas import (
    AvailabilityRequest,
    ChargingProfileRequest,
    ConfigurationChange,
    ConnectorOut,
    FirmwareRequest,
    IdTagCreate,
    IdTagOut,
    MeterSampleOut,
    Problem,
    RemoteStart,
    RemoteStop,
    ReservationRequest,
    ResetRequest,
    SessionDetail,
    SessionOut,
    StationAnswer,
    StationCreate,
    StationOut,
    StationPassword,
    StationRegistered,
    TariffCreate,
    TariffOut,
    TriggerRequest,
    UnlockRequest,
)
from smartev.csms.server import answer
from smartev.csms.stations import StationRecord
from smartev.csms.tariffs import Tariff
from smartev.errors import Conflict, Forbidden, InvalidInput, NotFound
from smartev.events import (
    ChargeSessionEnded,
    ChargeSessionStarted,
    ChargeSessionUpdated,
    ConnectorStatusChanged,
    StationConnectivityChanged,
)
from smartev.web.sse import event_stream, sse

if TYPE_CHECKING:
    from smartev.app import Platform

router = APIRouter(prefix="/api/v1", tags=["charging"])
# what a route that asks a station may answer besides its result (and 422 for a bad request)
ASKS_STATION: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "no such station (or session), or not yours"},
    409: {"model": Problem, "description": "the station is not connected, or refused the request"},
    504: {"model": Problem, "description": "the station is connected but did not answer in time"},
}


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def visible_station(p: Platform, user: User, station_id: str) -> StationRecord:
    """The station if the user may see it (operators: all; owners: their own chargers), else NotFound."""
    rec = p.stations.find(station_id)
    if rec is None or not (is_staff(user) or rec.owner_id == user.id):
        raise NotFound(f"no station {station_id}")
    return rec


async def visible_session(p: Platform, user: User, session_id: int) -> ChargeSession:
    """The session if the user may see it (their card, their car, their charger; operators: all)."""
    row = await p.charging.get(session_id)
    if not is_staff(user):
        station = p.stations.find(row.station_id)
        mine = row.user_id == user.id or (station is not None and station.owner_id == user.id)
        mine = mine or (row.vin is not None and any(r.vin == row.vin for r in p.registry.visible_to(user)))
        if not mine:
            raise NotFound(f"no charging session {session_id}")
    return row


def _station_out(p: Platform, rec: StationRecord, owners: dict[int, str]) -> StationOut:
    online = p.central.online(rec.id)
    faulted = any(c.status == "Faulted" for c in rec.connectors.values())
    tariffs = p.charging.tariffs()
    return StationOut(
        id=rec.id,
        owner=owners.get(rec.owner_id) if rec.owner_id else None,
        online=online,
        status=("faulted" if faulted else "online") if online else "offline",
        protocol=rec.protocol,
        vendor=rec.vendor,
        model=rec.model,
        serial=rec.serial,
        firmware=rec.firmware,
        firmware_status=p.central.services.firmware.get(rec.id),
        latitude=rec.latitude,
        longitude=rec.longitude,
        tariff=tariffs[rec.tariff_id][0] if rec.tariff_id in tariffs else None,
        last_heartbeat=ms_to_datetime(rec.last_heartbeat_ms) if rec.last_heartbeat_ms else None,
        last_boot=ms_to_datetime(rec.last_boot_ms) if rec.last_boot_ms else None,
        connectors=[
            ConnectorOut(
                evse_id=evse,
                connector_id=connector,
                status=c.status,
                error_code=c.error_code,
                updated_at=ms_to_datetime(c.updated_ms),
            )
            for (evse, connector), c in sorted(rec.connectors.items())
        ],
    )


def _tariff_id(p: Platform, name: str | None) -> int | None:
    if name is None:
        return None
    for tariff_id, (n, _) in p.charging.tariffs().items():
        if n == name:
            return tariff_id
    raise InvalidInput(f"no tariff named {name}", ("body", "tariff"))


def _control(p: Platform, user: User, station_id: str, staff_only: bool = True) -> ChargerControl:
    rec = visible_station(p, user, station_id)
    if staff_only and not is_staff(user):
        raise Forbidden("only operators may do this")
    return p.central.control(rec.id)


# --- stations ---


@router.post(
    "/stations",
    response_model=StationRegistered,
    status_code=status.HTTP_201_CREATED,
    summary="Register a station (operator); returns its Basic-auth password once",
)
async def register_station(body: StationCreate, request: Request, _: StaffUser) -> StationRegistered:
    p = _platform(request)
    rec, password = await p.stations.register(
        body.id,
        owner_email=body.owner,
        password=body.password,
        latitude=body.latitude,
        longitude=body.longitude,
        tariff_id=_tariff_id(p, body.tariff),
    )
    owners = await p.accounts.emails({rec.owner_id} if rec.owner_id else set())
    out = _station_out(p, rec, owners)
    return StationRegistered(**out.model_dump(), password=password, ocpp_url=p.central.url)


@router.get("/stations", response_model=list[StationOut], summary="Stations I may see, with live status")
async def list_stations(request: Request, user: CurrentUser) -> list[StationOut]:
    p = _platform(request)
    records = [r for r in p.stations.all() if is_staff(user) or r.owner_id == user.id]
    owners = await p.accounts.emails({r.owner_id for r in records if r.owner_id})
    return [_station_out(p, r, owners) for r in records]


@router.get(
    "/stations/live",
    summary="Live station events (server-sent events: station, connector, session)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stations_live(request: Request, user: CurrentUser) -> StreamingResponse:
    p = _platform(request)
    staff = is_staff(user)

    def encode(event: Any) -> bytes | None:
        if not staff:
            rec = p.stations.find(event.station_id)
            if rec is None or rec.owner_id != user.id:
                return None
        if isinstance(event, StationConnectivityChanged):
            return sse(
                "station",
                {"station_id": event.station_id, "online": event.online, "at": ms_to_datetime(event.at_ms)},
            )
        if isinstance(event, ConnectorStatusChanged):
            return sse("connector", dataclasses.asdict(event))
        status_word = {ChargeSessionStarted: "started", ChargeSessionUpdated: "updated"}.get(
            type(event), "ended"
        )
        data = {k: v for k, v in dataclasses.asdict(event).items() if k != "at_ms"}
        return sse("session", {**data, "status": status_word})

    return event_stream(
        p.bus,
        (
            StationConnectivityChanged,
            ConnectorStatusChanged,
            ChargeSessionStarted,
            ChargeSessionUpdated,
            ChargeSessionEnded,
        ),
        encode,
    )


@router.get("/stations/{station_id}", response_model=StationOut, summary="One station: status, connectors")
async def get_station(station_id: str, request: Request, user: CurrentUser) -> StationOut:
    p = _platform(request)
    rec = visible_station(p, user, station_id)
    return _station_out(p, rec, await p.accounts.emails({rec.owner_id} if rec.owner_id else set()))


@router.post(
    "/stations/{station_id}/password",
    response_model=StationPassword,
    summary="Give a station a new random password (operator); the old one stops working",
)
async def rotate_password(station_id: str, request: Request, _: StaffUser) -> StationPassword:
    p = _platform(request)
    password = await p.stations.set_password(station_id)
    # a leaked password must stop working now, not at the station's next reconnect
    p.central.disconnect(station_id, "its password was replaced")
    return StationPassword(password=password)


@router.get(
    "/stations/{station_id}/configuration",
    responses=ASKS_STATION,
    summary="Read the station's configuration live",
)
async def get_configuration(
    station_id: str,
    request: Request,
    user: CurrentUser,
    key: Annotated[list[str] | None, Query(description="keys to read; all when absent")] = None,
) -> dict[str, Any]:
    control = _control(_platform(request), user, station_id)
    result: dict[str, Any] = await answer(
        station_id, "the configuration", control.get_configuration(key), ("query", "key")
    )
    return result


@router.put(
    "/stations/{station_id}/configuration",
    responses=ASKS_STATION,
    response_model=dict[str, str],
    summary="Write configuration keys; returns each key's status",
)
async def set_configuration(
    station_id: str, body: ConfigurationChange, request: Request, user: CurrentUser
) -> dict[str, str]:
    control = _control(_platform(request), user, station_id)
    check = v16.check_setting if control.version == "ocpp1.6" else v201.check_setting
    for key, value in body.values.items():  # all of them before any is sent: none or all are tried
        try:
            check(key, value)
        except ValueError as exc:
            raise InvalidInput(str(exc), ("body", "values", key)) from None
    out = {}
    for key, value in body.values.items():
        out[key] = await answer(
            station_id, f"setting {key}", control.set_configuration(key, value), ("body", "values", key)
        )
    return out


@router.post(
    "/stations/{station_id}/remote-start",
    responses=ASKS_STATION,
    response_model=StationAnswer,
    summary="Start charging",
)
async def remote_start(
    station_id: str, body: RemoteStart, request: Request, user: CurrentUser
) -> StationAnswer:
    p = _platform(request)
    rec = visible_station(p, user, station_id)
    if not body.vin and not body.id_tag:
        raise InvalidInput("give the car's vin or an id_tag", ("body",))
    if body.vin:
        car = p.registry.get_for(user, body.vin)  # NotFound for someone else's car
        tag = car.vin
    else:
        assert body.id_tag is not None
        if not is_staff(user) and p.charging.authorize(body.id_tag).user_id != user.id:
            raise NotFound(f"no id tag {body.id_tag} of yours")
        tag = body.id_tag
    if not is_staff(user) and rec.owner_id != user.id:
        raise NotFound(f"no station {station_id}")
    auth = p.charging.authorize(tag)
    if not auth.accepted:
        # the station would start, ask, hear this and stop again: say it now instead
        raise Conflict(f"id tag {tag} may not charge: {auth.status}")
    control = p.central.control(rec.id)
    status_text = await answer(
        station_id, "the remote start", control.remote_start(tag, body.evse_id, secrets.randbelow(2**31 - 1))
    )
    return StationAnswer(status=status_text)


@router.post(
    "/stations/{station_id}/remote-stop",
    responses=ASKS_STATION,
    response_model=StationAnswer,
    summary="Stop charging",
)
async def remote_stop(
    station_id: str, body: RemoteStop, request: Request, user: CurrentUser
) -> StationAnswer:
    p = _platform(request)
    rec = visible_station(p, user, station_id)
    active = await p.charging.active_on(rec.id)
    if body.transaction_id is not None:
        active = [s for s in active if s.transaction_id == body.transaction_id]
    if not is_staff(user):
        active = [s for s in active if s.user_id == user.id or rec.owner_id == user.id]
    if not active:
        raise NotFound(
            f"no active session on station {station_id}"
            + (" with that transaction id" if body.transaction_id else "")
        )
    if len(active) > 1:
        raise InvalidInput(
            "more than one session is active: give the transaction_id", ("body", "transaction_id")
        )
    control = p.central.control(rec.id)
    status_text = await answer(station_id, "the remote stop", control.remote_stop(active[0].transaction_id))
    return StationAnswer(status=status_text, detail={"transaction_id": active[0].transaction_id})


@router.post(
    "/stations/{station_id}/reset",
    responses=ASKS_STATION,
    response_model=StationAnswer,
    summary="Reboot the station",
)
async def reset(station_id: str, body: ResetRequest, request: Request, user: CurrentUser) -> StationAnswer:
    control = _control(_platform(request), user, station_id)
    return StationAnswer(status=await answer(station_id, "the reset", control.reset(body.type)))


@router.post(
    "/stations/{station_id}/unlock",
    responses=ASKS_STATION,
    response_model=StationAnswer,
    summary="Release a stuck cable",
)
async def unlock(station_id: str, body: UnlockRequest, request: Request, user: CurrentUser) -> StationAnswer:
    control = _control(_platform(request), user, station_id, staff_only=False)
    return StationAnswer(
        status=await answer(station_id, "the unlock", control.unlock(body.evse_id, body.connector_id))
    )


@router.post(
    "/stations/{station_id}/availability",
    responses=ASKS_STATION,
    response_model=StationAnswer,
    summary="In or out of service",
)
async def availability(
    station_id: str, body: AvailabilityRequest, request: Request, user: CurrentUser
) -> StationAnswer:
    control = _control(_platform(request), user, station_id)
    return StationAnswer(
        status=await answer(
            station_id, "the availability change", control.change_availability(body.evse_id, body.operative)
        )
    )


@router.post(
    "/stations/{station_id}/trigger",
    responses=ASKS_STATION,
    response_model=StationAnswer,
    summary="Ask for a message now",
)
async def trigger(
    station_id: str, body: TriggerRequest, request: Request, user: CurrentUser
) -> StationAnswer:
    control = _control(_platform(request), user, station_id)
    return StationAnswer(
        status=await answer(station_id, "the trigger", control.trigger(body.message, body.evse_id))
    )


@router.post(
    "/stations/{station_id}/charging-profile",
    responses=ASKS_STATION,
    response_model=StationAnswer,
    summary="Cap power or current",
)
async def set_charging_profile(
    station_id: str, body: ChargingProfileRequest, request: Request, user: CurrentUser
) -> StationAnswer:
    control = _control(_platform(request), user, station_id)
    limit = ChargingLimit(
        limit=body.limit,
        unit=body.unit,
        evse_id=body.evse_id,
        duration_s=body.duration_s,
        purpose=body.purpose,
        transaction_id=body.transaction_id,
    )
    return StationAnswer(
        status=await answer(station_id, "the charging profile", control.set_charging_limit(limit))
    )


@router.delete(
    "/stations/{station_id}/charging-profile",
    responses=ASKS_STATION,
    response_model=StationAnswer,
    summary="Remove power caps",
)
async def clear_charging_profile(
    station_id: str,
    request: Request,
    user: CurrentUser,
    evse_id: Annotated[int | None, Query(ge=0)] = None,
) -> StationAnswer:
    control = _control(_platform(request), user, station_id)
    return StationAnswer(
        status=await answer(
            station_id, "clearing the charging profile", control.clear_charging_limit(evse_id, None)
        )
    )


@router.get(
    "/stations/{station_id}/composite-schedule",
    responses=ASKS_STATION,
    summary="The limits the station will apply",
)
async def composite_schedule(
    station_id: str,
    request: Request,
    user: CurrentUser,
    evse_id: Annotated[int, Query(ge=0)] = 0,
    duration_s: Annotated[int, Query(gt=0, le=7 * 86400)] = 3600,
    unit: Annotated[str | None, Query(pattern="^(W|A)$")] = None,
) -> dict[str, Any]:
    control = _control(_platform(request), user, station_id)
    result: dict[str, Any] = await answer(
        station_id, "the composite schedule", control.composite_schedule(evse_id, duration_s, unit)
    )
    return result


@router.post(
    "/stations/{station_id}/firmware",
    responses=ASKS_STATION,
    response_model=StationAnswer,
    summary="Install firmware",
)
async def update_firmware(
    station_id: str, body: FirmwareRequest, request: Request, user: CurrentUser
) -> StationAnswer:
    control = _control(_platform(request), user, station_id)
    at = body.retrieve_at or datetime.now(UTC)
    return StationAnswer(
        status=await answer(
            station_id,
            "the firmware update",
            control.update_firmware(body.location, at, secrets.randbelow(2**31 - 1)),
        )
    )


@router.post(
    "/stations/{station_id}/reservations",
    responses=ASKS_STATION,
    response_model=StationAnswer,
    summary="Reserve an EVSE",
)
async def reserve(
    station_id: str, body: ReservationRequest, request: Request, user: CurrentUser
) -> StationAnswer:
    control = _control(_platform(request), user, station_id)
    reservation_id = body.reservation_id or secrets.randbelow(2**31 - 2) + 1
    status_text = await answer(
        station_id,
        "the reservation",
        control.reserve(reservation_id, body.evse_id, body.id_tag, body.expires_at),
    )
    return StationAnswer(status=status_text, detail={"reservation_id": reservation_id})


@router.delete(
    "/stations/{station_id}/reservations/{reservation_id}",
    responses=ASKS_STATION,
    response_model=StationAnswer,
    summary="Cancel it",
)
async def cancel_reservation(
    station_id: str,
    reservation_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    request: Request,
    user: CurrentUser,
) -> StationAnswer:
    control = _control(_platform(request), user, station_id)
    return StationAnswer(
        status=await answer(station_id, "the cancellation", control.cancel_reservation(reservation_id))
    )


@router.post(
    "/stations/{station_id}/local-list",
    responses=ASKS_STATION,
    response_model=StationAnswer,
    summary="Push every id tag with its status to the station's local authorisation list",
)
async def push_local_list(station_id: str, request: Request, user: CurrentUser) -> StationAnswer:
    p = _platform(request)
    control = _control(p, user, station_id)
    entries = [(tag, auth.status) for tag, auth in p.charging.local_list()]
    version = int(datetime.now(UTC).timestamp())
    status_text = await answer(station_id, "the local list", control.send_local_list(version, entries))
    return StationAnswer(status=status_text, detail={"version": version, "entries": len(entries)})


# --- id tags and tariffs ---


@router.post(
    "/id-tags", response_model=IdTagOut, status_code=status.HTTP_201_CREATED, summary="Add an id tag"
)
async def add_id_tag(body: IdTagCreate, request: Request, _: StaffUser) -> IdTagOut:
    p = _platform(request)
    row = await p.charging.add_tag(
        body.tag,
        body.kind,
        owner_email=body.owner,
        vin=body.vin,
        expiry_ms=datetime_to_ms(body.expires_at) if body.expires_at else None,
    )
    owners = await p.accounts.emails({row.user_id} if row.user_id else set())
    return _tag_out(row, owners)


@router.get("/id-tags", response_model=list[IdTagOut], summary="Id tags (owners: their own)")
async def list_id_tags(request: Request, user: CurrentUser) -> list[IdTagOut]:
    p = _platform(request)
    rows = p.charging.tags(None if is_staff(user) else user)
    owners = await p.accounts.emails({r.user_id for r in rows if r.user_id})
    return [_tag_out(r, owners) for r in rows]


@router.post("/id-tags/{tag}/block", response_model=IdTagOut, summary="Block a lost card")
async def block_id_tag(tag: str, request: Request, _: StaffUser) -> IdTagOut:
    p = _platform(request)
    row = await p.charging.set_tag_blocked(tag, True)
    return _tag_out(row, await p.accounts.emails({row.user_id} if row.user_id else set()))


def _tag_out(row: Any, owners: dict[int, str]) -> IdTagOut:
    return IdTagOut(
        tag=row.tag,
        kind=row.kind,
        owner=owners.get(row.user_id) if row.user_id else None,
        vin=row.vin,
        blocked=row.blocked,
        expires_at=ms_to_datetime(row.expiry_ms) if row.expiry_ms else None,
    )


@router.post(
    "/tariffs", response_model=TariffOut, status_code=status.HTTP_201_CREATED, summary="Add a tariff"
)
async def add_tariff(body: TariffCreate, request: Request, _: StaffUser) -> TariffOut:
    p = _platform(request)
    try:
        tariff = Tariff.from_dict(body.tariff)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, ("body", "tariff", *exc.loc)) from None
    tariff_id = await p.charging.add_tariff(body.name, tariff)
    return TariffOut(id=tariff_id, name=body.name, tariff=tariff.to_dict())


@router.get("/tariffs", response_model=list[TariffOut], summary="Tariffs")
async def list_tariffs(request: Request, _: CurrentUser) -> list[TariffOut]:
    return [
        TariffOut(id=i, name=n, tariff=t.to_dict())
        for i, (n, t) in sorted(_platform(request).charging.tariffs().items())
    ]


# --- sessions ---


def _session_out(s: ChargeSession) -> dict[str, Any]:
    return dict(
        id=s.id,
        station=s.station_id,
        transaction_id=s.transaction_id,
        evse_id=s.evse_id,
        connector_id=s.connector_id,
        status=s.status,
        vin=s.vin,
        linked_by=s.linked_by,
        id_tag=s.id_tag,
        start=ms_to_datetime(s.start_ms),
        stop=ms_to_datetime(s.stop_ms) if s.stop_ms else None,
        duration_s=(s.stop_ms - s.start_ms) / 1000 if s.stop_ms else None,
        energy_wh=round(s.energy_wh, 1),
        car_energy_wh=s.car_energy_wh,
        power_w=s.power_w,
        soc_start=s.soc_start,
        soc_stop=s.soc_last,
        stop_reason=s.stop_reason,
        cost=s.cost,
        currency=s.currency,
        cost_breakdown=orjson.loads(s.cost_breakdown) if s.cost_breakdown else None,
        offline=s.offline,
    )


CSV_COLUMNS = (
    "id", "station", "transaction_id", "evse_id", "vin", "id_tag", "start", "stop", "duration_s",
    "energy_wh", "car_energy_wh", "soc_start", "soc_stop", "stop_reason", "cost", "currency", "status",
)  # fmt: skip


def _csv_cell(value: Any) -> Any:
    """A value as a spreadsheet should read it: text that would start a formula is quoted with a '."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        # OWASP's advice against CSV injection: station ids and id tags may start with = + - @
        return "'" + value
    return value


@router.get(
    "/charging-sessions",
    response_model=list[SessionOut],
    summary="Charging sessions, newest first; `format=csv` for a spreadsheet",
    responses={200: {"content": {"text/csv": {}}}},
)
async def list_sessions(
    request: Request,
    user: CurrentUser,
    station: str | None = None,
    vin: str | None = None,
    status_: Annotated[str | None, Query(alias="status", pattern="^(active|ended)$")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> Any:
    p = _platform(request)
    owner = None if is_staff(user) else user
    rows = await p.charging.search(
        owner,
        station=station,
        vin=vin,
        status=status_,
        since_ms=datetime_to_ms(since) if since else None,
        until_ms=datetime_to_ms(until) if until else None,
        own_station_ids=[r.id for r in p.stations.all() if r.owner_id == user.id] if owner else (),
        own_vins=[r.vin for r in p.registry.visible_to(user)] if owner else (),
        limit=limit,
    )
    out = [_session_out(r) for r in rows]
    if format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in out:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})
        return Response(
            buffer.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="charging-sessions.csv"'},
        )
    return [SessionOut(**r) for r in out]


@router.get(
    "/charging-sessions/{session_id}", response_model=SessionDetail, summary="One session and its meter"
)
async def get_session(
    session_id: Annotated[int, Path(ge=1, le=2**31 - 1)], request: Request, user: CurrentUser
) -> SessionDetail:
    p = _platform(request)
    row = await visible_session(p, user, session_id)
    samples = [
        MeterSampleOut(ts=ms_to_datetime(s.ts_ms), energy_wh=s.energy_wh, power_w=s.power_w, soc=s.soc)
        for s in await p.charging.samples(session_id)
    ]
    return SessionDetail(**_session_out(row), samples=samples)


@router.get(
    "/vehicles/{vin}/charging-sessions",
    response_model=list[SessionOut],
    summary="The car's charge history: the charger's meter energy next to the car's battery energy",
)
async def vehicle_sessions(
    vin: str, request: Request, user: CurrentUser, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> list[SessionOut]:
    p = _platform(request)
    rec = p.registry.get_for(user, vin)
    rows = await p.charging.search(None, vin=rec.vin, limit=limit)
    return [SessionOut(**_session_out(r)) for r in rows]
