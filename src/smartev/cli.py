"""The `smartev` command: serve, demo, simulate, db upgrade, users, mqtt acl, agent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.panel import Panel

from smartev.settings import Settings

if TYPE_CHECKING:
    from smartev.sim.chargers import ChargerFleet, SimulatedStation, StationIdentity
    from smartev.sim.fleet import Fleet

app = typer.Typer(
    help="smartev: an open smart-EV service platform.", no_args_is_help=True, add_completion=False
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
mqtt_app = typer.Typer(help="External MQTT broker configuration.", no_args_is_help=True)
agent_app = typer.Typer(
    help="The in-car agent: stream a car's signals, keep them until stored, obey commands.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(mqtt_app, name="mqtt")
app.add_typer(agent_app, name="agent")
console = Console(soft_wrap=True)

DatabaseUrl = Annotated[
    str | None, typer.Option(help="sqlite:///path or postgresql://... [env SMARTEV_DATABASE_URL]")
]
DataDir = Annotated[
    Path | None, typer.Option(help="where the SQLite file and dev secret live [env SMARTEV_DATA_DIR]")
]


def _settings(**overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        base = Settings()
        return Settings(
            **{**base.model_dump(exclude={"secret_key"}), "secret_key": base.secret_key, **values}
        )
    except ValueError as exc:
        console.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("amqtt", "transitions", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)


async def _serve(settings: Settings, on_started: Any = None) -> None:
    import uvicorn

    from smartev.app import Platform, create_app
    from smartev.errors import Unavailable

    if (
        settings.embedded_broker
        and settings.mqtt_port
        and not _port_free(settings.mqtt_host, settings.mqtt_port)
    ):
        raise Unavailable(
            f"MQTT port {settings.mqtt_port} is in use (another broker?). Choose another with --mqtt-port or "
            "SMARTEV_MQTT_PORT, or use that broker with --mqtt-url mqtt://host:port"
        )
    if not _port_free(settings.http_host, settings.http_port):
        raise Unavailable(
            f"HTTP port {settings.http_port} is in use; choose another with --http-port or SMARTEV_HTTP_PORT"
        )
    ocpp = settings.ocpp
    if ocpp.enabled and ocpp.port and not _port_free(ocpp.host, ocpp.port):
        raise Unavailable(
            f"OCPP port {ocpp.port} is in use; choose another with --ocpp-port or SMARTEV_OCPP__PORT"
        )
    platform = Platform(settings)
    extra: asyncio.Task[None] | None = None

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # The simulators go first, while the platform still answers their last messages: a station
            # message that arrives after the platform stopped its writers would hold up the shutdown.
            await _stop(extra)
            await super().shutdown(sockets)

    server = Server(
        uvicorn.Config(
            create_app(platform=platform),
            host=settings.http_host,
            port=settings.http_port,
            log_level="warning",
            lifespan="on",
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn offers no started event)
        await asyncio.sleep(0.05)
    if serving.done():
        await serving
        return
    try:
        if on_started is not None:
            extra = asyncio.create_task(on_started(platform))
        await serving
    finally:
        if extra is not None:
            extra.cancel()


async def _stop(task: asyncio.Task[None] | None, timeout_s: float = 10.0) -> None:
    """Cancel `task` and give it a moment to close its connections."""
    if task is None or task.done():
        return
    task.cancel()
    await asyncio.wait({task}, timeout=timeout_s)


@app.command()
def serve(
    http_host: Annotated[str | None, typer.Option(help="[env SMARTEV_HTTP_HOST]")] = None,
    http_port: Annotated[int | None, typer.Option(help="[env SMARTEV_HTTP_PORT, default 8000]")] = None,
    mqtt_port: Annotated[
        int | None, typer.Option(help="embedded broker port [env SMARTEV_MQTT_PORT, default 1883]")
    ] = None,
    mqtt_url: Annotated[
        str | None,
        typer.Option(help="use an external broker, e.g. mqtt://user:pass@host:1883 [env SMARTEV_MQTT_URL]"),
    ] = None,
    ocpp_port: Annotated[
        int | None,
        typer.Option(
            help="OCPP central system port, ws://host:PORT/ocpp/{station} [env SMARTEV_OCPP__PORT, 9000]"
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the platform: HTTP API, MQTT ingest, commands, OCPP central system."""
    from smartev.errors import SmartEVError

    _logging(verbose)
    settings = _settings(
        http_host=http_host,
        http_port=http_port,
        mqtt_port=mqtt_port,
        mqtt_url=mqtt_url,
        database_url=database_url,
        data_dir=data_dir,
    )
    if ocpp_port is not None:
        settings.ocpp.port = ocpp_port

    async def started(platform: Any) -> None:
        ocpp = f", OCPP {platform.central.url}/{{station}}" if settings.ocpp.enabled else ""
        console.print(
            f"smartev serving on http://{settings.http_host}:{settings.http_port} "
            f"(docs /docs), MQTT {platform.mqtt_public_url}{ocpp}, database {platform.engine.dialect.name}"
        )

    try:
        asyncio.run(_serve(settings, started))
    except SmartEVError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


