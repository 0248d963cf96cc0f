"""Simulated fleet benchmark: how many cars one process keeps reporting at 1 Hz, each its own MQTT client.

    python bench/fleet.py --cars 1000 --seconds 30
    python bench/fleet.py --cars 10000 --seconds 30 --speed 60
    python bench/fleet.py --cars 3000 --broker 127.0.0.1:1883 --profile /tmp/fleet.html

This process runs a `Fleet` of `--cars` cars (one MQTT connection per car, logged in with its VIN). A
separate acker process (paho-mqtt) plays the platform: it subscribes to `vehicles/+/telemetry` and answers
each message with `{"seq": n}` on `vehicles/{vin}/telemetry/ack` at QoS 1, so the outboxes drain. The broker
is a private Mosquitto on a free port (`--private-broker`, the default) or any anonymous one (`--broker`).

Once every car is connected and `--warmup` seconds have passed, a window of `--seconds` measures:

- reports/s run by the cars, against the `--cars`/s expected (a report whose signals did not change since
  the last one sends nothing, so a parked car sends less than 1 msg/s; `--speed 60` makes most cars move),
- telemetry messages/s created by the cars, delivered to the acker and acked back,
- report lag: how late each car's report runs against its own schedule (the drive loop's rule: the next
  report is due one interval after the last one was due, or now if that is past), p50/p99/max,
- event-loop lag: how late a 100 ms sleep wakes up,
- CPU % (of one core) and RSS of this process, CPU of the broker and the acker,
- messages acked vs created over the window, and still pending at the end,

and before it, how long all cars took to connect (the fleet spreads connects at 500/s on purpose).
One process sustains N cars when it runs at least 95 % of N reports/s, at least 95 % of the messages created
reach the acker, and the report lag p99 is at most 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from smartev.sim.car import SimulatedCar
from smartev.sim.fleet import CarIdentity, Fleet
from smartev.vehicles.vin import make_vin

SUSTAINED_SHARE = 0.95
SUSTAINED_P99_LAG_S = 1.0


# ---------------------------------------------------------------------------------------------------------
# the acker (a separate process: paho and orjson only)
# ---------------------------------------------------------------------------------------------------------


def _acker_main(host: str, port: int, index: int, shared: bool, received: Synchronized[int]) -> None:
    import orjson
    import paho.mqtt.client as paho

    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=f"bench-acker-{os.getpid()}-{index}", clean_session=True
    )
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(65_535)
    topic = "$share/bench-ackers/vehicles/+/telemetry" if shared else "vehicles/+/telemetry"
    count = 0

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(topic, qos=1)

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        nonlocal count
        vin = msg.topic.split("/", 2)[1]
        seq = orjson.loads(msg.payload)["seq"]
        client.publish(f"vehicles/{vin}/telemetry/ack", b'{"seq":%d}' % seq, qos=1)
        count += 1
        if count % 64 == 0:
            received.value = count

    def on_log_flush(*_: Any) -> None:
        received.value = count

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = on_log_flush
    client.connect(host, port, keepalive=60)
    client.loop_forever()


# ---------------------------------------------------------------------------------------------------------
# the broker
# ---------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_private_broker(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Mosquitto on a free port, anonymous, sized for tens of thousands of clients."""
    binary = shutil.which("mosquitto", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin")
    if binary is None:
        raise SystemExit("mosquitto is not installed; pass --broker host:port")
    port = _free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"
        "max_connections -1\nmax_queued_messages 100000\nmax_inflight_messages 0\n"
    )
    process = subprocess.Popen([binary, "-c", str(conf)])
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return process, port
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit("the private mosquitto did not start")
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------------------
# the measurements
# ---------------------------------------------------------------------------------------------------------


class ReportClock:
    """Wraps each car's `report` to time it against the car's own 1 Hz schedule."""

    def __init__(self, cars: list[SimulatedCar]) -> None:
        self.lags: list[float] = []
        self.reports = 0
        self.recording = False
        for car in cars:
            car.report = self._timed(car.report, car.report_interval_s)  # type: ignore[method-assign]

    def _timed(self, report: Callable[[], None], interval: float) -> Callable[[], None]:
        due: float | None = None
        monotonic = time.monotonic

        def timed() -> None:
            nonlocal due
            started = monotonic()
            if due is not None and self.recording:
                self.lags.append(started - due)
                self.reports += 1
            report()
            ended = monotonic()
            due = started + interval if due is None else max(due + interval, ended)

        return timed


