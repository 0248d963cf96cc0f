"""HTTP routes of the vehicles context: thin — authorise, call the service, shape the answer."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, status
from fastapi.responses import Response, StreamingResponse

from smartev.accounts.dependencies import CurrentUser, StaffUser
from smartev.clock import datetime_to_ms, ms_to_datetime
from smartev.errors import InvalidInput
from smartev.events import CommandStatusChanged, SignalsChanged, VehicleConnectivityChanged
from smartev.vehicles import fleet, history
from smartev.vehicles.commands import CommandView
from smartev.vehicles.schemas import (
    CommandCreate,
    CommandEventOut,
    CommandOut,
    FleetCar,
    FleetPage,
    FleetPositions,
    FleetSummary,
    History,
    HistoryPoint,
    SignalInfo,
    SignalValue,
    TelemetryErrorOut,
    VehicleCreate,
    VehicleOut,
    VehicleRegistered,
    VehicleState,
)
from smartev.vehicles.service import VehicleRecord
from smartev.vehicles.signals import decode
from smartev.web.sse import event_stream, sse

if TYPE_CHECKING:
    from smartev.app import Platform

router = APIRouter(prefix="/api/v1", tags=["vehicles"])
MAX_POINTS = 50_000
_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def _vehicle_out(p: Platform, rec: VehicleRecord, owners: dict[int, str]) -> VehicleOut:
    car = p.twin.get(rec.id)
    return VehicleOut(
        vin=rec.vin,
        model=rec.model,
        owner=owners.get(rec.owner_id),
        online=car.online,
        last_seen=ms_to_datetime(car.last_seen_ms) if car.last_seen_ms else None,
    )


def _command_out(c: CommandView) -> CommandOut:
    return CommandOut(
        id=c.id,
        vin=c.vin,
        name=c.name,
        args=c.args,
        status=c.status,
        detail=c.detail,
        created_at=ms_to_datetime(c.created_ms),
        expires_at=ms_to_datetime(c.expires_ms),
        updated_at=ms_to_datetime(c.updated_ms),
    )


@router.post(
    "/vehicles",
    response_model=VehicleRegistered,
    status_code=status.HTTP_201_CREATED,
    summary="Register a car (operator); returns its MQTT credentials once",
)
async def register_vehicle(body: VehicleCreate, request: Request, _: StaffUser) -> VehicleRegistered:
    p = _platform(request)
    rec, secret = await p.registry.register(body.vin, body.model, body.owner)
    out = _vehicle_out(p, rec, await p.accounts.emails({rec.owner_id}))
    return VehicleRegistered(
        **out.model_dump(), mqtt_url=p.mqtt_public_url, mqtt_username=rec.vin, mqtt_password=secret
    )


@router.get("/vehicles", response_model=list[VehicleOut], summary="The cars I may see")
async def list_vehicles(
    request: Request,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[VehicleOut]:
    p = _platform(request)
    records = sorted(p.registry.visible_to(user), key=lambda r: r.vin)[offset : offset + limit]
    owners = await p.accounts.emails({r.owner_id for r in records})
    return [_vehicle_out(p, r, owners) for r in records]


@router.get("/vehicles/{vin}", response_model=VehicleOut, summary="One car")
async def get_vehicle(vin: str, request: Request, user: CurrentUser) -> VehicleOut:
    p = _platform(request)
    rec = p.registry.get_for(user, vin)
    return _vehicle_out(p, rec, await p.accounts.emails({rec.owner_id}))


@router.get("/vehicles/{vin}/state", response_model=VehicleState, summary="The car's live twin")
async def get_state(vin: str, request: Request, user: CurrentUser) -> VehicleState:
    p = _platform(request)
    rec = p.registry.get_for(user, vin)
    car = p.twin.get(rec.id)
    return VehicleState(
        vin=rec.vin,
        online=car.online,
        last_seen=ms_to_datetime(car.last_seen_ms) if car.last_seen_ms else None,
        signals={
            path: SignalValue(value=v, ts=ms_to_datetime(ts)) for path, (v, ts) in sorted(car.signals.items())
        },
    )


def _parse_interval(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    m = _INTERVAL.match(text.strip())
    if not m:
        raise InvalidInput(
            "interval must be a number of seconds or e.g. 500ms, 30s, 5m, 1h, 1d", ("query", "interval")
        )
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if not 0.001 <= seconds <= 366 * 86400:
        raise InvalidInput("interval must be between 1 ms and 366 days", ("query", "interval"))
    return seconds


@router.get(
    "/vehicles/{vin}/history", response_model=History, summary="A signal's history, optionally downsampled"
)
async def get_history(
    vin: str,
    request: Request,
    user: CurrentUser,
    path: Annotated[str, Query(max_length=255, description="VSS path, e.g. Vehicle.Speed")],
    start: Annotated[datetime | None, Query(description="default: 24 h before end")] = None,
    end: Annotated[datetime | None, Query(description="default: now")] = None,
    interval: Annotated[
        str | None, Query(max_length=20, description="bucket size: seconds or 500ms/30s/5m/1h/1d")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 10_000,
) -> History:
    p = _platform(request)
    rec = p.registry.get_for(user, vin)
    signal = p.catalog.get(path)
    if signal is None:
        raise InvalidInput(p.catalog.unknown_reason(path), ("query", "path"))
    try:
        end_dt = end or p.clock.now()
        start_dt = start or end_dt - timedelta(hours=24)
        start_ms, end_ms = datetime_to_ms(start_dt), datetime_to_ms(end_dt)
    except (OverflowError, ValueError, OSError):
        raise InvalidInput("start/end are out of range", ("query", "start")) from None
    if start_ms >= end_ms:
        raise InvalidInput("start must be before end", ("query", "start"))
    seconds = _parse_interval(interval)
    interval_ms = max(1, int(seconds * 1000)) if seconds else None
    points, truncated = await history.query(
        p.engine,
        rec.id,
        p.registry.signal_ids[path],
        start_ms,
        end_ms,
        interval_ms=interval_ms,
        numeric=signal.is_numeric and signal.datatype != "boolean",
        limit=limit,
    )
    if interval_ms and signal.is_numeric and signal.datatype != "boolean":
        values = [HistoryPoint(ts=ms_to_datetime(ts), value=num) for ts, num, _ in points]
        aggregate: str | None = "mean"
    else:
        values = [
            HistoryPoint(ts=ms_to_datetime(ts), value=decode(signal, num, text)) for ts, num, text in points
        ]
        aggregate = "last" if interval_ms else None
    return History(
        path=path,
        start=ms_to_datetime(start_ms),
        end=ms_to_datetime(end_ms),
        interval=seconds,
        aggregate=aggregate,
        truncated=truncated,
        points=values,
    )


@router.post(
    "/vehicles/{vin}/commands",
    response_model=CommandOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a remote command; it succeeds only when the car confirms",
)
async def send_command(vin: str, body: CommandCreate, request: Request, user: CurrentUser) -> CommandOut:
    p = _platform(request)
    rec = p.registry.get_for(user, vin)
    return _command_out(await p.commands.create(user, rec, body.name, body.args, body.ttl_s))


@router.get("/vehicles/{vin}/commands", response_model=list[CommandOut], summary="The car's recent commands")
async def list_commands(
    vin: str, request: Request, user: CurrentUser, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[CommandOut]:
    p = _platform(request)
    rec = p.registry.get_for(user, vin)
    return [_command_out(c) for c in await p.commands.list_for(rec, limit)]


@router.get(
    "/vehicles/{vin}/commands/{command_id}", response_model=CommandOut, summary="One command's status"
)
async def get_command(vin: str, command_id: str, request: Request, user: CurrentUser) -> CommandOut:
    p = _platform(request)
    rec = p.registry.get_for(user, vin)
    return _command_out(await p.commands.get(rec, command_id))


@router.get(
    "/vehicles/{vin}/commands/{command_id}/audit",
    response_model=list[CommandEventOut],
    summary="A command's audit trail",
)
async def get_command_audit(
    vin: str, command_id: str, request: Request, user: CurrentUser
) -> list[CommandEventOut]:
    p = _platform(request)
    rec = p.registry.get_for(user, vin)
    return [
        CommandEventOut(
            status=e["status"], detail=e["detail"], actor=e["actor"], at=ms_to_datetime(e["at_ms"])
        )
        for e in await p.commands.audit(rec, command_id)
    ]


@router.post(
    "/vehicles/{vin}/mqtt-credentials",
    response_model=VehicleRegistered,
    summary="Issue new MQTT credentials for a car (operator); the old password stops working",
)
async def rotate_credentials(vin: str, request: Request, user: StaffUser) -> VehicleRegistered:
    p = _platform(request)
    rec = p.registry.get_for(user, vin)
    secret = await p.registry.rotate_secret(rec.vin)
    out = _vehicle_out(p, rec, await p.accounts.emails({rec.owner_id}))
    return VehicleRegistered(
        **out.model_dump(), mqtt_url=p.mqtt_public_url, mqtt_username=rec.vin, mqtt_password=secret
    )


@router.get(
    "/vehicles/{vin}/live",
    summary="Live updates of the car (server-sent events: signals, connectivity, commands)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def live(vin: str, request: Request, user: CurrentUser) -> StreamingResponse:
    p = _platform(request)
    rec = p.registry.get_for(user, vin)

    def encode(event: Any) -> bytes | None:
        return _sse(event) if event.vin == rec.vin else None

    return event_stream(p.bus, (SignalsChanged, VehicleConnectivityChanged, CommandStatusChanged), encode)


def _sse(event: Any) -> bytes:
    if isinstance(event, SignalsChanged):
        data: dict[str, Any] = {
            "signals": {
                k: {"value": v, "ts": ms_to_datetime(ts).isoformat()} for k, (v, ts) in event.signals.items()
            }
        }
        kind = "signals"
    elif isinstance(event, VehicleConnectivityChanged):
        data, kind = {"online": event.online, "at": ms_to_datetime(event.at_ms).isoformat()}, "connectivity"
    else:
        data = {"id": event.command_id, "name": event.name, "status": event.status, "detail": event.detail}
        kind = "command"
    return sse(kind, data)


@router.get("/signals", response_model=list[SignalInfo], summary="Search the VSS signal catalog")
async def search_signals(
    request: Request,
    _: CurrentUser,
    q: Annotated[str, Query(max_length=200)] = "",
    limit: Annotated[int, Query(ge=1, le=2000)] = 100,
) -> list[SignalInfo]:
    p = _platform(request)
    return [
        SignalInfo(
            path=s.path,
            type=s.type,
            datatype=s.datatype,
            unit=s.unit,
            min=s.min,
            max=s.max,
            allowed=list(s.allowed) if s.allowed is not None else None,
            description=s.description,
        )
        for s in p.catalog.search(q, limit)
    ]


# -- the fleet at a glance --------------------------------------------------------------------------------


async def _fleet_rows(p: Platform, user: CurrentUser, *, with_owners: bool) -> list[fleet.FleetRow]:
    records = sorted(p.registry.visible_to(user), key=lambda r: r.vin)
    owners = await p.accounts.emails({r.owner_id for r in records}) if with_owners else {}
    return fleet.rows(records, p.twin, owners)


@router.get(
    "/fleet/summary", response_model=FleetSummary, summary="How many cars drive, charge, park, are offline"
)
async def fleet_summary(request: Request, user: CurrentUser) -> FleetSummary:
    p = _platform(request)
    cars = p.twin.cars
    states = (
        fleet.state_of(cars[r.id]) if r.id in cars else fleet.CarState.offline
        for r in p.registry.visible_to(user)
    )
    return FleetSummary(**fleet.summary(states))


@router.get(
    "/fleet/vehicles", response_model=FleetPage, summary="The fleet table: search, filter, sort, page"
)
async def fleet_vehicles(
    request: Request,
    user: CurrentUser,
    q: Annotated[str, Query(max_length=100, description="part of a VIN, model or owner email")] = "",
    state: fleet.CarState | None = None,
    sort: Annotated[str, Query(pattern="^(" + "|".join(fleet.SORT_KEYS) + ")$")] = "vin",
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> FleetPage:
    p = _platform(request)
    # every owner's email only when the search or the order needs them; else just the page's
    needs_owners = bool(q.strip()) or sort == "owner"
    chosen = fleet.select(
        await _fleet_rows(p, user, with_owners=needs_owners),
        q=q,
        state=state,
        sort=sort,
        descending=order == "desc",
    )
    page = chosen[offset : offset + limit]
    owners = (
        {r.record.owner_id: r.owner for r in page if r.owner}
        if needs_owners
        else await p.accounts.emails({r.record.owner_id for r in page})
    )
    return FleetPage(
        total=len(chosen),
        items=[
            FleetCar(
                vin=r.record.vin,
                model=r.record.model,
                owner=owners.get(r.record.owner_id),
                online=r.online,
                last_seen=ms_to_datetime(r.last_seen_ms) if r.last_seen_ms else None,
                state=r.state.value,
                soc=r.soc,
                range_km=r.range_km,
                speed=r.speed,
                lat=r.lat,
                lon=r.lon,
            )
            for r in page
        ],
    )


@router.get(
    "/fleet/positions", response_model=FleetPositions, summary="Where every car I may see is (for maps)"
)
async def fleet_positions(request: Request, user: CurrentUser) -> Response:
    p = _platform(request)
    rows = [
        [r.record.vin, r.lat, r.lon, r.state.value]
        for r in await _fleet_rows(p, user, with_owners=False)
        if r.lat is not None and r.lon is not None
    ]
    # 10,000 rows: serialised directly (the model above documents the shape; validating it costs ~100 ms)
    return Response(orjson.dumps({"rows": rows}), media_type="application/json")


@router.get(
    "/vehicles/{vin}/telemetry-errors",
    response_model=list[TelemetryErrorOut],
    summary="Signals and messages of this car the platform refused, newest first (operator)",
)
async def telemetry_errors(vin: str, request: Request, user: StaffUser) -> list[TelemetryErrorOut]:
    p = _platform(request)
    rec = p.registry.get_for(user, vin)
    return [
        TelemetryErrorOut(at=ms_to_datetime(e.at_ms), seq=e.seq, path=e.path, reason=e.reason)
        for e in p.ingest.errors.of(rec.vin)
    ]