DEMO_OWNER = ("owner@demo.smartev", "demo-owner-pw")
DEMO_OWNER_2 = ("neighbour@demo.smartev", "demo-neighbour-pw")
DEMO_OPERATOR = ("operator@demo.smartev", "demo-operator-pw")
DEMO_CARD = "DEMO-CARD-0001"  # the first owner's RFID card
_DEMO_AUTOCHARGE_CARS = 5


@app.command()
def demo(
    cars: Annotated[int, typer.Option(min=1, max=10_000, help="simulated cars")] = 20,
    chargers: Annotated[
        int,
        typer.Option(
            min=0,
            max=100,
            help="simulated OCPP charging stations: a home wallbox per demo owner, the rest public fast chargers",
        ),
    ] = 6,
    seed: Annotated[int, typer.Option(help="seed of the simulated fleet")] = 1,
    speed: Annotated[float, typer.Option(min=0.1, max=3600, help="simulated seconds per real second")] = 1.0,
    http_port: Annotated[int, typer.Option(help="HTTP port (a free one is picked if taken)")] = 8000,
    mqtt_port: Annotated[
        int, typer.Option(help="embedded broker port (a free one is picked if taken)")
    ] = 1883,
    ocpp_port: Annotated[int, typer.Option(help="OCPP port (a free one is picked if taken)")] = 9000,
    data_dir: Annotated[Path, typer.Option(help="where the demo keeps its SQLite database")] = Path(
        "smartev-data"
    ),
    fault_rate: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="share of cars that develop a fault (DTC, tyre leak, weak 12 V) in a week"
        ),
    ] = 0.1,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the platform on embedded defaults with simulated cars and charging stations around Berlin."""
    _logging(verbose)
    host = "127.0.0.1"
    http_port = http_port if _port_free(host, http_port) else _free_port(host)
    mqtt_port = mqtt_port if _port_free(host, mqtt_port) else _free_port(host)
    ocpp_port = ocpp_port if _port_free(host, ocpp_port) else _free_port(host)
    settings = _settings(
        http_host=host,
        http_port=http_port,
        mqtt_port=mqtt_port,
        mqtt_url="",
        database_url=f"sqlite+aiosqlite:///{data_dir / 'smartev.db'}",
        data_dir=data_dir,
    )
    settings.ocpp.host, settings.ocpp.port, settings.ocpp.enabled = host, ocpp_port, True

    async def started(platform: Any) -> None:
        from smartev.sim.fleet import CarIdentity, Fleet
        from smartev.vehicles.vin import make_vin

        await platform.accounts.ensure_user(*DEMO_OWNER, "owner")
        await platform.accounts.ensure_user(*DEMO_OWNER_2, "owner")
        await platform.accounts.ensure_user(*DEMO_OPERATOR, "operator")
        rng = random.Random(seed)
        identities = []
        cars_of: dict[str, list[str]] = {DEMO_OWNER[0]: [], DEMO_OWNER_2[0]: []}
        for i in range(cars):
            vin = make_vin(rng)
            owner_email = DEMO_OWNER[0] if i % 4 else DEMO_OWNER_2[0]
            # every run issues fresh credentials, so the demo never needs to remember passwords
            if platform.registry.by_vin(vin) is None:
                _, password = await platform.registry.register(vin, "smartev S1", owner_email)
            else:
                password = await platform.registry.rotate_secret(vin)
            identities.append(CarIdentity(vin=vin, password=password, model="smartev S1"))
            cars_of[owner_email].append(vin)
        fleet = Fleet(
            identities,
            mqtt_host=host,
            mqtt_port=platform.broker.port,
            seed=seed,
            speed=speed,
            wall_clock_ts=speed != 1.0,
            fault_rate=fault_rate,
        )
        plans, autocharge = _demo_charger_plans(chargers, fleet, cars_of)
        stations = await _demo_charging(platform, plans, autocharge)
        base = f"http://{host}:{http_port}"
        homes = sum(plan.owner is not None for plan in plans)
        charging = (
            f"Chargers      {chargers} ({homes} home wallboxes, {chargers - homes} public fast chargers)\n"
            f"OCPP          {platform.central.url}/{{station}}\n"
            "              GET /api/v1/stations, GET /api/v1/charging-sessions\n"
            "Smart charge  home wallboxes: 80 % by 7:00 at the night rate\n"
            "              GET /api/v1/sites, GET /api/v1/sites/{site}/plan\n"
            if chargers
            else ""
        )
        console.print(
            Panel.fit(
                f"[bold]smartev demo[/bold]: {cars} simulated cars"
                f"{f' and {chargers} charging stations' if chargers else ''} around Berlin\n\n"
                f"Phone app     {base}/app/  (owner app + operator console)\n"
                f"Status page   {base}/status\n"
                f"API docs      {base}/docs\n"
                f"MQTT broker   {platform.mqtt_public_url}\n"
                f"{charging}"
                f"Database      {settings.database_url}\n\n"
                f"Owner login     {DEMO_OWNER[0]} / {DEMO_OWNER[1]}\n"
                f"Second owner    {DEMO_OWNER_2[0]} / {DEMO_OWNER_2[1]}\n"
                f"Operator login  {DEMO_OPERATOR[0]} / {DEMO_OPERATOR[1]}\n\n"
                "Press Ctrl+C to stop.",
                title="smartev",
            )
        )
        console.print(
            f"Try: curl -s -d 'username={DEMO_OWNER[0]}&password={DEMO_OWNER[1]}' {base}/api/v1/auth/token"
        )
        if chargers:
            console.print(
                f"then: curl -s -H 'Authorization: Bearer <access_token>' {base}/api/v1/stations "
                "(an owner sees their wallbox, the operator every station)"
            )
        station_fleet = charger_fleet(stations, platform.central.url, seed, speed) if stations else None
        drivers = [Driver(vin, vin=vin) for vin in autocharge] + [Driver(DEMO_CARD)]
        arrivals = Arrivals(drivers, seed)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(fleet.run(), name="cars")
            if station_fleet is not None:
                tg.create_task(station_fleet.run(), name="stations")
                tg.create_task(arrivals.run(station_fleet, plans), name="drivers")
            live = console.is_terminal and not verbose
            tg.create_task(_show_status(lambda: _status(fleet, station_fleet, arrivals), live), name="status")

    # uvicorn takes Ctrl+C, shuts down and raises the signal again, which asyncio may or may not turn into
    # KeyboardInterrupt: either way the demo has stopped
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings, started))
    console.print("demo stopped")


def _demo_charger_plans(
    count: int, fleet: Fleet, cars_of: dict[str, list[str]]
) -> tuple[list[ChargerPlan], list[str]]:
    """The demo's stations (a wallbox at each owner's home, then public fast chargers) and the VINs that
    charge by autocharge: the wallboxes' cars first."""
    from smartev.sim.city import Place

    plans: list[ChargerPlan] = []
    home_cars: list[str] = []
    for n, owner_email in enumerate((DEMO_OWNER[0], DEMO_OWNER_2[0])[:count], start=1):
        vins = cars_of.get(owner_email, [])
        # the owner's car with a wallbox at home, else any of theirs; with none, a flat near the centre
        vin = next((v for v in vins if fleet.car(v).model.home_charger), vins[0] if vins else None)
        home = fleet.car(vin).model.home if vin else Place("home", 1_500.0 * n, -1_000.0 * n)
        drivers: tuple[Driver, ...] = (Driver(vin, vin=vin),) if vin else ()
        if owner_email == DEMO_OWNER[0]:
            drivers += (Driver(DEMO_CARD),)
        if vin:
            home_cars.append(vin)
        plans.append(
            ChargerPlan(
                f"DEMO-HOME-{n}",
                "1.6" if n % 2 else "2.0.1",
                connectors=1,
                max_power_w=11_000.0,
                latitude=round(home.latitude, 6),
                longitude=round(home.longitude, 6),
                mean_gap_s=10 * 3600,
                mean_dwell_s=4 * 3600,
                owner=owner_email,
                drivers=drivers,
            )
        )
    for n in range(1, count - len(plans) + 1):
        plans.append(fast_charger_plan(f"DEMO-DC-{n:02d}", "2.0.1" if n % 2 else "1.6", n - 1))
    others = [vin for vins in cars_of.values() for vin in vins if vin not in home_cars]
    return plans, (home_cars + sorted(others))[: max(_DEMO_AUTOCHARGE_CARS, len(home_cars))]


