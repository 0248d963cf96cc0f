"""The `smartev` command: serve, demo, db upgrade, users, mqtt acl."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel

from smartev.settings import Settings

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
    server = uvicorn.Server(
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
    extra = None
    try:
        if on_started is not None:
            extra = asyncio.create_task(on_started(platform))
        await serving
    finally:
        if extra is not None:
            extra.cancel()


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


@app.command()
def demo(
    cars: Annotated[int, typer.Option(min=1, max=10_000, help="simulated cars")] = 20,
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
    """Run the platform on embedded defaults with a simulated fleet driving around Berlin."""
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

        owner = await platform.accounts.ensure_user(*DEMO_OWNER, "owner")
        await platform.accounts.ensure_user(*DEMO_OWNER_2, "owner")
        await platform.accounts.ensure_user(*DEMO_OPERATOR, "operator")
        rng = random.Random(seed)
        identities = []
        for i in range(cars):
            vin = make_vin(rng)
            # every run issues fresh credentials, so the demo never needs to remember passwords
            if platform.registry.by_vin(vin) is None:
                owner_email = DEMO_OWNER[0] if i % 4 else DEMO_OWNER_2[0]
                _, password = await platform.registry.register(vin, "smartev S1", owner_email)
            else:
                password = await platform.registry.rotate_secret(vin)
            identities.append(CarIdentity(vin=vin, password=password, model="smartev S1"))
        del owner
        base = f"http://{host}:{http_port}"
        console.print(
            Panel.fit(
                f"[bold]smartev demo[/bold] is running with {cars} simulated cars around Berlin\n\n"
                f"Status page   {base}/\n"
                f"API docs      {base}/docs\n"
                f"MQTT broker   {platform.mqtt_public_url}\n"
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
        fleet = Fleet(
            identities,
            mqtt_host=host,
            mqtt_port=platform.broker.port,
            seed=seed,
            speed=speed,
            wall_clock_ts=speed != 1.0,
            fault_rate=fault_rate,
        )
        await fleet.run()

    try:
        asyncio.run(_serve(settings, started))
    except KeyboardInterrupt:
        console.print("demo stopped")


@app.command()
def simulate(
    api_url: Annotated[str, typer.Option(help="the platform, e.g. http://127.0.0.1:8000")],
    cars: Annotated[int, typer.Option(min=1, max=10_000, help="simulated cars")] = 20,
    seed: Annotated[int, typer.Option(help="the same seed gives the same VINs and the same drives")] = 1,
    speed: Annotated[float, typer.Option(min=0.1, max=3600, help="simulated seconds per real second")] = 1.0,
    owner: Annotated[
        str | None, typer.Option(help="owner email of new cars (default: the logged-in user)")
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
    """Drive simulated cars against a running platform, registering them through its API."""
    import httpx

    from smartev.sim.fleet import CarIdentity, Fleet
    from smartev.vehicles.vin import make_vin

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
            rng = random.Random(seed)
            identities: list[CarIdentity] = []
            broker = ""
            with console.status(f"registering {cars} cars …"):
                for _ in range(cars):
                    vin = make_vin(rng)
                    r = await http.post(
                        "/api/v1/vehicles",
                        headers=headers,
                        json={"vin": vin, "model": "smartev S1", "owner": owner_email},
                    )
                    if r.status_code == 409:  # registered earlier: issue fresh credentials for this run
                        r = await http.post(f"/api/v1/vehicles/{vin}/mqtt-credentials", headers=headers)
                    if r.status_code >= 400:
                        raise typer.BadParameter(f"registering {vin} failed ({r.status_code}): {r.text}")
                    body = r.json()
                    broker = body["mqtt_url"]
                    identities.append(CarIdentity(vin=vin, password=body["mqtt_password"]))
        address = BrokerAddress.from_url(broker)
        console.print(f"{cars} cars driving (seed {seed}, speed {speed}×) on {broker}; Ctrl+C to stop")
        fleet = Fleet(
            identities,
            mqtt_host=address.host,
            mqtt_port=address.port,
            seed=seed,
            speed=speed,
            wall_clock_ts=speed != 1.0,
            fault_rate=fault_rate,
            ledger_size=0 if cars > 1000 else 1000,
        )
        await fleet.run()

    from smartev.transport.mqtt import BrokerAddress

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        console.print("simulation stopped")


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
