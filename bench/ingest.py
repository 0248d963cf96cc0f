"""End-to-end telemetry ingest benchmark: MQTT publish → validated → twin → history committed.

A real platform runs in this process (`Platform(settings)` + `platform.running()`); a load generator in a
separate process publishes realistic VSS telemetry with paho-mqtt, paced at `--hz` messages per car per
second. The platform side measures:

- signal updates committed per second over the measurement window (after a warm-up),
- publish-to-twin latency: `SignalsChanged` arrival minus the newest sample timestamp (the send time),

and the generator measures publish-to-ack latency (the car learns its data is durable). Afterwards the
history is checked against what was sent: same number of rows and messages, no duplicate rows.

    python bench/ingest.py --config mosquitto-postgres --cars 1000 --seconds 30 --signals 50
    python bench/ingest.py --config embedded --cars 100 --hz 5 --seconds 30 --signals 50

Configurations:
  embedded            SQLite file (WAL) + the embedded amqtt broker; each car logs in with its own credentials
  mosquitto-postgres  the machine's Mosquitto (SMARTEV_BENCH_MOSQUITTO, default 127.0.0.1:1883, anonymous) +
                      PostgreSQL (SMARTEV_BENCH_POSTGRES admin URL, default postgresql://postgres@127.0.0.1:5432/test;
                      a fresh database smartev_bench_<random> is created and dropped afterwards);
                      cars are multiplexed over `--connections` MQTT connections
  mosquitto-sqlite, embedded-postgres   the other two combinations (the broker's share vs the database's)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import random
import secrets
import selectors
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import orjson

CONFIGS = {
    "embedded": ("sqlite", "embedded"),
    "mosquitto-postgres": ("postgresql", "mosquitto"),
    "mosquitto-sqlite": ("sqlite", "mosquitto"),
    "embedded-postgres": ("postgresql", "embedded"),
}
PG_ADMIN = os.environ.get("SMARTEV_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
MOSQUITTO = os.environ.get("SMARTEV_BENCH_MOSQUITTO", "127.0.0.1:1883")

# The EV signals of /work/shared/vss/ev_signals.csv, then per-wheel signals; all VSS 6.0 leaves.
SIGNAL_PATHS = [
    "Vehicle.Speed",
    "Vehicle.IsMoving",
    "Vehicle.CurrentLocation.Latitude",
    "Vehicle.CurrentLocation.Longitude",
    "Vehicle.CurrentLocation.Heading",
    "Vehicle.CurrentLocation.Timestamp",
    "Vehicle.TraveledDistance",
    "Vehicle.LowVoltageSystemState",
    "Vehicle.Powertrain.Range",
    "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current",
    "Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed",
    "Vehicle.Powertrain.TractionBattery.StateOfCharge.CurrentEnergy",
    "Vehicle.Powertrain.TractionBattery.NetCapacity",
    "Vehicle.Powertrain.TractionBattery.Range",
    "Vehicle.Powertrain.TractionBattery.StateOfHealth",
    "Vehicle.Powertrain.TractionBattery.CurrentVoltage",
    "Vehicle.Powertrain.TractionBattery.CurrentCurrent",
    "Vehicle.Powertrain.TractionBattery.CurrentPower",
    "Vehicle.Powertrain.TractionBattery.Temperature.Average",
    "Vehicle.Powertrain.TractionBattery.Charging.IsCharging",
    "Vehicle.Powertrain.TractionBattery.Charging.ChargingPort.AnyPosition.IsChargingCableConnected",
    "Vehicle.Powertrain.TractionBattery.Charging.ChargeLimit",
    "Vehicle.Powertrain.TractionBattery.Charging.StartStopCharging",
    "Vehicle.Powertrain.TractionBattery.Charging.ChargeCurrent.DC",
    "Vehicle.Powertrain.TractionBattery.Charging.ChargeCurrent.Phase1",
    "Vehicle.Powertrain.TractionBattery.Charging.ChargeVoltage.DC",
    "Vehicle.Powertrain.TractionBattery.Charging.ChargeVoltage.Phase1",
    "Vehicle.Powertrain.TractionBattery.Charging.AveragePower",
    "Vehicle.Powertrain.TractionBattery.Charging.TimeToComplete",
    "Vehicle.Powertrain.TractionBattery.Charging.EvseId",
    "Vehicle.Cabin.HVAC.AmbientAirTemperature",
    "Vehicle.Cabin.HVAC.Station.Row1.Driver.Temperature",
    "Vehicle.Cabin.HVAC.IsAirConditioningActive",
    "Vehicle.Exterior.AirTemperature",
    "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked",
    "Vehicle.Diagnostics.DTCCount",
    "Vehicle.Diagnostics.DTCList",
] + [
    f"Vehicle.Chassis.Axle.{row}.Wheel.{side}.{leaf}"
    for leaf in ("Tire.Pressure", "Tire.Temperature", "Speed", "AngularSpeed")
    for row in ("Row1", "Row2")
    for side in ("Left", "Right")
]
POOL = 97  # distinct values per signal; a prime so the signals do not move in lockstep


# ---------------------------------------------------------------------------------------------------------
# the load generator (a separate process: imports only paho and orjson)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class LoadSpec:
    """What the generator process publishes, and where."""

    host: str
    port: int
    cars: list[tuple[str, str | None]]  # (VIN, MQTT password; None = anonymous)
    per_car_connections: bool
    connections: int
    hz: float
    samples: int
    signals: list[tuple[str, list[Any]]]  # (path, pool of valid values)
    ts_format: str
    warmup_s: float
    seconds: float
    drain_s: float
    seed: int = 1
    inflight: int = 1000


@dataclass
class LoadStats:
    """What the generator did."""

    connected: int = 0
    sent_messages: int = 0
    sent_signals: int = 0
    published: int = 0  # PUBACKs from the broker
    acked: int = 0  # distinct messages acknowledged by the platform
    duplicate_acks: int = 0
    errors: int = 0
    ack_latency_ms: list[float] = field(default_factory=list)  # measurement window only
    send_elapsed_s: float = 0.0
    window_messages: int = 0
    window_s: float = 0.0
    max_backlog: int = 0
    cpu_s: float = 0.0
    error_samples: list[str] = field(default_factory=list)


def _iso_formatter() -> Any:
    cache: dict[int, str] = {}

    def iso(ms: int) -> str:
        sec, rest = divmod(ms, 1000)
        prefix = cache.get(sec)
        if prefix is None:
            if len(cache) > 64:
                cache.clear()
            prefix = cache[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{prefix}.{rest:03d}Z"

    return iso


def run_load(spec: LoadSpec, pipe: Connection) -> None:
    """The generator process: connect, wait for "go", publish paced telemetry, wait for the acks, report."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    sel = selectors.DefaultSelector()
    stats = LoadStats()
    rnd = random.Random(spec.seed)
    n = len(spec.cars)
    vin_index = {vin: i for i, (vin, _) in enumerate(spec.cars)}
    ready: set[int] = set()
    unconfirmed: dict[int, int] = {}  # client index -> SUBSCRIBEs not yet confirmed
    sent_at: dict[tuple[int, int], float] = {}
    acked_keys: set[tuple[int, int]] = set()
    window = [float("inf"), float("inf")]  # wall-clock bounds of the measurement window

    def on_open(client: Any, userdata: Any, sock: Any) -> None:
        sel.register(sock, selectors.EVENT_READ, client)

    def on_close(client: Any, userdata: Any, sock: Any) -> None:
        try:
            sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def on_want_write(client: Any, userdata: Any, sock: Any) -> None:
        sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def on_done_write(client: Any, userdata: Any, sock: Any) -> None:
        sel.modify(sock, selectors.EVENT_READ, client)

    def on_subscribe(client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        unconfirmed[userdata] -= 1
        if not unconfirmed[userdata]:
            ready.add(userdata)

    def on_publish(client: Any, userdata: Any, mid: int, code: Any, props: Any) -> None:
        stats.published += 1

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        topic: str = msg.topic
        parts = topic.split("/")
        car = vin_index.get(parts[1], -1)
        if car < 0:
            return  # another user of a shared broker
        doc = orjson.loads(msg.payload)
        if topic.endswith("/ack"):
            key = (car, doc["seq"])
            if key in acked_keys:
                stats.duplicate_acks += 1
                return
            acked_keys.add(key)
            stats.acked += 1
            t0 = sent_at.pop(key, None)
            if t0 is not None and window[0] <= t0 <= window[1]:
                stats.ack_latency_ms.append((time.time() - t0) * 1000)
        else:
            stats.errors += 1
            if len(stats.error_samples) < 5:
                stats.error_samples.append(msg.payload[:300].decode("utf-8", "replace"))

    def make_client(
        index: int,
        client_id: str,
        username: str | None,
        password: str | None,
        subscriptions: list[tuple[str, int]],
    ) -> Any:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            userdata=index,
            protocol=mqtt.MQTTv311,
        )
        if username is not None:
            c.username_pw_set(username, password)
        c.max_inflight_messages_set(spec.inflight)
        c.max_queued_messages_set(0)
        c.on_socket_open = on_open
        c.on_socket_close = on_close
        c.on_socket_register_write = on_want_write
        c.on_socket_unregister_write = on_done_write
        c.on_publish = on_publish
        c.on_message = on_message
        c.on_subscribe = on_subscribe

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                stats.error_samples.append(f"connect refused: {reason}")
                return
            stats.connected += 1
            chunks = [subscriptions[i : i + 100] for i in range(0, len(subscriptions), 100)]
            unconfirmed[userdata] = len(chunks)
            for chunk in chunks:
                client.subscribe(chunk)
            if not chunks:
                ready.add(userdata)

        c.on_connect = on_connect
        c.connect(spec.host, spec.port, keepalive=60)
        return c

    def pump(timeout: float) -> None:
        for key, mask in sel.select(timeout):
            client = key.data
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE:
                client.loop_write()

    tag = secrets.token_hex(3)
    clients: list[Any] = []
    if spec.per_car_connections:
        for i, (vin, password) in enumerate(spec.cars):
            clients.append(
                make_client(
                    i,
                    vin,
                    vin,
                    password,
                    [(f"vehicles/{vin}/telemetry/ack", 1), (f"vehicles/{vin}/errors", 1)],
                )
            )
            if i % 50 == 49:
                pump(0)
        publishers = clients
    else:
        # each connection also receives the acks and errors of its own cars: one listener for all of them
        # falls behind at high rates, and Mosquitto drops what it queues beyond max_queued_messages
        k = spec.connections
        publishers = [
            make_client(
                i,
                f"bench-{tag}-{i}",
                None,
                None,
                [
                    (f"vehicles/{vin}/{leaf}", 1)
                    for vin, _ in spec.cars[i::k]
                    for leaf in ("telemetry/ack", "errors")
                ],
            )
            for i in range(k)
        ]
        clients = publishers
    deadline = time.monotonic() + 60
    last_misc = time.monotonic()
    while len(ready) < len(clients) and time.monotonic() < deadline:
        pump(0.05)
        if time.monotonic() - last_misc > 1:
            for c in clients:
                c.loop_misc()
            last_misc = time.monotonic()
    pipe.send(("ready", len(ready), len(clients), stats.error_samples))
    if pipe.recv() != "go":
        return

    # per car: its seq, the newest ts it sent, its publisher
    seqs = [0] * n
    last_ts = [0] * n
    route = [publishers[i] if spec.per_car_connections else publishers[i % len(publishers)] for i in range(n)]
    topics = [f"vehicles/{vin}/telemetry" for vin, _ in spec.cars]
    order = list(range(n))
    rnd.shuffle(order)  # cars report at staggered instants
    fmt = _iso_formatter() if spec.ts_format == "iso" else (lambda ms: ms)
    k = spec.samples
    step_ms = max(1, int(1000 / (spec.hz * k)))
    paths = [p for p, _ in spec.signals]
    pools = [pool for _, pool in spec.signals]
    signals_per_msg = len(paths) * k
    offsets = [rnd.randrange(POOL) for _ in range(n)]
    rate = n * spec.hz
    cpu0 = time.process_time()
    t_start = time.time()
    window[0] = t_start + spec.warmup_s
    window[1] = t_end = window[0] + spec.seconds
    mono0 = time.monotonic()
    next_progress = 0.0
    window_first = -1
    while True:
        now = time.time()
        if now >= t_end:
            break
        due = min(int((now - t_start) * rate) - stats.sent_messages, 500)
        for _ in range(due):
            i = order[stats.sent_messages % n]
            seq = seqs[i] = seqs[i] + 1
            now_ms = int(time.time() * 1000)
            base = max(now_ms, last_ts[i] + (k - 1) * step_ms + 1)
            last_ts[i] = base
            o = offsets[i] + seq * k
            samples = [
                {
                    "ts": fmt(base - (k - 1 - j) * step_ms),
                    "signals": {
                        p: pool[(o + j + x) % POOL]
                        for x, (p, pool) in enumerate(zip(paths, pools, strict=True))
                    },
                }
                for j in range(k)
            ]
            payload = orjson.dumps({"seq": seq, "samples": samples})
            t0 = time.time()
            sent_at[(i, seq)] = t0
            route[i].publish(topics[i], payload, qos=1)
            stats.sent_messages += 1
            stats.sent_signals += signals_per_msg
            if window_first < 0 and t0 >= window[0]:
                window_first = stats.sent_messages - 1
        pump(0.002)
        mono = time.monotonic()
        if mono - last_misc > 1:
            for c in clients:
                c.loop_misc()
            last_misc = mono
        if mono >= next_progress:
            backlog = stats.sent_messages - stats.published
            stats.max_backlog = max(stats.max_backlog, backlog)
            pipe.send(
                (
                    "progress",
                    stats.sent_messages,
                    stats.sent_signals,
                    stats.published,
                    stats.acked,
                    stats.errors,
                    backlog,
                )
            )
            next_progress = mono + 0.25
            if pipe.poll() and pipe.recv() == "stop":
                break
    stats.send_elapsed_s = time.monotonic() - mono0
    stats.window_messages = stats.sent_messages - max(window_first, 0) if window_first >= 0 else 0
    stats.window_s = spec.seconds
    pipe.send(("sent", stats.sent_messages, stats.sent_signals))
    deadline = time.monotonic() + spec.drain_s
    while stats.acked < stats.sent_messages and time.monotonic() < deadline:
        pump(0.02)
        mono = time.monotonic()
        if mono - last_misc > 1:
            for c in clients:
                c.loop_misc()
            last_misc = mono
        if mono >= next_progress:
            pipe.send(
                (
                    "progress",
                    stats.sent_messages,
                    stats.sent_signals,
                    stats.published,
                    stats.acked,
                    stats.errors,
                    stats.sent_messages - stats.published,
                )
            )
            next_progress = mono + 0.25
    stats.cpu_s = time.process_time() - cpu0
    pipe.send(("done", stats))
    for c in clients:
        c.disconnect()
    for _ in range(20):
        pump(0.01)