async def _demo_charging(
    platform: Any, plans: Sequence[ChargerPlan], autocharge: Sequence[str]
) -> list[StationIdentity]:
    """Register the standard tariff, the owner's card, the autocharge cars and the stations on the platform;
    what an earlier run registered is kept, stations get new passwords and this run's places."""
    from smartev.csms.tariffs import Tariff
    from smartev.errors import Conflict

    charging, stations = platform.charging, platform.stations
    with contextlib.suppress(Conflict):
        await charging.add_tariff(STANDARD_TARIFF_NAME, Tariff.from_dict(STANDARD_TARIFF))
    tariff_id = next(i for i, (name, _) in charging.tariffs().items() if name == STANDARD_TARIFF_NAME)
    with contextlib.suppress(Conflict):
        await charging.add_tag(DEMO_CARD, "rfid", owner_email=DEMO_OWNER[0])
    for vin in autocharge:
        with contextlib.suppress(Conflict):
            await charging.add_tag(vin, "vin", vin=vin)
    identities = []
    for plan in plans:
        where = {
            "latitude": plan.latitude,
            "longitude": plan.longitude,
            "tariff_id": tariff_id if plan.tariff else None,
        }
        if stations.find(plan.station_id) is None:
            _, password = await stations.register(plan.station_id, owner_email=plan.owner, **where)
        else:
            password = await stations.set_password(plan.station_id)
            await stations.update(plan.station_id, **where)
        identities.append(plan.identity(password))
    await _demo_home_sites(platform, plans)
    return identities


