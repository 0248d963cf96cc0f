"""In-car agent benchmark: spool throughput, and how fast a backlog replays while live data keeps flowing.

    python bench/agent.py spool  --messages 5000
    python bench/agent.py replay --config embedded --backlog 3000 --replay-per-s 1000
    python bench/agent.py replay --config mosquitto-postgres --backlog 10000 --replay-per-s 2000

`spool` appends messages of 10 samples × 30 signals (what one second of a car at 10 Hz makes) to a fresh spool
file and acknowledges them, with synchronous=FULL (survives a power cut) and NORMAL (survives a crash).

`replay` runs a real platform in this process, fills one car's spool with `--backlog` messages stamped in the
past (a car that was offline), then starts the agent with the simulator at 10 Hz and measures how long the
backlog takes to reach the history (messages/s, samples/s) and the ack latency of live messages meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from smartev.agent.config import parse_config
from smartev.agent.protocol import rfc3339_ms
from smartev.agent.runtime import Agent
from smartev.agent.simsource import SimulatorSource
from smartev.agent.spool import Spool
from smartev.app import Platform
from smartev.settings import Settings
from smartev.sim.model import CarModel
from smartev.vehicles.vin import make_vin

SIGNALS_PER_SAMPLE = 30
SAMPLES_PER_MESSAGE = 10


def realistic_samples(start_ms: int, model: CarModel) -> list[dict[str, Any]]:
    """One second of a car at 10 Hz: 10 samples of its first 30 signals."""
    samples = []
    for i in range(SAMPLES_PER_MESSAGE):
        signals = dict(list(model.step(0.1).items())[:SIGNALS_PER_SAMPLE])
        samples.append({"ts": rfc3339_ms((start_ms + i * 100) / 1000), "signals": signals})
    return samples


def bench_spool(messages: int) -> None:
    model = CarModel("bench", datetime.now(UTC))
    batches = [realistic_samples(1_700_000_000_000 + i * 1000, model) for i in range(200)]
    shape = f"{SAMPLES_PER_MESSAGE} samples × {SIGNALS_PER_SAMPLE} signals"
    print(f"spool: {messages} messages of {shape}, cpus={os.cpu_count()}")
    for sync in ("full", "normal"):
        with tempfile.TemporaryDirectory() as tmp:
            spool = Spool(Path(tmp) / "spool.db", synchronous=sync)  # type: ignore[arg-type]
            t0 = time.perf_counter()
            seqs = [
                spool.append(batches[i % len(batches)], 1_700_000_000_000 + i).seq for i in range(messages)
            ]
            append_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for i in range(0, len(seqs), 50):
                spool.ack(seqs[i : i + 50])
            ack_s = time.perf_counter() - t0
            size = spool.stats()
            spool.close()
        print(
            f"  synchronous={sync:6s} append {messages / append_s:8.0f} msg/s "
            f"({messages * SAMPLES_PER_MESSAGE / append_s:9.0f} samples/s)   "
            f"ack (50 per txn) {messages / ack_s:8.0f} msg/s   left {size.depth}"
        )


async def bench_replay(args: argparse.Namespace) -> None:
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        settings = await _settings(args.config, tmp, stack)
        platform = Platform(settings)
        await stack.enter_async_context(platform.running())
        await platform.accounts.create_user("bench-owner@example.com", "bench-owner-password", "owner")
        vin = make_vin(random.Random(5))
        _, password = await platform.registry.register(vin, "smartev S1", "bench-owner@example.com")
        address = platform.address
        config = parse_config(
            {
                "vin": vin,
                "platform": {"mqtt_url": f"mqtt://{address.host}:{address.port}", "ack_timeout_s": 10},
                "spool": {
                    "path": "spool.db",
                    "replay_per_s": args.replay_per_s,
                    "max_in_flight": args.in_flight,
                },
                "sampling": {"batch_ms": 1000},
            },
            tmp,
        )
        now_ms = int(time.time() * 1000)
        start_ms = now_ms - (args.backlog + 600) * 1000
        model = CarModel("bench-backlog", datetime.fromtimestamp(start_ms / 1000, UTC))
        spool = Spool(config.spool_path)
        for i in range(args.backlog):
            spool.append(realistic_samples(start_ms + i * 1000, model), start_ms + i * 1000)
        backlog_seqs_end = spool.stats().appended_messages
        spool.close()
        live_model = CarModel("bench-live", datetime.now(UTC))
        source = SimulatorSource(live_model, rate_hz=10, timestamps="wall")
        agent = Agent(config, source, password=password)
        sent_at: dict[int, float] = {}
        live_latency: list[float] = []
        live_seqs: set[int] = set()

        def on_spooled(spooled: Any, batch: Any) -> None:
            live_seqs.add(spooled.seq)
            sent_at[spooled.seq] = time.perf_counter()

        agent.on_spooled.append(on_spooled)
        acked_backlog = 0
        done = asyncio.Event()

        def on_ack(seq: int) -> None:
            nonlocal acked_backlog
            if seq in live_seqs:
                live_latency.append(time.perf_counter() - sent_at[seq])
            else:
                acked_backlog += 1
                if acked_backlog >= backlog_seqs_end:
                    done.set()

        agent.on_acked.append(on_ack)
        task = asyncio.create_task(agent.run())
        t0 = time.perf_counter()
        while not done.is_set():
            if time.perf_counter() - t0 > args.timeout:
                raise SystemExit(f"backlog not replayed within {args.timeout} s: {agent.counts}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 5.0)
            print(f"  … {acked_backlog}/{backlog_seqs_end} backlog acked, {agent.counts}", flush=True)
        elapsed = time.perf_counter() - t0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        lat = sorted(live_latency)
        p = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (lambda q: float("nan"))
        print(
            f"replay ({args.config}, cpus={os.cpu_count()}): {args.backlog} backlog messages "
            f"({args.backlog * SAMPLES_PER_MESSAGE} samples, {args.backlog * SAMPLES_PER_MESSAGE * SIGNALS_PER_SAMPLE} "
            f"signal values) in {elapsed:.1f} s = {args.backlog / elapsed:.0f} msg/s, "
            f"{args.backlog * SAMPLES_PER_MESSAGE / elapsed:.0f} samples/s (limit {args.replay_per_s}/s); "
            f"live messages meanwhile: {len(lat)}, spool→ack p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms"
            + (f", mean {statistics.mean(lat) * 1000:.0f} ms" if lat else "")
        )


async def _settings(config: str, tmp: Path, stack: AsyncExitStack) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp,
        "secret_key": "bench-secret-" + "x" * 40,
        "mqtt_port": 0,
        "database_url": f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
    }
    if config == "mosquitto-postgres":
        import asyncpg

        admin_url = os.environ.get("SMARTEV_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
        name = f"smartev_bench_{random.randrange(10**9)}"
        admin = await asyncpg.connect(admin_url)
        await admin.execute(f'CREATE DATABASE "{name}"')

        async def drop() -> None:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

        stack.push_async_callback(drop)
        base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        values["database_url"] = f"{base}/{name}"
        values["mqtt_url"] = "mqtt://" + os.environ.get("SMARTEV_BENCH_MOSQUITTO", "127.0.0.1:1883")
        values["mqtt_client_id"] = f"smartev-bench-{random.randrange(10**9)}"
    return Settings(**values)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("spool")
    s.add_argument("--messages", type=int, default=5000)
    r = sub.add_parser("replay")
    r.add_argument("--config", choices=["embedded", "mosquitto-postgres"], default="embedded")
    r.add_argument("--backlog", type=int, default=3000)
    r.add_argument("--replay-per-s", type=float, default=1000)
    r.add_argument("--in-flight", type=int, default=200)
    r.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    if args.what == "spool":
        bench_spool(args.messages)
    else:
        asyncio.run(bench_replay(args))


if __name__ == "__main__":
    main()