def _generator_main(spec: LoadSpec, pipe: Connection) -> None:
    try:
        run_load(spec, pipe)
    except BaseException as exc:  # report anything to the parent rather than die silently
        pipe.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise


# ---------------------------------------------------------------------------------------------------------
# the platform side
# ---------------------------------------------------------------------------------------------------------


def value_pool(signal: Any, rnd: random.Random) -> list[Any]:
    """POOL valid values for a catalog signal."""
    dt = signal.datatype
    if dt.endswith("[]"):
        return [[f"P0{rnd.randrange(100, 999)}"] if rnd.random() < 0.3 else [] for _ in range(POOL)]
    if signal.allowed:
        return [rnd.choice(signal.allowed) for _ in range(POOL)]
    if dt == "boolean":
        return [rnd.random() < 0.5 for _ in range(POOL)]
    if dt == "string":
        if "Timestamp" in signal.path:
            return [
                f"2026-11-21T10:{m:02d}:{s:02d}Z"
                for m, s in ((rnd.randrange(60), rnd.randrange(60)) for _ in range(POOL))
            ]
        return [f"DE*SEV*E{rnd.randrange(10000, 99999)}" for _ in range(POOL)]
    lo = signal.min if signal.min is not None else 0
    hi = signal.max if signal.max is not None else 1000
    if dt.startswith(("uint", "int")):
        hi = min(hi, 65_535 if dt != "uint8" else 255)
        if "Pressure" in signal.path:
            lo, hi = 220, 260
        return [rnd.randint(int(lo), int(hi)) for _ in range(POOL)]
    return [round(rnd.uniform(lo, hi), 2) for _ in range(POOL)]


