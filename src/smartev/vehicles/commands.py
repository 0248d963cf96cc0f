"""Remote commands: described once, stored with id, expiry and audit, delivered, confirmed only by the car.

queued → delivered → succeeded / failed / rejected, or expired when the car does not answer in time.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from smartev.accounts.models import User
from smartev.clock import Clock, ms_to_datetime
from smartev.errors import InvalidInput, NotFound, RateLimited
from smartev.events import CommandStatusChanged, EventBus
from smartev.vehicles.models import Command, CommandEvent
from smartev.vehicles.ports import VehicleLink
from smartev.vehicles.service import Registry, VehicleRecord

logger = logging.getLogger(__name__)

OPEN = ("queued", "delivered")
FINAL_FROM_CAR = ("succeeded", "failed", "rejected")


class NoArgs(BaseModel):
    """A command without arguments."""

    model_config = ConfigDict(extra="forbid")


class ClimateArgs(BaseModel):
    """Turn the cabin climate on or off, optionally with a target temperature."""

    model_config = ConfigDict(extra="forbid")

    on: bool
    target_temperature: float | None = Field(None, ge=15, le=30, description="°C")


class ChargeArgs(BaseModel):
    """Start or stop charging, and/or set the charge limit."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["start", "stop"] | None = None
    limit: int | None = Field(None, ge=50, le=100, description="percent")

    @model_validator(mode="after")
    def _one_of(self) -> ChargeArgs:
        if self.action is None and self.limit is None:
            raise ValueError('give "action" ("start" or "stop") and/or "limit" (50-100 %)')
        return self


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """What a command is called, what it takes, and what guards it."""

    name: str
    description: str
    args: type[BaseModel]
    rate_limited: bool = False


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("lock", "Lock the doors", NoArgs),
        CommandSpec("unlock", "Unlock the doors", NoArgs, rate_limited=True),
        CommandSpec("climate", "Cabin climate on/off and target temperature", ClimateArgs),
        CommandSpec("charge", "Start/stop charging, set the charge limit", ChargeArgs),
        CommandSpec("honk_flash", "Honk and flash the lights", NoArgs),
    )
}


@dataclass(frozen=True, slots=True)
class CommandView:
    """A command as the API shows it."""

    id: str
    vin: str
    name: str
    args: dict[str, Any]
    status: str
    detail: str | None
    created_ms: int
    expires_ms: int
    updated_ms: int


