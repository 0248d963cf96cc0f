"""The composition root: builds every service from settings and runs them under one TaskGroup."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, text
from sqlalchemy.exc import DBAPIError, OperationalError

from smartev import __version__
from smartev.accounts.router import router as accounts_router
from smartev.accounts.security import TokenSigner
from smartev.accounts.service import Accounts
from smartev.clock import Clock, SystemClock
from smartev.csms.router import router as charging_router
from smartev.csms.runtime import Services
from smartev.csms.server import CentralSystem
from smartev.csms.sessions import ChargeSessions
from smartev.csms.stations import Stations
from smartev.csms.store import GroupCommit
from smartev.db import migrate
from smartev.db.engine import create_engine, session_factory
from smartev.energy.controller import SmartCharging
from smartev.energy.router import router as energy_router
from smartev.energy.sites import Sites
from smartev.errors import InvalidInput, SmartEVError
from smartev.events import EventBus
from smartev.settings import Settings
from smartev.transport.broker import EmbeddedBroker
from smartev.transport.mqtt import BrokerAddress, MqttLink
from smartev.vehicles.charging import ChargingView
from smartev.vehicles.commands import Commands
from smartev.vehicles.history import writer_for
from smartev.vehicles.ingest import Ingest
from smartev.vehicles.models import TelemetryMark
from smartev.vehicles.router import router as vehicles_router
from smartev.vehicles.service import Registry
from smartev.vehicles.twin import Twin
from smartev.vss import default_catalog
from smartev.web.router import mount as mount_web

logger = logging.getLogger(__name__)
SERVICE_USERNAME = "smartev-platform"
MARKS_RETENTION_MS = 14 * 86_400_000


class Platform:
    """Every service of one platform process, wired together."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.bus = EventBus()
        self.catalog = default_catalog()
        self.engine = create_engine(settings.database_url)
        self.sessions = session_factory(self.engine)
        self.accounts = Accounts(self.sessions, TokenSigner(settings.resolved_secret(), settings.token_ttl_s))
        self.registry = Registry(self.engine, self.sessions, self.accounts)
        self.charge_store = GroupCommit(self.engine, settings.ocpp.store_retry_s)
        self.stations = Stations(self.engine, self.sessions, self.accounts, self.charge_store)
        self.sites = Sites(self.engine, self.sessions)
        self.broker: EmbeddedBroker | None = None
        if settings.embedded_broker:
            service_password = secrets.token_urlsafe(32)
            self.broker = EmbeddedBroker(
                host=settings.mqtt_host,
                port=settings.mqtt_port,
                service_username=SERVICE_USERNAME,
                service_password=service_password,
                vehicles=self.registry,
            )
            self.address = BrokerAddress(
                settings.mqtt_host, settings.mqtt_port, SERVICE_USERNAME, service_password
            )
        else:
            self.address = BrokerAddress.from_url(settings.mqtt_url)
        worker = f"{socket.gethostname()}-{os.getpid()}" if settings.mqtt_shared_subscription else "main"
        self.link = MqttLink(
            self.address,
            client_id=settings.mqtt_client_id or f"smartev-platform-{worker}"[:64],
            shared=settings.mqtt_shared_subscription,
            clean_session=settings.mqtt_clean_session,
        )
        self.writer = writer_for(settings.database_url)
        # built in start(), once the signal ids are known
        self.twin: Twin
        self.ingest: Ingest
        self.commands: Commands
        self.charging: ChargeSessions
        self.central: CentralSystem
        self.smart_charging: SmartCharging
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def mqtt_public_url(self) -> str:
        """The broker URL handed to cars."""
        return self.settings.mqtt_public_url or self.address.public_url()

    async def start(self, tg: asyncio.TaskGroup) -> None:
        """Migrate, load state, start the broker and the background loops."""
        if self.settings.auto_migrate:
            await migrate.upgrade(self.engine)
        await self.registry.load(self.catalog)
        self.twin = Twin(self.catalog, self.registry.signal_ids)
        await self.twin.restore(self.engine)
        self.ingest = Ingest(
            catalog=self.catalog,
            registry=self.registry,
            twin=self.twin,
            writer=self.writer,
            link=self.link,
            bus=self.bus,
            settings=self.settings.ingest,
            clock=self.clock,
        )
        self.commands = Commands(
            self.sessions,
            self.registry,
            self.link,
            self.bus,
            self.clock,
            default_ttl_s=self.settings.command_default_ttl_s,
            unlock_per_min=self.settings.unlock_rate_per_min,
        )
        cars = ChargingView(self.registry, self.twin)
        self.charging = ChargeSessions(
            self.engine,
            self.sessions,
            self.charge_store,
            self.accounts,
            self.bus,
            cars,
            default_tariff=self.settings.ocpp.default_tariff,
        )
        await self.stations.load()
        await self.charging.load()
        await self.sites.load()
        self.central = CentralSystem(
            self.settings.ocpp,
            Services(
                self.stations,
                self.charging,
                self.bus,
                self.clock,
                heartbeat_interval_s=self.settings.ocpp.heartbeat_interval_s,
                response_timeout_s=self.settings.ocpp.response_timeout_s,
            ),
        )
        self.smart_charging = SmartCharging(
            self.sites, self.charging, self.central, cars, self.bus, self.clock, self.settings.energy
        )
        self.link.on_telemetry = self.ingest.submit
        self.link.on_status = self.ingest.status
        self.link.on_command_result = self.commands.on_result
        if self.broker is not None:
            await self.broker.start()
            self.address = BrokerAddress(
                self.address.host, self.broker.port, self.address.username, self.address.password
            )
            self.link._address = self.address
        self._tasks = [
            tg.create_task(self.link.run(), name="mqtt-link"),
            tg.create_task(self.ingest.run(), name="ingest-writer"),
            tg.create_task(self.commands.run_expiry(), name="command-expiry"),
            tg.create_task(self._housekeeping(), name="housekeeping"),
            tg.create_task(self.charge_store.run(), name="charging-writer"),
            tg.create_task(self._flush_stations(), name="stations-flush"),
        ]
        if self.settings.energy.enabled:
            self._tasks.append(tg.create_task(self.smart_charging.run(), name="smart-charging"))
        if self.settings.ocpp.enabled:
            await self.central.start()
        # start-up objects (catalog, registry, libraries) live for good: keep full collections from
        # walking them again and again (each one stalled the loop ~100 ms under load)
        gc.freeze()
        try:
            await asyncio.wait_for(self.link.connected.wait(), 15)
        except TimeoutError:
            logger.error(
                "could not connect to the MQTT broker at %s: %s",
                self.address.public_url(),
                self.link.last_error,
            )

    async def _every(self, period_s: float, what: str, work: Callable[[], Awaitable[Any]]) -> None:
        """Run `work` every `period_s`; log when it starts failing and when it works again, not every retry."""
        failing = False
        while True:
            await asyncio.sleep(period_s)
            try:
                await work()
                if failing:
                    logger.warning("%s works again", what)
                failing = False
            except Exception as exc:
                if not failing:
                    logger.error("%s failed, will retry: %s", what, exc)
                failing = True

    async def _housekeeping(self) -> None:
        """Flush the twin behind memory and prune old idempotency marks."""
        last_prune = 0

        async def work() -> None:
            nonlocal last_prune
            now = self.clock.now_ms()
            await self.twin.flush(self.engine, now)
            if now - last_prune > 3_600_000:
                async with self.engine.begin() as conn:
                    await conn.execute(
                        delete(TelemetryMark).where(TelemetryMark.stored_ms < now - MARKS_RETENTION_MS)
                    )
                last_prune = now

        await self._every(self.settings.ingest.twin_flush_s, "twin flush", work)

    async def _flush_stations(self) -> None:
        """Write stations' liveness and connector status behind memory."""
        await self._every(5, "stations flush", self.stations.flush)

    async def stop(self) -> None:
        """Flush what is in memory and release connections."""
        try:
            await asyncio.wait_for(self.stations.flush(), 5)
        except Exception as exc:
            logger.warning("final stations flush failed: %s", exc)
        try:
            await asyncio.wait_for(self.twin.flush(self.engine, self.clock.now_ms()), 5)
        except Exception as exc:
            logger.warning("final twin flush failed: %s", exc)
        if self.broker is not None:
            await self.broker.stop()
        await self.writer.close()
        await self.engine.dispose()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Platform]:
        """Run the platform's background work for the duration of the block."""
        async with asyncio.TaskGroup() as tg:
            await self.start(tg)
            try:
                yield self
            finally:
                # Stations first: a handler may be waiting for its commit, which needs the writer running.
                try:
                    await asyncio.wait_for(self.central.stop(), 10)
                except TimeoutError:
                    logger.warning("some station connections did not close within 10 s")
                await self._cancel_background()
        await self.stop()

    async def _cancel_background(self) -> None:
        """Cancel the background tasks and wait for them, cancelling again any that swallowed a cancel.

        Seen once in CI: under anyio's portal (schemathesis restarts the app's lifespan per test) the MQTT
        link's task stayed "cancelling" inside aiomqtt's message iterator, and shutdown waited forever.
        """
        for _ in range(10):
            pending = [t for t in self._tasks if not t.done()]
            if not pending:
                return
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1)
        logger.error("background tasks did not stop: %s", [t.get_name() for t in self._tasks if not t.done()])

    async def health(self) -> dict[str, Any]:
        """Database, broker and ingest health; `ok` is false with a reason when something is red."""
        db: dict[str, Any] = {"ok": True, "reason": None, "backend": self.engine.dialect.name}
        try:
            async with asyncio.timeout(3):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception as exc:
            db.update(ok=False, reason=f"database unreachable: {type(exc).__name__}")
        broker = self.link.health()
        if self.broker is not None:
            broker["embedded"] = self.broker.stats
        ingest = self.ingest.health()
        ok = db["ok"] and broker["ok"] and ingest["ok"]
        return {
            "status": "ok" if ok else "failing",
            "version": __version__,
            "database": db,
            "broker": broker,
            "ingest": ingest,
            "vehicles": {
                "registered": len(self.registry.all()),
                "online": sum(1 for c in self.twin.cars.values() if c.online),
            },
            "commands": dict(self.commands.counters),
            "ocpp": {
                **self.central.stats(),
                "writes_failing": self.charge_store.failing_since is not None,
                "commits": self.charge_store.commits,
                "writes": self.charge_store.writes,
            },
            "smart_charging": {"sites": len(self.sites.all()), **self.smart_charging.counters},
        }