def pick_signals(count: int) -> list[tuple[str, list[Any]]]:
    """`count` valid signals with their value pools: the EV set first, then other catalog sensors."""
    from smartev.vss import default_catalog

    catalog = default_catalog()
    rnd = random.Random(7)
    paths = [p for p in SIGNAL_PATHS if p in catalog.signals]
    missing = [p for p in SIGNAL_PATHS if p not in catalog.signals]
    if missing:
        raise SystemExit(f"not in the catalog: {missing}")
    if count > len(paths):
        extra = [
            s.path
            for s in catalog.signals.values()
            if s.type == "sensor"
            and s.datatype in ("float", "double", "uint8", "uint16", "boolean")
            and s.path not in paths
        ]
        paths += extra[: count - len(paths)]
    chosen = paths[:count]
    out = []
    for p in chosen:
        pool = value_pool(catalog.signals[p], rnd)
        for v in pool:
            catalog.validate(p, v)  # fail here, not in the platform
        out.append((p, pool))
    return out


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[idx]


class CpuMeter:
    """CPU seconds used by the platform, the generator, Mosquitto and PostgreSQL over a window."""

    def __init__(self, generator_pid: int) -> None:
        import psutil  # type: ignore[import-untyped]

        self._psutil = psutil
        self._gen = generator_pid
        self.start: dict[str, float] = {}
        self.t0 = 0.0

    def _sample(self) -> dict[str, float]:
        ps = self._psutil
        out: dict[str, float] = {"platform": 0.0, "generator": 0.0, "mosquitto": 0.0, "postgres": 0.0}
        me = os.getpid()
        for p in ps.process_iter(["name", "pid"]):
            try:
                name = p.info["name"] or ""
                if p.pid == me:
                    key = "platform"
                elif p.pid == self._gen:
                    key = "generator"
                elif name.startswith("mosquitto"):
                    key = "mosquitto"
                elif name.startswith("postgres"):
                    key = "postgres"
                else:
                    continue
                t = p.cpu_times()
                out[key] += t.user + t.system
            except (ps.NoSuchProcess, ps.AccessDenied):
                continue
        sys_t = ps.cpu_times()
        busy = (
            sys_t.user
            + sys_t.nice
            + sys_t.system
            + getattr(sys_t, "irq", 0.0)
            + getattr(sys_t, "softirq", 0.0)
        )
        out["others"] = busy - sum(out.values())  # everything else on the machine (other users too)
        return out

    def begin(self) -> None:
        self.start = self._sample()
        self.t0 = time.monotonic()

    def end(self) -> dict[str, float]:
        """Cores used on average since begin(), per process group."""
        now = self._sample()
        dt = time.monotonic() - self.t0
        return {k: max(0.0, now[k] - self.start.get(k, 0.0)) / dt for k in now}