HOME_TARIFF_NAME = "home night rate"
HOME_TARIFF: dict[str, Any] = {
    "currency": "EUR",
    "per_kwh": "0.36",
    "periods": [{"start": "22:00", "end": "06:00", "per_kwh": "0.19"}],
    "timezone": "Europe/Berlin",
}


async def _demo_home_sites(platform: Any, plans: Sequence[ChargerPlan]) -> None:
    """Each owner's wallbox in a home site: 25 A house connection, 80 % by 7:00 in the cheapest hours."""
    from datetime import time

    from smartev.csms.tariffs import Tariff
    from smartev.energy import Limit, Objective
    from smartev.energy.sites import Site, Wiring
    from smartev.errors import Conflict

    with contextlib.suppress(Conflict):
        await platform.charging.add_tariff(HOME_TARIFF_NAME, Tariff.from_dict(HOME_TARIFF))
    tariff_id = next(i for i, (name, _) in platform.charging.tariffs().items() if name == HOME_TARIFF_NAME)
    for plan in plans:
        if plan.owner is None or platform.sites.wiring(plan.station_id) is not None:
            continue
        owner = await platform.accounts.by_email(plan.owner)
        site = Site(
            id=f"home-{plan.station_id.lower()}",
            name=f"Home of {plan.owner}",
            owner_id=owner.id if owner else None,
            limits=Limit("house", max_a=25.0),
            objective=Objective.CHEAPEST,
            tariff_id=tariff_id,
            timezone="Europe/Berlin",
            ready_by=time(7, 0),
            target_soc=80.0,
        )
        with contextlib.suppress(Conflict):
            await platform.sites.save(site, platform.clock.now_ms(), create=True)
        await platform.sites.wire(Wiring(plan.station_id, site.id, max_a=16.0))