async def loop_lag_probe(lags: list[float], recording: Callable[[], bool]) -> None:
    """How late a 100 ms sleep wakes up: the whole loop's responsiveness."""
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(0.1)
        if recording():
            lags.append(loop.time() - t - 0.1)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def cpu_s(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    with contextlib.suppress(psutil.Error):
        times = process.cpu_times()
        return float(times.user + times.system)
    return 0.0


def fleet_identities(count: int, seed: int) -> list[CarIdentity]:
    rng = random.Random(seed)
    vins: dict[str, None] = {}
    while len(vins) < count:
        vins[make_vin(rng)] = None
    return [CarIdentity(vin, f"bench-{vin[-6:]}") for vin in vins]


async def bench(args: argparse.Namespace, host: str, port: int, broker_pid: int | None) -> None:
    identities = fleet_identities(args.cars, args.seed)
    fleet = Fleet(
        identities,
        mqtt_host=host,
        mqtt_port=port,
        seed=args.seed,
        speed=args.speed,
        report_interval_s=1.0,
        wall_clock_ts=args.speed != 1.0,
        ledger_size=0,
    )
    cars = list(fleet)
    clock = ReportClock(cars)
    ctx = mp.get_context("spawn")
    received = [ctx.Value("q", 0, lock=False) for _ in range(args.ackers)]
    ackers = [
        ctx.Process(target=_acker_main, args=(host, port, i, args.ackers > 1, received[i]), daemon=True)
        for i in range(args.ackers)
    ]
    for acker in ackers:
        acker.start()
    me = psutil.Process()
    broker = psutil.Process(broker_pid) if broker_pid else None
    acker_procs = [psutil.Process(a.pid) for a in ackers if a.pid is not None]
    loop_lags: list[float] = []
    await asyncio.sleep(1.0)  # let the ackers subscribe before the first telemetry

    t_start = time.monotonic()
    run = asyncio.create_task(fleet.run(), name="fleet")
    probe = asyncio.create_task(loop_lag_probe(loop_lags, lambda: clock.recording), name="probe")
    try:
        while sum(car.connected for car in cars) < len(cars):
            if time.monotonic() - t_start > args.connect_timeout:
                raise SystemExit(
                    f"only {sum(c.connected for c in cars)} of {len(cars)} cars connected "
                    f"within {args.connect_timeout} s"
                )
            if run.done():
                run.result()
            await asyncio.sleep(0.1)
        connect_s = time.monotonic() - t_start
        print(
            f"all {len(cars)} cars connected in {connect_s:.1f} s; warming up {args.warmup:.0f} s", flush=True
        )
        await asyncio.sleep(args.warmup)

        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.002, async_mode="disabled")
            profiler.start()
        before = fleet.stats()
        delivered0 = sum(v.value for v in received)
        cpu0, broker0, ackers0 = cpu_s(me), cpu_s(broker), sum(cpu_s(p) for p in acker_procs)
        t0 = time.monotonic()
        clock.recording = True
        await asyncio.sleep(args.seconds)
        clock.recording = False
        elapsed = time.monotonic() - t0
        cpu1, broker1, ackers1 = cpu_s(me), cpu_s(broker), sum(cpu_s(p) for p in acker_procs)
        delivered1 = sum(v.value for v in received)
        after = fleet.stats()
        if profiler is not None:
            profiler.stop()
            html = args.profile.endswith(".html")
            Path(args.profile).write_text(  # noqa: ASYNC240 - after the window
                profiler.output_html() if html else profiler.output_text(unicode=True, show_all=True)
            )
            print(f"profile written to {args.profile}")
        rss_mb = me.memory_info().rss / 2**20
        connected = sum(car.connected for car in cars)
    finally:
        probe.cancel()
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(run, probe, return_exceptions=True)
        for acker in ackers:
            acker.terminate()

    created = after.sent - before.sent
    acked = after.acked - before.acked
    delivered = delivered1 - delivered0
    lags = sorted(clock.lags)
    loop = sorted(loop_lags)
    reports_rate = clock.reports / elapsed
    created_rate = created / elapsed
    delivered_rate = delivered / elapsed
    p99 = percentile(lags, 0.99)
    sustained = (
        reports_rate >= SUSTAINED_SHARE * args.cars
        and delivered >= SUSTAINED_SHARE * created
        and p99 <= SUSTAINED_P99_LAG_S
    )
    print(
        f"fleet cars={args.cars} speed={args.speed:g} cpus={os.cpu_count()}: "
        f"{'SUSTAINED' if sustained else 'NOT sustained'} 1 Hz | "
        f"reports {reports_rate:.0f}/s ({reports_rate / args.cars:.0%} of {args.cars}/s), "
        f"messages created {created_rate:.0f}/s, delivered {delivered_rate:.0f}/s, acked {acked / elapsed:.0f}/s "
        f"({acked}/{created} over {elapsed:.0f} s, pending {after.pending}, resent {after.resent - before.resent}) | "
        f"report lag p50 {percentile(lags, 0.5) * 1000:.0f} ms p99 {p99 * 1000:.0f} ms "
        f"max {(lags[-1] if lags else float('nan')) * 1000:.0f} ms, "
        f"loop lag p99 {percentile(loop, 0.99) * 1000:.0f} ms | "
        f"fleet CPU {(cpu1 - cpu0) / elapsed:.0%} RSS {rss_mb:.0f} MiB "
        f"({rss_mb * 1024 / args.cars:.0f} KiB/car), broker CPU {(broker1 - broker0) / elapsed:.0%}, "
        f"acker CPU {(ackers1 - ackers0) / elapsed:.0%} | connect {connect_s:.1f} s, "
        f"connected at end {connected}/{args.cars}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cars", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30, help="measurement window (default 30)")
    parser.add_argument("--warmup", type=float, default=5, help="seconds after all connected (default 5)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--seed", type=int, default=1)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--broker", help="host:port of an anonymous broker")
    where.add_argument(
        "--private-broker", action="store_true", help="start a private Mosquitto (the default)"
    )
    parser.add_argument(
        "--ackers", type=int, default=1, help="acker processes (a shared subscription if > 1)"
    )
    parser.add_argument("--connect-timeout", type=float, default=120)
    parser.add_argument(
        "--profile", help="write a pyinstrument profile of the window here (HTML for *.html, else text)"
    )
    args = parser.parse_args()

    # One socket per car, and the broker (our child) inherits the limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.cars + 1000
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard) if hard > 0 else wanted, hard))

    with tempfile.TemporaryDirectory() as tmp:
        broker: subprocess.Popen[bytes] | None = None
        if args.broker:
            host, _, port_text = args.broker.rpartition(":")
            port = int(port_text)
        else:
            broker, port = start_private_broker(Path(tmp))
            host = "127.0.0.1"
        try:
            asyncio.run(bench(args, host, port, broker.pid if broker else None))
        finally:
            if broker is not None:
                broker.terminate()
                broker.wait(10)


if __name__ == "__main__":
    main()