class Trace:
    """Where the platform's time goes: history commits, twin flushes and event-loop stalls, per window."""

    def __init__(self, platform: Any) -> None:
        self.active = False
        self.commits: list[tuple[float, int, int]] = []  # (seconds, messages, rows)
        self.flushes: list[tuple[float, int]] = []  # (seconds, rows)
        self.lags: list[float] = []
        writer, twin = platform.writer, platform.twin
        write, flush = writer.write, twin.flush

        async def timed_write(batch: list[Any], now_ms: int) -> Any:
            t = time.perf_counter()
            out = await write(batch, now_ms)
            if self.active:
                self.commits.append((time.perf_counter() - t, len(batch), sum(len(m.rows) for m in batch)))
            return out

        async def timed_flush(engine: Any, now_ms: int) -> int:
            t = time.perf_counter()
            n: int = await flush(engine, now_ms)
            if self.active:
                self.flushes.append((time.perf_counter() - t, n))
            return n

        writer.write = timed_write
        twin.flush = timed_flush
        self.gc: list[tuple[int, float]] = []  # (generation, ms)
        started = [0.0]

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            elif self.active:
                self.gc.append((info["generation"], (time.perf_counter() - started[0]) * 1000))

        import gc

        gc.callbacks.append(on_gc)
        self._task = asyncio.create_task(self._watch_loop())

    async def _watch_loop(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            if self.active:
                self.lags.append((time.perf_counter() - t - 0.005) * 1000)

    def report(self) -> list[str]:
        """A few lines for the summary."""
        self._task.cancel()
        out = []
        if self.commits:
            d = sorted(c[0] * 1000 for c in self.commits)
            msgs = sum(c[1] for c in self.commits)
            out.append(
                f"history commits    {len(d):,}: avg {msgs / len(d):,.0f} messages / "
                f"{sum(c[2] for c in self.commits) / len(d):,.0f} rows, p50 {percentile(d, 50):.1f} ms, "
                f"p99 {percentile(d, 99):.1f} ms, busy {sum(d) / 1000 / max(1e-9, self.span):.0%} of the time"
            )
        if self.flushes:
            d = sorted(f[0] * 1000 for f in self.flushes)
            out.append(
                f"twin flushes       {len(d)}: avg {sum(f[1] for f in self.flushes) / len(d):,.0f} rows, "
                f"p50 {percentile(d, 50):.0f} ms, max {d[-1]:.0f} ms"
            )
        for gen in (0, 1, 2):
            d = sorted(ms for g, ms in self.gc if g == gen)
            if d:
                out.append(
                    f"gc generation {gen}    {len(d):,} runs, total {sum(d):,.0f} ms, max {d[-1]:.1f} ms"
                )
        if self.lags:
            d = sorted(self.lags)
            out.append(
                f"event-loop lag     p50 {percentile(d, 50):.1f} ms, p99 {percentile(d, 99):.1f} ms, "
                f"max {d[-1]:.0f} ms (a 5 ms timer's lateness)"
            )
        return out

    span = 1.0


@dataclass
class Observed:
    """What the platform process saw."""

    latencies_ms: list[float] = field(default_factory=list)
    window: tuple[float, float] = (float("inf"), float("inf"))


async def bench(args: argparse.Namespace) -> int:
    import asyncpg
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text
    from sqlalchemy import text as sql

    from smartev.app import Platform
    from smartev.events import SignalsChanged
    from smartev.settings import Settings
    from smartev.vehicles.vin import make_vin

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    db_kind, broker = CONFIGS[args.config]
    signals = pick_signals(args.signals)
    tmp = tempfile.mkdtemp(prefix="smartev-bench-")
    pg_name = None
    admin = None
    proc = None
    exit_code = 0
    try:
        if db_kind == "postgresql":
            pg_name = f"smartev_bench_{secrets.token_hex(5)}"
            admin = await asyncpg.connect(PG_ADMIN, timeout=5)
            await admin.execute(f'CREATE DATABASE "{pg_name}"')
            base = PG_ADMIN.rsplit("/", 1)[0]
            database_url = f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{pg_name}"
        else:
            database_url = f"sqlite+aiosqlite:///{tmp}/smartev.db"
        values: dict[str, Any] = {
            "data_dir": tmp,
            "database_url": database_url,
            "secret_key": secrets.token_urlsafe(40),
            "mqtt_client_id": f"smartev-bench-{secrets.token_hex(4)}",
            "mqtt_clean_session": True,
            "mqtt_port": 0,
        }
        if args.twin_flush_s:
            values["ingest"] = {"twin_flush_s": args.twin_flush_s}
        if broker == "mosquitto":
            values["mqtt_url"] = f"mqtt://{MOSQUITTO}"
        platform = Platform(Settings(**values))
        observed = Observed()

        def on_signals(event: SignalsChanged) -> None:
            now = time.time() * 1000
            newest = max(ts for _, ts in event.signals.values())
            if observed.window[0] <= newest <= observed.window[1]:
                observed.latencies_ms.append(now - newest)

        async with platform.running():
            trace = Trace(platform)
            if args.gc_freeze:
                import gc

                gc.freeze()  # an experiment: what the platform would gain from freezing its start-up objects
            if not platform.link.connected.is_set():
                console.print(
                    f"[red]the platform could not connect to the broker: {platform.link.last_error}"
                )
                return 2
            platform.bus.subscribe(SignalsChanged, on_signals)
            t = time.monotonic()
            owner = "bench-owner@example.com"
            await platform.accounts.create_user(owner, secrets.token_urlsafe(16), "owner")
            rnd = random.Random(args.seed)
            cars: list[tuple[str, str | None]] = []
            vins: set[str] = set()
            with console.status(f"registering {args.cars} cars") as status:
                while len(cars) < args.cars:
                    vin = make_vin(rnd)
                    if vin in vins:
                        continue
                    vins.add(vin)
                    _, secret = await platform.registry.register(vin, "smartev S1", owner)
                    cars.append((vin, secret if broker == "embedded" else None))
                    if len(cars) % 100 == 0:
                        status.update(f"registering cars: {len(cars)}/{args.cars}")
            console.print(f"registered {len(cars)} cars in {time.monotonic() - t:.1f} s")

            spec = LoadSpec(
                host=platform.address.host,
                port=platform.address.port,
                cars=cars,
                per_car_connections=broker == "embedded",
                connections=args.connections,
                hz=args.hz,
                samples=args.samples,
                signals=signals,
                ts_format=args.ts,
                warmup_s=args.warmup,
                seconds=args.seconds,
                drain_s=args.drain,
                seed=args.seed,
            )
            ctx = mp.get_context("spawn")
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_generator_main, args=(spec, child), name="ingest-load", daemon=True)
            proc.start()
            child.close()
            loop = asyncio.get_running_loop()
            inbox: asyncio.Queue[Any] = asyncio.Queue()

            def readable() -> None:
                try:
                    while parent.poll():
                        inbox.put_nowait(parent.recv())
                except (EOFError, OSError):
                    loop.remove_reader(parent.fileno())
                    inbox.put_nowait(("failed", "the generator process exited"))

            loop.add_reader(parent.fileno(), readable)
            with console.status("connecting the load generator"):
                msg = await asyncio.wait_for(inbox.get(), 120)
            if msg[0] != "ready" or msg[1] < msg[2]:
                console.print(f"[red]generator not ready: {msg}")
                return 2
            console.print(f"generator connected: {msg[2]} MQTT connections")

            ingest = platform.ingest
            counters = ingest.counters
            stored0 = counters["signals_stored"]
            cpu = CpuMeter(proc.pid or 0)
            profiler = None
            t_go = time.time()
            observed.window = ((t_go + args.warmup) * 1000, (t_go + args.warmup + args.seconds) * 1000)
            parent.send("go")
            window_start_stored: int | None = None
            window_end_stored: int | None = None
            done: Any = None
            progress = (0, 0, 0, 0, 0, 0)
            last_stored, last_t = stored0, time.monotonic()
            rate_now = 0.0
            total_s = args.warmup + args.seconds
            interactive = console.is_terminal
            last_print = 0.0

            def line() -> Text:
                elapsed = time.time() - t_go
                phase = (
                    "warm-up" if elapsed < args.warmup else "measuring" if elapsed < total_s else "draining"
                )
                lat = sorted(observed.latencies_ms[-5000:])
                return Text(
                    f"{phase:9} {min(elapsed, total_s):5.1f}/{total_s:.0f} s | sent {progress[0]:,} msg "
                    f"({progress[1]:,} sig) | committed {counters['signals_stored'] - stored0:,} sig, "
                    f"{rate_now:,.0f}/s | queue {ingest.queue_depth} | acked {progress[3]:,} | "
                    f"broker backlog {progress[5]:,} | p99 twin {percentile(lat, 99):.0f} ms"
                )

            live_view = (
                Live(line(), console=console, refresh_per_second=4, transient=False)
                if interactive
                else contextlib.nullcontext(None)  # logs and pipes get a plain line every 5 s instead
            )
            with live_view as live:
                hard_deadline = time.monotonic() + total_s + args.drain + 60
                while done is None and time.monotonic() < hard_deadline:
                    try:
                        msg = await asyncio.wait_for(inbox.get(), 0.25)
                    except TimeoutError:
                        msg = None
                    now_wall = time.time()
                    if window_start_stored is None and now_wall >= t_go + args.warmup:
                        window_start_stored = counters["signals_stored"]
                        cpu.begin()
                        trace.active = True
                        trace.span = args.seconds
                        if args.profile:
                            profiler = await asyncio.create_subprocess_exec(
                                shutil.which("py-spy")
                                or os.path.join(os.path.dirname(sys.executable), "py-spy"),
                                "record",
                                "--nonblocking",
                                "-p",
                                str(os.getpid()),
                                "-d",
                                str(int(args.seconds)),
                                "-r",
                                "200",
                                "-f",
                                args.profile_format,
                                "-o",
                                args.profile,
                                stdout=asyncio.subprocess.DEVNULL,
                                stderr=asyncio.subprocess.PIPE,
                            )
                    if window_end_stored is None and now_wall >= t_go + total_s:
                        window_end_stored = counters["signals_stored"]
                        cpu_share = cpu.end()
                        trace.active = False
                    if msg is not None:
                        if msg[0] == "progress":
                            progress = msg[1:]
                        elif msg[0] == "sent":
                            pass  # sending is over; the generator now waits for the last acks
                        elif msg[0] == "done":
                            done = msg[1]
                        elif msg[0] == "failed":
                            console.print(f"[red]generator failed: {msg[1]}")
                            return 2
                    mono = time.monotonic()
                    if mono - last_t >= 1:
                        rate_now = (counters["signals_stored"] - last_stored) / (mono - last_t)
                        last_stored, last_t = counters["signals_stored"], mono
                    if live is not None:
                        live.update(line())
                    elif mono - last_print >= 5:
                        console.print(line())
                        last_print = mono
                # the generator stops waiting for acks after --drain; give the writer the same chance
                if done is not None:
                    deadline = time.monotonic() + 10
                    while (
                        counters["signals_stored"] - stored0 < done.sent_signals
                        and time.monotonic() < deadline
                    ):
                        await asyncio.sleep(0.1)
                        if live is not None:
                            live.update(line())
            if done is None:
                console.print("[red]the generator did not finish in time")
                return 2
            if profiler is not None:
                _, err = await profiler.communicate()
                if profiler.returncode:
                    console.print(f"[yellow]py-spy failed: {err.decode()[-500:]}")
                else:
                    console.print(f"profile written to {args.profile}")
            if window_end_stored is None:
                window_end_stored = counters["signals_stored"]
                cpu_share = cpu.end()
            drain_s = time.time() - (t_go + total_s)

            async with platform.engine.connect() as conn:
                rows = (await conn.execute(sql("SELECT count(*) FROM telemetry_history"))).scalar()
                marks = (await conn.execute(sql("SELECT count(*) FROM telemetry_marks"))).scalar()
                dup_rows = (
                    await conn.execute(
                        sql(
                            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n "
                            "FROM telemetry_history "
                            "GROUP BY vehicle_id, signal_id, ts HAVING count(*) > 1) AS d"
                        )
                    )
                ).scalar()
            health = await platform.health()
            trace_lines = trace.report()

        # -- report --------------------------------------------------------------------------------------
        sustained = (window_end_stored - (window_start_stored or stored0)) / args.seconds
        offered = done.window_messages * len(signals) * args.samples / args.seconds
        lat = sorted(observed.latencies_ms)
        ack = sorted(done.ack_latency_ms)
        ok_count = rows == done.sent_signals and marks == done.sent_messages and dup_rows == 0
        ok_acks = done.acked == done.sent_messages and done.errors == 0
        passed = sustained >= 50_000 and percentile(lat, 99) <= 100
        cmd = (
            f"python bench/ingest.py --config {args.config} --cars {args.cars} --seconds {args.seconds:g} "
            f"--signals {args.signals} --hz {args.hz:g} --samples {args.samples}"
            + (f" --connections {args.connections}" if broker == "mosquitto" else "")
            + (f" --ts {args.ts}" if args.ts != "iso" else "")
            + (f" --twin-flush-s {args.twin_flush_s:g}" if args.twin_flush_s else "")
            + (" --gc-freeze" if args.gc_freeze else "")
        )
        console.rule(f"ingest benchmark: {args.config}")
        ing = health["ingest"]["counters"]
        links = "per-car connections" if broker == "embedded" else f"{args.connections} connections"
        never_stored = done.sent_messages - marks
        shed = ing.get("shed_overload", 0)
        if not ok_count and shed:
            why = f" ({shed:,} messages shed by the overloaded platform: never acked, a car resends them)"
        elif not ok_count and never_stored > 0 and broker == "mosquitto":
            why = (
                f" ({never_stored:,} messages never reached the platform: Mosquitto drops what it queues"
                " beyond max_queued_messages (default 1000) for a slow subscriber; a car resends them)"
            )
        else:
            why = ""
        if offered < 50_000:
            verdict = "offered load is below the target"
        else:
            verdict = "met" if passed else "NOT met"
        lines = [
            f"machine            {os.cpu_count()} cores (os.cpu_count()), Python {sys.version.split()[0]}",
            f"load               {args.cars} cars × {args.hz:g} msg/s × {args.samples} sample(s) × "
            f"{len(signals)} signals ({links}, ts {args.ts})",
            f"offered            {offered:,.0f} signal updates/s in the window "
            f"(target {args.cars * args.hz * args.samples * len(signals):,.0f}/s)",
            f"sustained          {sustained:,.0f} signal updates/s committed over {args.seconds:g} s "
            f"after {args.warmup:g} s warm-up",
            f"publish→twin       p50 {percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms, "
            f"max {lat[-1] if lat else float('nan'):.1f} ms ({len(lat):,} messages)",
            f"publish→ack        p50 {percentile(ack, 50):.1f} ms, p99 {percentile(ack, 99):.1f} ms",
            f"drain after send   {drain_s:.1f} s; generator max broker backlog {done.max_backlog:,} messages",
            "cpu (cores)        " + ", ".join(f"{k} {v:.2f}" for k, v in cpu_share.items()),
            *trace_lines,
            f"history check      {rows:,} rows for {done.sent_signals:,} signals sent; {marks:,} marks for "
            f"{done.sent_messages:,} messages; {dup_rows} duplicate rows -> "
            + ("OK" if ok_count else "MISMATCH" + why),
            f"acks               {done.acked:,} of {done.sent_messages:,} acked, {done.duplicate_acks} "
            f"duplicate acks, {done.errors} error reports -> {'OK' if ok_acks else 'MISSING'}",
            "ingest counters    " + ", ".join(f"{k}={v}" for k, v in sorted(ing.items())),
            f"target             ≥ 50,000 signal updates/s with p99 ≤ 100 ms: {verdict}",
            f"reproduce          {cmd}",
        ]
        if cpu_share.get("others", 0) > 0.25:
            lines.append(
                f"[yellow]warning            other processes used {cpu_share['others']:.2f} cores during the "
                "window: these figures are pessimistic[/]"
            )
        for ln in lines:
            console.print(ln)
        if done.error_samples:
            console.print(f"error samples: {done.error_samples}")
        if not ok_count or not ok_acks:
            exit_code = 1
        return exit_code
    finally:
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(5)
        if admin is not None:
            if pg_name:
                await admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            await admin.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", choices=sorted(CONFIGS), default="mosquitto-postgres")
    p.add_argument("--cars", type=int, default=1000)
    p.add_argument("--hz", type=float, default=1.0, help="messages per car per second (default 1)")
    p.add_argument("--samples", type=int, default=1, help="samples per message (default 1)")
    p.add_argument("--signals", type=int, default=50, help="signals per sample (default 50)")
    p.add_argument("--seconds", type=float, default=30, help="measurement window (default 30)")
    p.add_argument("--warmup", type=float, default=5, help="seconds of load before measuring (default 5)")
    p.add_argument("--drain", type=float, default=30, help="seconds to wait for the last acks (default 30)")
    p.add_argument(
        "--connections",
        type=int,
        default=4,
        help="MQTT connections the cars are multiplexed over (Mosquitto only; default 4)",
    )
    p.add_argument(
        "--ts",
        choices=["iso", "ms"],
        default="iso",
        help="sample timestamps as RFC 3339 text (like the simulator) or epoch milliseconds",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--gc-freeze",
        action="store_true",
        help="experiment: gc.freeze() in the platform process after start (not what the platform does)",
    )
    p.add_argument(
        "--twin-flush-s",
        type=float,
        default=0,
        help="override SMARTEV_INGEST__TWIN_FLUSH_S (the twin's write-behind period; default: the setting's)",
    )
    p.add_argument(
        "--profile", help="write a py-spy profile of the platform process over the window to this file"
    )
    p.add_argument("--profile-format", default="speedscope", choices=["speedscope", "flamegraph", "raw"])
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