@app.command()
def simulate(
    api_url: Annotated[str, typer.Option(help="the platform, e.g. http://127.0.0.1:8000")],
    cars: Annotated[int, typer.Option(min=0, max=10_000, help="simulated cars")] = 20,
    chargers: Annotated[
        int,
        typer.Option(
            min=0,
            max=20_000,
            help="simulated OCPP charging stations SIM-CP-0001…: a third DC at the city's fast-charger sites, "
            "the rest 22 kW AC; OCPP 1.6 and 2.0.1",
        ),
    ] = 0,
    seed: Annotated[
        int, typer.Option(help="the same seed gives the same VINs, drives, stations and drivers")
    ] = 1,
    speed: Annotated[float, typer.Option(min=0.1, max=3600, help="simulated seconds per real second")] = 1.0,
    owner: Annotated[
        str | None, typer.Option(help="owner email of new cars and cards (default: the logged-in user)")
    ] = None,
    token: Annotated[str | None, typer.Option(envvar="SMARTEV_TOKEN", help="operator bearer token")] = None,
    user: Annotated[
        str | None, typer.Option(envvar="SMARTEV_USER", help="operator email (instead of --token)")
    ] = None,
    password: Annotated[str | None, typer.Option(envvar="SMARTEV_PASSWORD", hidden=True)] = None,
    fault_rate: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="share of cars that develop a fault (DTC, tyre leak, weak 12 V) in a week"
        ),
    ] = 0.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Drive simulated cars and run simulated charging stations against a running platform.

    Cars, stations, a "standard" tariff and RFID cards are registered through the API; a car or station
    registered by an earlier run gets fresh credentials. Drivers charge at the stations with those cards and
    the cars' VINs (autocharge), so their sessions show in GET /api/v1/charging-sessions.
    """
    import httpx

    from smartev.sim.fleet import CarIdentity, Fleet
    from smartev.transport.mqtt import BrokerAddress
    from smartev.vehicles.vin import make_vin

    if cars == 0 and chargers == 0:
        raise typer.BadParameter("nothing to simulate: give --cars or --chargers more than 0")
    _logging(verbose)

    async def run() -> None:
        async with httpx.AsyncClient(base_url=api_url.rstrip("/"), timeout=30) as http:
            bearer = token
            if bearer is None:
                if not (user and password):
                    raise typer.BadParameter(
                        "give --token, or SMARTEV_USER and SMARTEV_PASSWORD of an operator"
                    )
                r = await http.post("/api/v1/auth/token", data={"username": user, "password": password})
                if r.status_code != 200:
                    raise typer.BadParameter(f"login failed: {r.json().get('detail', r.text)}")
                bearer = r.json()["access_token"]
            headers = {"Authorization": f"Bearer {bearer}"}
            me = await http.get("/api/v1/users/me", headers=headers)
            me.raise_for_status()
            owner_email = owner or me.json()["email"]

            def failed(what: str, r: httpx.Response) -> typer.BadParameter:
                return typer.BadParameter(f"registering {what} failed ({r.status_code}): {r.text}")

            async def register_car(vin: str) -> tuple[CarIdentity, str]:
                r = await http.post(
                    "/api/v1/vehicles",
                    headers=headers,
                    json={"vin": vin, "model": "smartev S1", "owner": owner_email},
                )
                if r.status_code == 409:  # registered earlier: issue fresh credentials for this run
                    r = await http.post(f"/api/v1/vehicles/{vin}/mqtt-credentials", headers=headers)
                if r.status_code >= 400:
                    raise failed(vin, r)
                body = r.json()
                return CarIdentity(vin=vin, password=body["mqtt_password"]), str(body["mqtt_url"])

            async def register_station(plan: ChargerPlan) -> tuple[StationIdentity, str | None]:
                body = {
                    "id": plan.station_id,
                    "latitude": plan.latitude,
                    "longitude": plan.longitude,
                    "tariff": plan.tariff,
                }
                r = await http.post("/api/v1/stations", headers=headers, json=body)
                if r.status_code == 409:  # registered earlier: a new password for this run
                    r = await http.post(f"/api/v1/stations/{plan.station_id}/password", headers=headers)
                if r.status_code >= 400:
                    raise failed(f"station {plan.station_id}", r)
                answer = r.json()
                return plan.identity(answer["password"]), answer.get("ocpp_url")

            async def register_card(driver: Driver) -> None:
                body = {"tag": driver.id_tag, "kind": "rfid", "owner": owner_email}
                r = await http.post("/api/v1/id-tags", headers=headers, json=body)
                if r.status_code >= 400 and r.status_code != 409:  # 409: the card is known already
                    raise failed(f"id tag {driver.id_tag}", r)

            rng = random.Random(seed)
            vins = [make_vin(rng) for _ in range(cars)]
            registered_cars = await _with_progress("cars", vins, register_car) if cars else []
            car_identities = [identity for identity, _ in registered_cars]
            stations: list[StationIdentity] = []
            plans = public_charger_plans(chargers, seed)
            drivers = [
                Driver(identity.vin, vin=identity.vin, model=identity.model) for identity in car_identities
            ]
            ocpp_url = ""
            if chargers:
                r = await http.post(
                    "/api/v1/tariffs",
                    headers=headers,
                    json={"name": STANDARD_TARIFF_NAME, "tariff": STANDARD_TARIFF},
                )
                if r.status_code >= 400 and r.status_code != 409:  # 409: it exists already
                    raise failed(f"the {STANDARD_TARIFF_NAME} tariff", r)
                registered = await _with_progress("stations", plans, register_station)
                stations = [identity for identity, _ in registered]
                urls = [url for _, url in registered if url]
                if urls:
                    ocpp_url = urls[0]
                else:  # every station was registered earlier: ask the platform where its OCPP endpoint is
                    ocpp_url = (await http.get("/api/v1/health")).json()["ocpp"]["url"]
                cards = card_drivers(chargers, seed)  # as many drivers with a card as there are stations
                await _with_progress("RFID cards", cards, register_card)
                drivers += cards

        fleet = None
        if cars:
            broker = registered_cars[-1][1]
            address = BrokerAddress.from_url(broker)
            console.print(f"{cars} cars driving (seed {seed}, speed {speed}×) on {broker}; Ctrl+C to stop")
            fleet = Fleet(
                car_identities,
                mqtt_host=address.host,
                mqtt_port=address.port,
                seed=seed,
                speed=speed,
                wall_clock_ts=speed != 1.0,
                fault_rate=fault_rate,
                ledger_size=0 if cars > 1000 else 1000,
            )
        stations_fleet = arrivals = None
        if chargers:
            dc = sum(plan.dc for plan in plans)
            console.print(
                f"{chargers} charging stations ({dc} DC, {chargers - dc} AC; OCPP 1.6 and 2.0.1) on "
                f"{ocpp_url}, {len(drivers)} drivers (seed {seed}, speed {speed}×); Ctrl+C to stop"
            )
            stations_fleet = charger_fleet(stations, ocpp_url, seed, speed)
            arrivals = Arrivals(drivers, seed)
        async with asyncio.TaskGroup() as tg:
            if fleet is not None:
                tg.create_task(fleet.run(), name="cars")
            if stations_fleet is not None and arrivals is not None:
                tg.create_task(stations_fleet.run(), name="stations")
                tg.create_task(arrivals.run(stations_fleet, plans), name="drivers")
            live = console.is_terminal and not verbose
            tg.create_task(
                _show_status(lambda: _status(fleet, stations_fleet, arrivals), live), name="status"
            )

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        console.print("simulation stopped")


# -- simulated charging stations and the drivers who charge at them (demo and simulate) ----------------------

T = TypeVar("T")
R = TypeVar("R")

STANDARD_TARIFF_NAME = "standard"
STANDARD_TARIFF: dict[str, Any] = {
    "currency": "EUR",
    "per_kwh": "0.39",
    "idle_per_minute": "0.10",
    "idle_grace_min": 30,
    "timezone": "Europe/Berlin",
}
# Simulated seconds within which each connector sees its first car, so that sessions show from the start.
_FIRST_CAR_WITHIN_S = 600.0
_REFUSED_DRIVER_WAITS_S = 120.0


@dataclass(frozen=True, slots=True)
class Driver:
    """Someone who charges at the simulated stations with an id tag the platform knows.

    `vin` is set when the tag is the car's VIN (autocharge); `model` is the car they come in.
    """

    id_tag: str
    vin: str | None = None
    model: str = "smartev S1"


@dataclass(frozen=True, slots=True)
class ChargerPlan:
    """A simulated station to register and run: what it is, where, whose, and how often cars come."""

    station_id: str
    version: str
    connectors: int
    max_power_w: float
    latitude: float
    longitude: float
    mean_gap_s: float  # simulated seconds between a car leaving a connector and the next arriving
    mean_dwell_s: float  # how long a car stays plugged in
    owner: str | None = None
    tariff: str | None = None
    drivers: tuple[Driver, ...] = ()  # who charges here; everyone's cars when empty

    @property
    def dc(self) -> bool:
        """A DC fast charger (as SimulatedStation decides it)."""
        return self.max_power_w > 43_000

    def identity(self, password: str) -> StationIdentity:
        """The station's identity with the password the platform gave it."""
        from smartev.sim.chargers import StationIdentity

        return StationIdentity(self.station_id, password, self.version, self.connectors, self.max_power_w)