class Commands:
    """The remote-command service."""

    def __init__(
        self,
        sessions: async_sessionmaker[Any],
        registry: Registry,
        link: VehicleLink,
        bus: EventBus,
        clock: Clock,
        *,
        default_ttl_s: int,
        unlock_per_min: int,
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._link = link
        self._bus = bus
        self._clock = clock
        self._default_ttl_s = default_ttl_s
        self._unlock_per_min = unlock_per_min
        self._recent: defaultdict[tuple[int, str], deque[int]] = defaultdict(deque)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.counters: defaultdict[str, int] = defaultdict(int)

    def validate(self, name: str, args: dict[str, Any] | None) -> dict[str, Any]:
        """The command's arguments, checked against its description; InvalidInput with the problem."""
        spec = COMMANDS.get(name)
        if spec is None:
            raise InvalidInput(f"unknown command {name!r}; known: {', '.join(COMMANDS)}", ("body", "name"))
        try:
            return spec.args.model_validate(args or {}).model_dump(exclude_none=True)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidInput(f"bad arguments for {name}: {problems}", ("body", "args")) from None

    def _check_rate(self, vehicle: VehicleRecord, name: str, now_ms: int) -> None:
        if not COMMANDS[name].rate_limited:
            return
        window = self._recent[(vehicle.id, name)]
        while window and window[0] <= now_ms - 60_000:
            window.popleft()
        if len(window) >= self._unlock_per_min:
            raise RateLimited(
                f"at most {self._unlock_per_min} {name} commands per minute for one car; wait a moment"
            )
        window.append(now_ms)

    async def create(
        self, user: User, vehicle: VehicleRecord, name: str, args: dict[str, Any] | None, ttl_s: int | None
    ) -> CommandView:
        """Store a command (queued) and start delivering it; it expires after `ttl_s` seconds."""
        clean = self.validate(name, args)
        now = self._clock.now_ms()
        self._check_rate(vehicle, name, now)
        ttl = ttl_s or self._default_ttl_s
        command = Command(
            id=secrets.token_hex(16),
            vehicle_id=vehicle.id,
            name=name,
            args=orjson.dumps(clean).decode(),
            status="queued",
            detail=None,
            created_by=user.id,
            created_ms=now,
            expires_ms=now + ttl * 1000,
            updated_ms=now,
        )
        async with self._sessions() as s:
            s.add(command)
            await s.flush()  # the command row must exist before its audit row refers to it
            s.add(
                CommandEvent(command_id=command.id, status="queued", detail=None, actor=user.email, at_ms=now)
            )
            await s.commit()
        self.counters["created"] += 1
        task = asyncio.ensure_future(self._deliver(vehicle.vin, command))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return self._view(command, vehicle.vin)

    async def _deliver(self, vin: str, command: Command) -> None:
        payload = {
            "id": command.id,
            "name": command.name,
            "args": orjson.loads(command.args),
            "expires_at": ms_to_datetime(command.expires_ms)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
        }
        try:
            await self._link.send_command(vin, payload)
        except Exception as exc:
            # stays queued: the expiry loop closes it if the broker never takes it
            logger.warning("command %s to a car could not be handed to the broker: %s", command.id, exc)
            self.counters["delivery_failed"] += 1
            return
        await self._transition(
            command.id, command.vehicle_id, vin, ("queued",), "delivered", None, "platform"
        )

    async def _transition(
        self,
        command_id: str,
        vehicle_id: int,
        vin: str,
        from_states: tuple[str, ...],
        status: str,
        detail: str | None,
        actor: str,
    ) -> bool:
        now = self._clock.now_ms()
        async with self._sessions() as s:
            result = await s.execute(
                update(Command)
                .where(
                    Command.id == command_id,
                    Command.vehicle_id == vehicle_id,
                    Command.status.in_(from_states),
                )
                .values(status=status, detail=detail, updated_ms=now)
            )
            changed = bool(getattr(result, "rowcount", 0))
            if changed:
                s.add(
                    CommandEvent(command_id=command_id, status=status, detail=detail, actor=actor, at_ms=now)
                )
            await s.commit()
        if changed:
            row = await self._load(command_id)
            self._bus.publish(CommandStatusChanged(vin, command_id, row.name if row else "", status, detail))
        return changed

    async def on_result(self, vin: str, payload: bytes) -> None:
        """A car's answer on `command-results`; only the car the command was sent to can answer it."""
        vehicle = self._registry.by_vin(vin)
        if vehicle is None:
            self.counters["result_unknown_vehicle"] += 1
            return
        try:
            doc = orjson.loads(payload)
            command_id, status = doc["id"], doc["status"]
            detail = doc.get("detail")
            if not isinstance(command_id, str) or status not in FINAL_FROM_CAR:
                raise ValueError
            detail = str(detail)[:1000] if detail is not None else None
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.counters["result_malformed"] += 1
            return
        row = await self._load(command_id)
        if row is None or row.vehicle_id != vehicle.id:
            self.counters["result_unknown_command"] += 1
            return
        if row.status not in OPEN or self._clock.now_ms() > row.expires_ms:
            self.counters["result_late_or_repeated"] += 1
            await self._audit(
                command_id,
                "ignored",
                f"late or repeated answer {status}: {detail or ''}",
                f"vehicle {vin[-6:]}",
            )
            return
        await self._transition(command_id, vehicle.id, vin, OPEN, status, detail, f"vehicle {vin[-6:]}")

    async def _audit(self, command_id: str, status: str, detail: str | None, actor: str) -> None:
        async with self._sessions() as s:
            s.add(
                CommandEvent(
                    command_id=command_id,
                    status=status,
                    detail=detail,
                    actor=actor,
                    at_ms=self._clock.now_ms(),
                )
            )
            await s.commit()

    async def expire_due(self) -> int:
        """Mark open commands past their expiry as expired; returns how many."""
        now = self._clock.now_ms()
        async with self._sessions() as s:
            due = (
                await s.execute(
                    select(Command.id, Command.vehicle_id).where(
                        Command.status.in_(OPEN), Command.expires_ms < now
                    )
                )
            ).all()
        count = 0
        for command_id, vehicle_id in due:
            rec = self._registry.by_id(vehicle_id)
            if await self._transition(
                command_id,
                vehicle_id,
                rec.vin if rec else "",
                OPEN,
                "expired",
                "the car did not confirm in time",
                "platform",
            ):
                count += 1
        return count

    async def run_expiry(self, every_s: float = 0.5) -> None:
        """Expire overdue commands until cancelled."""
        while True:
            try:
                await self.expire_due()
            except Exception:
                logger.exception("expiring commands failed; will retry")
            await asyncio.sleep(every_s)

    async def _load(self, command_id: str) -> Command | None:
        async with self._sessions() as s:
            command: Command | None = await s.get(Command, command_id)
            return command

    async def get(self, vehicle: VehicleRecord, command_id: str) -> CommandView:
        """One command of this car; NotFound if it belongs to another car."""
        row = await self._load(command_id)
        if row is None or row.vehicle_id != vehicle.id:
            raise NotFound(f"command {command_id[:40]} not found")
        return self._view(row, vehicle.vin)

    async def list_for(self, vehicle: VehicleRecord, limit: int = 50) -> list[CommandView]:
        """The car's most recent commands, newest first."""
        async with self._sessions() as s:
            rows = (
                await s.execute(
                    select(Command)
                    .where(Command.vehicle_id == vehicle.id)
                    .order_by(Command.created_ms.desc())
                    .limit(limit)
                )
            ).scalars()
            return [self._view(r, vehicle.vin) for r in rows]

    async def audit(self, vehicle: VehicleRecord, command_id: str) -> list[dict[str, Any]]:
        """Every status change of one command, oldest first."""
        await self.get(vehicle, command_id)
        async with self._sessions() as s:
            rows = (
                await s.execute(
                    select(CommandEvent)
                    .where(CommandEvent.command_id == command_id)
                    .order_by(CommandEvent.id)
                )
            ).scalars()
            return [
                {"status": r.status, "detail": r.detail, "actor": r.actor, "at_ms": r.at_ms} for r in rows
            ]

    @staticmethod
    def _view(row: Command, vin: str) -> CommandView:
        return CommandView(
            id=row.id,
            vin=vin,
            name=row.name,
            args=orjson.loads(row.args),
            status=row.status,
            detail=row.detail,
            created_ms=row.created_ms,
            expires_ms=row.expires_ms,
            updated_ms=row.updated_ms,
        )