def create_app(settings: Settings | None = None, platform: Platform | None = None) -> FastAPI:
    """The HTTP application; its lifespan runs the platform."""
    platform = platform or Platform(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with platform.running():
            yield

    app = FastAPI(
        title="smartev",
        version=__version__,
        description="Open smart-EV platform: connected cars (COVESA VSS), live twin, history, commands.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.platform = platform

    @app.exception_handler(SmartEVError)
    async def _domain_error(request: Request, exc: SmartEVError) -> JSONResponse:
        if isinstance(exc, InvalidInput):
            # the same shape as FastAPI's own 422 (HTTPValidationError), so one client parser reads both
            detail = [{"loc": list(exc.loc), "msg": exc.message, "type": "value_error"}]
            return JSONResponse({"detail": detail}, status_code=422)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    @app.exception_handler(OSError)
    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        logger.error("request failed, database unavailable: %s", type(exc).__name__)
        return JSONResponse({"detail": "the database is unavailable, try again shortly"}, status_code=503)

    @app.get(
        "/api/v1/health", tags=["health"], summary="Ingest, broker and database health (no token needed)"
    )
    async def health() -> JSONResponse:
        body = await platform.health()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    app.include_router(accounts_router)
    app.include_router(vehicles_router)
    app.include_router(charging_router)
    app.include_router(energy_router)
    mount_web(app, platform.settings.web)
    return app