def fast_charger_plan(station_id: str, version: str, site_index: int) -> ChargerPlan:
    """A public DC station at one of the city's fast-charger sites (`FAST_CHARGERS`), at its power."""
    from smartev.sim.city import FAST_CHARGERS

    site = FAST_CHARGERS[site_index % len(FAST_CHARGERS)]
    assert site.place is not None  # every fast charger has its place
    return ChargerPlan(
        station_id,
        version,
        connectors=2,
        max_power_w=site.power_kw * 1000,
        latitude=round(site.place.latitude, 6),
        longitude=round(site.place.longitude, 6),
        mean_gap_s=1.5 * 3600,
        mean_dwell_s=40 * 60,
        tariff=STANDARD_TARIFF_NAME,
    )


def public_charger_plans(count: int, seed: int) -> list[ChargerPlan]:
    """Stations SIM-CP-0001, …: every third a DC fast charger at a `FAST_CHARGERS` site, the others 22 kW AC
    posts around town; OCPP 1.6 and 2.0.1 alternate. The seed picks the sites and places the posts."""
    from smartev.sim.city import CITY_RADIUS_M, FAST_CHARGERS, Place

    rng = random.Random(f"{seed}:chargers")
    sites = list(range(len(FAST_CHARGERS)))
    rng.shuffle(sites)
    plans = []
    for n in range(1, count + 1):
        station_id, version = f"SIM-CP-{n:04d}", "1.6" if n % 2 else "2.0.1"
        if n % 3 == 1:
            plans.append(fast_charger_plan(station_id, version, sites[(n // 3) % len(sites)]))
            continue
        r, angle = 0.8 * CITY_RADIUS_M * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        place = Place(station_id, r * math.cos(angle), r * math.sin(angle))
        plans.append(
            ChargerPlan(
                station_id,
                version,
                connectors=2,
                max_power_w=22_000.0,
                latitude=round(place.latitude, 6),
                longitude=round(place.longitude, 6),
                mean_gap_s=3 * 3600,
                mean_dwell_s=2.5 * 3600,
                tariff=STANDARD_TARIFF_NAME,
            )
        )
    return plans


def card_drivers(count: int, seed: int) -> list[Driver]:
    """Drivers with RFID cards (seeded UIDs), each in a car of a random model."""
    from smartev.sim.model import CAR_MODELS

    rng = random.Random(f"{seed}:cards")
    models = sorted(CAR_MODELS)
    return [Driver(f"{rng.getrandbits(56):014X}", model=rng.choice(models)) for _ in range(count)]


def charger_fleet(
    identities: Sequence[StationIdentity], ocpp_url: str, seed: int, speed: float
) -> ChargerFleet:
    """The simulated stations, with no cars of their own: `Arrivals` brings them."""
    from smartev.sim.chargers import ChargerFleet

    # a meter sample a real second at most per charging connector, however fast simulated time runs
    return ChargerFleet.create(
        identities, ocpp_url, seed=seed, speed=speed, cars=False, meter_interval_s=max(60, round(speed))
    )


class Arrivals:
    """Drivers come to the simulated stations' connectors, charge, and leave after their dwell time.

    ChargerFleet's own cars bring random id tags, which the platform refuses; these drivers bring tags it
    knows (registered cards, registered cars' VINs), so their sessions are stored. A driver charges at one
    connector at a time, and a car comes only to a station that is online.
    """

    def __init__(self, drivers: Sequence[Driver], seed: int) -> None:
        self.drivers = tuple(drivers)
        self.seed = seed
        self.refused = 0  # cars whose id tag the platform refused
        self._busy: set[str] = set()

    async def run(self, fleet: ChargerFleet, plans: Sequence[ChargerPlan]) -> None:
        """Bring cars to every connector until cancelled."""
        by_id = {plan.station_id: plan for plan in plans}
        async with asyncio.TaskGroup() as tg:
            for station in fleet.stations:
                plan = by_id[station.station_id]
                for connector in station.model.connectors:
                    tg.create_task(self._cars(station, connector, plan), name=f"drivers {station.station_id}")

    async def _cars(self, station: SimulatedStation, connector: int, plan: ChargerPlan) -> None:
        rng = random.Random(f"{self.seed}:{station.station_id}:{connector}:drivers")
        drivers = plan.drivers or self.drivers
        wait_s = rng.uniform(0.0, _FIRST_CAR_WITHIN_S)
        while drivers:
            while not station.online:  # noqa: ASYNC110 (a station offers no online event)
                await asyncio.sleep(1.0)
            await asyncio.sleep(wait_s / station.speed)
            wait_s = rng.expovariate(1.0 / plan.mean_gap_s)
            conn = station.model.connector(connector)
            if conn.car is not None or conn.session is not None or not conn.operative:
                continue
            # a few tries at someone not charging elsewhere; when all are busy, nobody comes this time
            driver = next(
                (d for d in (rng.choice(drivers) for _ in range(5)) if d.id_tag not in self._busy), None
            )
            if driver is None:
                continue
            self._busy.add(driver.id_tag)
            try:
                await self._charge(station, connector, driver, plan, rng)
            finally:
                self._busy.discard(driver.id_tag)

    async def _charge(
        self,
        station: SimulatedStation,
        connector: int,
        driver: Driver,
        plan: ChargerPlan,
        rng: random.Random,
    ) -> None:
        from smartev.sim.model import car_spec

        spec = car_spec(driver.model)
        dwell_s = rng.lognormvariate(math.log(plan.mean_dwell_s), 0.5)
        try:
            session = await station.plug_in(
                connector,
                driver.id_tag,
                vin=driver.vin,
                soc=rng.uniform(10.0, 60.0),
                capacity_kwh=spec.net_capacity_kwh,
                target_soc=80.0 if plan.dc else rng.choice((80.0, 90.0, 100.0)),
                max_ac_w=spec.ac_charge_kw * 1000,
                max_dc_w=spec.dc_charge_kw * 1000,
                leave_when_full=False,
            )
        except ValueError:  # taken meanwhile (a remote start's car)
            return
        if session is None:
            self.refused += 1
            dwell_s = min(dwell_s, _REFUSED_DRIVER_WAITS_S)
        car = station.model.connector(connector).car
        await asyncio.sleep(dwell_s / station.speed)
        if car is not None and station.model.connector(connector).car is car:
            station.unplug(connector)


def _status(cars: Fleet | None, chargers: ChargerFleet | None, arrivals: Arrivals | None) -> str:
    """One line: what the simulation is doing now."""
    parts = []
    if cars is not None:
        c = cars.stats()
        parts.append(f"cars {c.connected}/{c.cars} online")
    if chargers is not None:
        s = chargers.stats()
        parts += [
            f"stations {s.online}/{s.stations} online",
            f"{s.active} charging, {s.sessions} sessions, {s.energy_wh / 1000:.1f} kWh",
        ]
        if s.pending:
            parts.append(f"{s.pending} queued")
        if arrivals is not None and arrivals.refused:
            parts.append(f"[yellow]{arrivals.refused} refused[/yellow]")
        if chargers.stations:
            parts.append(f"sim {chargers.stations[0].now():%a %H:%M}")
    return " · ".join(parts)


async def _show_status(describe: Callable[[], str], live: bool) -> None:
    """A live status line on a terminal; a printed one every half minute otherwise (a log, or with -v)."""
    if not live:
        while True:
            await asyncio.sleep(30.0)
            console.print(describe())
    with console.status(describe()) as line:
        while True:
            await asyncio.sleep(1.0)
            line.update(describe())


async def _with_progress(
    what: str, items: Sequence[T], register: Callable[[T], Awaitable[R]], parallel: int = 4
) -> list[R]:
    """`register` each item, a few at a time, behind a progress bar; the results in the order of `items`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    limit = asyncio.Semaphore(parallel)
    columns = (TextColumn(f"registering {what}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(what, total=len(items))

        async def one(item: T) -> R:
            async with limit:
                result = await register(item)
            progress.advance(task)
            return result

        return list(await asyncio.gather(*(one(item) for item in items)))


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None, data_dir: DataDir = None) -> None:
    """Apply all database migrations (Alembic)."""
    from smartev.db.migrate import upgrade_sync

    settings = _settings(database_url=database_url, data_dir=data_dir)
    try:
        upgrade_sync(settings.database_url)
    except Exception as exc:
        console.print(f"[red]Migration failed:[/red] {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None
    console.print(f"database at {_safe_url(settings.database_url)} is up to date")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@users_app.command("create")
def users_create(
    email: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    role: Annotated[str, typer.Option(help="owner, operator or admin")] = "owner",
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Create a user who can log in to the API."""
    from smartev.accounts.schemas import Role
    from smartev.errors import SmartEVError

    if role not in {r.value for r in Role}:
        console.print(f"[red]role must be one of owner, operator, admin (got {role!r})[/red]")
        raise typer.Exit(2)
    settings = _settings(database_url=database_url, data_dir=data_dir)

    async def run() -> None:
        from smartev.accounts.security import TokenSigner
        from smartev.accounts.service import Accounts
        from smartev.db import migrate
        from smartev.db.engine import create_engine, session_factory

        engine = create_engine(settings.database_url)
        try:
            await migrate.upgrade(engine)
            accounts = Accounts(session_factory(engine), TokenSigner("unused-for-creating-users", 60))
            user = await accounts.create_user(email, password, role)
            console.print(f"created {user.role} {user.email} (id {user.id})")
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except SmartEVError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None


@mqtt_app.command("acl")
def mqtt_acl(
    out: Annotated[Path, typer.Option(help="directory for the password, ACL and conf files")] = Path(
        "mosquitto"
    ),
    service_password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, help="password the platform uses (its --mqtt-url)")
    ] = "",
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Write Mosquitto password and ACL files so each car may use only its own topics."""
    from smartev.app import SERVICE_USERNAME
    from smartev.transport.credentials import hash_device_secret
    from smartev.transport.mosquitto import write_mosquitto_files

    settings = _settings(database_url=database_url, data_dir=data_dir)

    async def vehicles() -> list[tuple[str, str]]:
        from sqlalchemy import select

        from smartev.db.engine import create_engine
        from smartev.vehicles.models import Vehicle

        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                return [
                    (v, h)
                    for v, h in (await conn.execute(select(Vehicle.vin, Vehicle.mqtt_secret_hash))).all()
                ]
        finally:
            await engine.dispose()

    cars = asyncio.run(vehicles())
    files = write_mosquitto_files(out, cars, SERVICE_USERNAME, hash_device_secret(service_password))
    console.print(
        f"wrote {files.passwd_path}, {files.acl_path} and {files.conf_path} for {len(cars)} cars.\n"
        f"Include {files.conf_path} in mosquitto.conf, reload Mosquitto, then run "
        f"smartev serve --mqtt-url mqtt://{SERVICE_USERNAME}:<password>@host:port"
    )


AgentConfigPath = Annotated[
    Path, typer.Option("--config", "-c", help="the agent's TOML config (see docs/agent.md)")
]


def _agent_config(path: Path) -> Any:
    from smartev.agent import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@agent_app.command("run")
def agent_run(
    config: AgentConfigPath = Path("agent.toml"),
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the agent until stopped (Ctrl+C); its spool keeps every message until the platform has stored it."""
    from smartev.agent import ConfigError, build_source
    from smartev.agent.runtime import Agent

    _logging(verbose)
    cfg = _agent_config(config)
    try:
        agent = Agent(cfg, build_source(cfg), password=cfg.mqtt_password())
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(
        f"agent for {cfg.vin}: {cfg.source['kind']} source → {cfg.platform.mqtt_url}, spool {cfg.spool_path}"
    )
    try:
        asyncio.run(agent.run())
    except KeyboardInterrupt:
        console.print("agent stopped; unsent messages stay in the spool")


@agent_app.command("status")
def agent_status(
    config: AgentConfigPath = Path("agent.toml"),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Connected?, spool depth, oldest unsent sample and what was dropped — from the agent's files."""
    import orjson
    from rich.table import Table

    from smartev.agent.status import read_status

    status = read_status(_agent_config(config))
    if as_json:
        typer.echo(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(title=f"agent {status['vin']}", show_header=False)
    for label, value in status["summary"]:
        table.add_row(label, value)
    console.print(table)


def main() -> None:
    """Entry point of the `smartev` console script."""
    app()
