"""OCPP central-system benchmark: stations held, calls/s with latency, and a reconnect storm.

    python bench/ocpp.py --quick                   # smoke check: 500 stations, 10 s, well under a minute
    python bench/ocpp.py                           # 20,000 stations (capped by the open-files limit), 1,000 calls/s
    python bench/ocpp.py --db postgresql           # the same on a scratch PostgreSQL database
    python bench/ocpp.py --phases rate --find-max  # the highest rate whose p99 stays within 50 ms
    python bench/ocpp.py --storm-mode restart      # kill -9 the platform and start a new one as the storm

The platform (`Platform(Settings(...))` with `platform.running()`; the OCPP server on its own port, the
embedded MQTT broker idle) runs in its own process. The load generator runs in one or more other processes
(`--generators`). It is a lean OCPP-J client of its own: a raw asyncio protocol that does the RFC 6455
handshake (Basic auth, subprotocol), masks its frames with websockets' C helper, answers pings, and builds
its CALLs from small dicts. It runs no library ChargePoint and no task per connection, so 20,000 stations
cost it little CPU next to the server on two cores.

The stations are inserted into the database before the platform starts, in bulk. They all share one
password and one stored hash, `hash_device_secret(password, PASSWORD_ITERATIONS)`. The server's cost per
login is the same as with 20,000 distinct hashes: one PBKDF2 of PASSWORD_ITERATIONS rounds each time.

Phases (`--phases`, default all three):

1. hold: connect N stations (`--stations`), at most `--connect-concurrency` handshakes+boots in flight.
   Each sends BootNotification and a StatusNotification; a share of them (`--charging`) opens a
   transaction, and the bench waits until every one is stored (reported: when). Then, for `--hold`
   seconds, every station sends a Heartbeat every `--heartbeat-s` (300 s)
   and each charging station sends its MeterValues (1.6) or TransactionEvent Updated (2.0.1) every
   `--meter-s` (60 s), spread evenly. Reported: stations connected and booted (generator and server view),
   connect time, the server's VmRSS before/after (KB per station), latency of the background calls.
2. rate: `--rated` stations (the first ones, 1.6 and 2.0.1 alternating) run charging cycles, open-loop at
   `--rate` calls/s for `--seconds` (after `--warmup`), next to the background of phase 1. A cycle is
   StartTransaction / TransactionEvent Started, StatusNotification, 8 × MeterValues / TransactionEvent
   Updated, StopTransaction / TransactionEvent Ended, StatusNotification, Heartbeat. A station keeps to
   OCPP-J's one CALL in flight: a call that falls due while the previous one waits is queued, and its
   latency counts from the instant it was due (no coordinated omission). `--find-max` then steps the rate up.
3. storm: with all stations connected, every connection is reset at once. In `client` mode (the default)
   the generators reset their TCP connections (RST), as when a NAT or load balancer drops them. In `restart`
   mode the platform process is killed with SIGKILL and a new one started on the same database and port.
   All stations reconnect at once (at most `--connect-concurrency` in flight, 0.5-1.5 s back-off after a
   failed attempt). Reported: the time until every station is connected and booted again.

In the platform process the bench also measures, per phase: event-loop lag (a 10 ms timer's lateness), GC
pauses by generation, the stations write-behind flushes and the charging group commits (wrapped, not
changed), SQL statements/s and CPU per thread. `--profile FILE --profile-phase hold|rate|storm` records the
platform with py-spy; `--trace-memory` lists what the connections hold, by source file (tracemalloc).

Open files: the bench raises RLIMIT_NOFILE to the hard limit in every process. If that hard limit cannot
hold N connections plus the server's own files, N is lowered and the bench says so. The generators connect
from several loopback source addresses (`--source-ips`), so one address's ephemeral port range
(net.ipv4.ip_local_port_range) does not bound N.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import gc
import hashlib
import math
import multiprocessing as mp
import os
import random
import resource
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

# This file is named like the `ocpp` library the platform imports: take its own folder off the path (spawned
# processes inherit the path), so that `import ocpp` finds the library.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent / "src"))

PG_ADMIN = os.environ.get("SMARTEV_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
PASSWORD = "bench-station-password-0001"  # every station's Basic-auth password (16-40 characters)
TAG_COUNT = 1000  # id tags registered for the transactions
FD_RESERVE = 64  # files the server needs besides its station sockets (database, broker, logs, pipes)
P99_TARGET_MS = 50.0
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MV_PER_CYCLE = 8


def raise_nofile() -> tuple[int, int]:
    """Raise this process's open-files soft limit to the hard limit; returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def station_id(i: int) -> str:
    return f"BENCH-{i:06d}"


def tag_of(i: int) -> str:
    return f"BENCHTAG{i % TAG_COUNT:05d}"


def percentile(sorted_values: Any, q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, nearest rank."""
    n = len(sorted_values)
    if not n:
        return float("nan")
    return float(sorted_values[min(n - 1, max(0, math.ceil(q / 100 * n) - 1))])


def _iso_now() -> Any:
    cache: dict[int, str] = {}

    def iso() -> str:
        ms = int(time.time() * 1000)
        sec, rest = divmod(ms, 1000)
        prefix = cache.get(sec)
        if prefix is None:
            if len(cache) > 8:
                cache.clear()
            prefix = cache[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{prefix}.{rest:03d}Z"

    return iso


# ---------------------------------------------------------------------------------------------------------
# the load generator (separate processes: asyncio, orjson and websockets' mask helper only)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class GenSpec:
    """What one generator process runs."""

    index: int
    host: str
    port: int
    indices: list[int]  # global station numbers; even = OCPP 1.6, odd = 2.0.1
    source_ips: list[str]
    connect_concurrency: int
    charging: float
    heartbeat_s: float
    meter_s: float
    seed: int


class HandshakeFailed(Exception):
    """The server did not switch protocols; `reason` is short enough to count by."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class St:
    """One simulated station's state in the generator."""

    __slots__ = (
        "backlog",
        "bg_charging",
        "booted",
        "busy",
        "client",
        "connecting",
        "energy",
        "epoch",
        "idx",
        "n_tx",
        "rated",
        "seq",
        "sid",
        "step",
        "tx",
        "v16",
    )

    def __init__(self, idx: int, bg_charging: bool) -> None:
        self.idx = idx
        self.sid = station_id(idx)
        self.v16 = idx % 2 == 0
        self.client: Client | None = None
        self.connecting = False
        self.epoch = 0
        self.booted = False
        self.busy = False
        self.backlog: collections.deque[tuple[str, float]] = collections.deque()
        self.tx: str | None = None
        self.seq = 0
        self.energy = 1000.0 * (idx % 97)
        self.step = 0
        self.n_tx = 0
        self.rated = False
        self.bg_charging = bg_charging


class Client(asyncio.Protocol):
    """A minimal RFC 6455 client connection (text frames, ping/pong, close) for one station."""

    def __init__(self, gen: Generator, st: St, epoch: int) -> None:
        self.gen, self.st, self.epoch = gen, st, epoch
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.closed = False
        self.handshake: asyncio.Future[None] = gen.loop.create_future()
        self.key = base64.b64encode(os.urandom(16))
        self.fragments: list[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.gen.request(self.st, self.key))

    def _fail(self, reason: str) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeFailed(reason))
        if self.transport is not None:
            self.transport.abort()

    def _check_head(self, head: bytes) -> bool:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or parts[1] != b"101":
            self._fail(f"HTTP {parts[1].decode(errors='replace') if len(parts) > 1 else '?'}")
            return False
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        accept = base64.b64encode(hashlib.sha1(self.key + WS_GUID).digest())
        if headers.get(b"sec-websocket-accept") != accept:
            self._fail("bad Sec-WebSocket-Accept")
            return False
        if headers.get(b"sec-websocket-protocol") != (b"ocpp1.6" if self.st.v16 else b"ocpp2.0.1"):
            self._fail("subprotocol not accepted")
            return False
        return True

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self._fail("response head too long")
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            if not self._check_head(head):
                return
            self.upgraded = True
            self.handshake.set_result(None)
        while True:
            n = len(buf)
            if n < 2:
                return
            b0, b1 = buf[0], buf[1]
            length, pos = b1 & 0x7F, 2
            if length == 126:
                if n < 4:
                    return
                length, pos = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if n < 10:
                    return
                length, pos = int.from_bytes(buf[2:10], "big"), 10
            if n < pos + length:
                return
            payload = bytes(buf[pos : pos + length])
            del buf[: pos + length]
            opcode, fin = b0 & 0x0F, b0 & 0x80
            if opcode in (1, 2, 0):
                if opcode and fin:
                    self.gen.on_message(self.st, payload)
                elif opcode:
                    self.fragments = [payload]
                elif self.fragments is not None:
                    self.fragments.append(payload)
                    if fin:
                        message, self.fragments = b"".join(self.fragments), None
                        self.gen.on_message(self.st, message)
            elif opcode == 9:  # ping: pong with the same payload
                self._frame(0x8A, payload)
            elif opcode == 8:  # close: echo the code, the server closes TCP
                self._frame(0x88, payload[:2])
                self.closed = True
                return

    def _frame(self, first: int, payload: bytes) -> None:
        if self.transport is None or self.closed or self.transport.is_closing():
            return
        n = len(payload)
        mask = os.urandom(4)
        if n < 126:
            head = bytes((first, 0x80 | n))
        elif n < 65536:
            head = bytes((first, 0xFE)) + n.to_bytes(2, "big")
        else:
            head = bytes((first, 0xFF)) + n.to_bytes(8, "big")
        self.transport.write(head + mask + apply_mask(payload, mask))

    def send(self, payload: bytes) -> bool:
        """Send a text frame; False when the connection is gone."""
        if self.transport is None or self.closed or self.transport.is_closing():
            return False
        self._frame(0x81, payload)
        return True

    def reset(self) -> None:
        """Drop the TCP connection with an RST (no TIME_WAIT, the server sees ECONNRESET)."""
        self.closed = True
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeFailed("closed during handshake"))
        self.gen.on_lost(self.st, self.epoch)


try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask


class Lat:
    """Latencies of one kind of call in one window: from the instant the call was due, and from its send."""

    def __init__(self) -> None:
        self.due = array("d")
        self.sent = array("d")
        self.errors = 0

    def add(self, due_ms: float, sent_ms: float) -> None:
        self.due.append(due_ms)
        self.sent.append(sent_ms)


class Generator:
    """Stations of one generator process, their connections and their schedules."""

    def __init__(self, spec: GenSpec, pipe: Connection) -> None:
        self.spec = spec
        self.pipe = pipe
        self.loop = asyncio.get_running_loop()
        self.iso = _iso_now()
        self.rnd = random.Random(spec.seed)
        n_charging = round(len(spec.indices) * spec.charging)
        charging = set(self.rnd.sample(range(len(spec.indices)), n_charging))
        self.stations = [St(idx, k in charging) for k, idx in enumerate(spec.indices)]
        auth = {st.idx: base64.b64encode(f"{st.sid}:{PASSWORD}".encode()).decode() for st in self.stations}
        self._auth = auth
        self.pending: dict[str, tuple[St, str, str, float, float, str]] = {}
        self.next_id = 0
        self.booted = 0
        self.connected = 0
        self.connect_failures: collections.Counter[str] = collections.Counter()
        self.sem = asyncio.Semaphore(spec.connect_concurrency)
        self.boot_waiters: dict[int, asyncio.Future[None]] = {}
        self.lat: dict[str, Lat] = collections.defaultdict(Lat)  # window tag -> latencies
        self.by_action: dict[str, Lat] = collections.defaultdict(Lat)  # rated window, per action
        self.error_samples: list[str] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.windows: dict[str, tuple[float, float]] = {}
        self.background = False
        self.rate_task: asyncio.Task[None] | None = None
        self.bg_task: asyncio.Task[None] | None = None
        self.reconnecting = True  # reconnect a station whose connection drops unexpectedly
        self.done = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.rated: list[St] = []

    # --- wire ---

    def request(self, st: St, key: bytes) -> bytes:
        proto = "ocpp1.6" if st.v16 else "ocpp2.0.1"
        return (
            f"GET /ocpp/{st.sid} HTTP/1.1\r\nHost: {self.spec.host}:{self.spec.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {proto}\r\n"
            f"Authorization: Basic {self._auth[st.idx]}\r\n\r\n"
        ).encode()

    def window_of(self, kind: str, due: float) -> str | None:
        """Which measurement window a call belongs to, if any."""
        tag = "rate" if kind == "cycle" else ("bg" if kind in ("hb", "mv") else "connect")
        w = self.windows.get(tag)
        if w is not None and w[0] <= due < w[1]:
            return tag
        return None

    def enqueue(self, st: St, kind: str, due: float) -> None:
        """A call falls due: send it now, or after the station's call in flight is answered."""
        if st.busy or (not st.booted and kind not in ("boot",)):
            st.backlog.append((kind, due))
            return
        self._send(st, kind, due)

    def _send(self, st: St, kind: str, due: float) -> None:
        built = self._build(st, kind)
        if built is None:
            self._next(st)
            return
        action, payload = built
        label = f"{action} {payload['eventType']}" if action == "TransactionEvent" else action
        self.next_id += 1
        mid = str(self.next_id)
        frame = orjson.dumps([2, mid, action, payload])
        client = st.client
        if client is None or not client.send(frame):
            self.counts["not_connected"] += 1
            return
        st.busy = True
        self.pending[mid] = (st, kind, label, due, time.perf_counter(), self.window_of(kind, due) or "")
        self.counts["sent"] += 1

    def _next(self, st: St) -> None:
        while st.backlog and not st.busy:
            kind, due = st.backlog.popleft()
            if kind != "boot" and not st.booted:
                st.backlog.appendleft((kind, due))
                return
            self._send(st, kind, due)

    # --- OCPP messages ---

    def _meter(self, st: St, ts: str, register: float) -> dict[str, Any]:
        power, soc = 7400 + st.idx % 400, 20 + (st.idx + st.seq) % 70
        if st.v16:
            return {
                "timestamp": ts,
                "sampledValue": [
                    {"value": f"{register:.1f}", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                    {"value": str(power), "measurand": "Power.Active.Import", "unit": "W"},
                    {"value": str(soc), "measurand": "SoC", "unit": "Percent"},
                ],
            }
        return {
            "timestamp": ts,
            "sampledValue": [
                {
                    "value": round(register, 1),
                    "measurand": "Energy.Active.Import.Register",
                    "unitOfMeasure": {"unit": "Wh"},
                },
                {"value": power, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
                {"value": soc, "measurand": "SoC", "unitOfMeasure": {"unit": "Percent"}},
            ],
        }

    def _tx_event(self, st: St, event: str, trigger: str, ts: str) -> dict[str, Any]:
        info: dict[str, Any] = {"transactionId": st.tx, "chargingState": "Charging"}
        body: dict[str, Any] = {
            "eventType": event,
            "timestamp": ts,
            "triggerReason": trigger,
            "seqNo": st.seq,
            "transactionInfo": info,
            "meterValue": [self._meter(st, ts, st.energy)],
        }
        if event == "Started":
            body["evse"] = {"id": 1, "connectorId": 1}
            body["idToken"] = {"idToken": tag_of(st.idx), "type": "ISO14443"}
        elif event == "Ended":
            info["chargingState"] = "EVConnected"
            info["stoppedReason"] = "Local"
        st.seq += 1
        return body

    def _build(self, st: St, kind: str) -> tuple[str, dict[str, Any]] | None:
        ts = self.iso()
        if kind == "boot":
            if st.v16:
                return "BootNotification", {
                    "chargePointVendor": "smartev-bench",
                    "chargePointModel": "AC-22",
                    "chargePointSerialNumber": st.sid,
                    "firmwareVersion": "1.0.0",
                }
            return "BootNotification", {
                "chargingStation": {
                    "vendorName": "smartev-bench",
                    "model": "AC-22",
                    "serialNumber": st.sid,
                    "firmwareVersion": "1.0.0",
                },
                "reason": "PowerUp",
            }
        if kind == "hb":
            return "Heartbeat", {}
        if kind == "status":
            return self._status(st, ts, st.tx is not None)
        if kind == "start":
            return self._start(st, ts) if st.tx is None else None
        if kind == "mv":
            return self._mv(st, ts) if st.tx is not None else None
        # a step of the rated charging cycle
        step = st.step
        if step == 0:
            return self._start(st, ts) if st.tx is None else self._mv(st, ts)
        if step == 1:
            return self._status(st, ts, True)
        if 2 <= step < 2 + MV_PER_CYCLE:
            return self._mv(st, ts) if st.tx is not None else self._start(st, ts)
        if step == 2 + MV_PER_CYCLE:
            return self._stop(st, ts) if st.tx is not None else ("Heartbeat", {})
        if step == 3 + MV_PER_CYCLE:
            return self._status(st, ts, False)
        return "Heartbeat", {}

    def _status(self, st: St, ts: str, charging: bool) -> tuple[str, dict[str, Any]]:
        if st.v16:
            status = "Charging" if charging else "Available"
            return "StatusNotification", {
                "connectorId": 1,
                "errorCode": "NoError",
                "status": status,
                "timestamp": ts,
            }
        return "StatusNotification", {
            "timestamp": ts,
            "connectorStatus": "Occupied" if charging else "Available",
            "evseId": 1,
            "connectorId": 1,
        }

    def _start(self, st: St, ts: str) -> tuple[str, dict[str, Any]]:
        st.energy += 10.0
        if st.v16:
            return "StartTransaction", {
                "connectorId": 1,
                "idTag": tag_of(st.idx),
                "meterStart": int(st.energy),
                "timestamp": ts,
            }
        st.n_tx += 1
        st.tx, st.seq = f"{st.sid}-{st.n_tx}-{secrets.token_hex(4)}", 0
        return "TransactionEvent", self._tx_event(st, "Started", "Authorized", ts)

    def _mv(self, st: St, ts: str) -> tuple[str, dict[str, Any]]:
        st.energy += 123.4
        if st.v16:
            return "MeterValues", {
                "connectorId": 1,
                "transactionId": int(st.tx or 0),
                "meterValue": [self._meter(st, ts, st.energy)],
            }
        return "TransactionEvent", self._tx_event(st, "Updated", "MeterValuePeriodic", ts)

    def _stop(self, st: St, ts: str) -> tuple[str, dict[str, Any]]:
        st.energy += 50.0
        if st.v16:
            return "StopTransaction", {
                "meterStop": int(st.energy),
                "timestamp": ts,
                "transactionId": int(st.tx or 0),
                "reason": "Local",
            }
        return "TransactionEvent", self._tx_event(st, "Ended", "StopAuthorized", ts)

    def on_message(self, st: St, payload: bytes) -> None:
        now = time.perf_counter()
        try:
            frame = orjson.loads(payload)
            kind_id, mid = frame[0], frame[1]
        except (orjson.JSONDecodeError, IndexError, TypeError, KeyError):
            self.counts["bad_frame"] += 1
            return
        if kind_id == 2:  # the central system asks something: this bench station supports nothing
            err = [4, mid, "NotImplemented", "bench station", {}]
            if st.client is not None:
                st.client.send(orjson.dumps(err))
            return
        entry = self.pending.pop(mid, None)
        if entry is None:
            self.counts["unexpected_result"] += 1
            return
        _, kind, action, due, sent, window = entry
        st.busy = False
        ok = kind_id == 3
        if window:
            lat = self.lat[window]
            lat.add((now - due) * 1000, (now - sent) * 1000)
            if window == "rate":
                self.by_action[action].add((now - due) * 1000, (now - sent) * 1000)
            if not ok:
                lat.errors += 1
                if window == "rate":
                    self.by_action[action].errors += 1
        if ok:
            self.counts["ok"] += 1
            self._advance(st, kind, action, frame[2])
        else:
            self.counts["callerror"] += 1
            if len(self.error_samples) < 8:
                self.error_samples.append(f"{action}: {payload[:300].decode(errors='replace')}")
            if action in ("StartTransaction", "TransactionEvent Started"):
                st.tx = None
            if kind == "boot":
                self._booted(st, ok=False)
            elif kind == "cycle":
                st.step = (st.step + 1) % (5 + MV_PER_CYCLE)
        self._next(st)

    def _advance(self, st: St, kind: str, action: str, result: dict[str, Any]) -> None:
        if action == "StartTransaction":
            status = (result.get("idTagInfo") or {}).get("status")
            st.tx = str(result["transactionId"]) if status == "Accepted" else None
            if st.tx is None:
                self.counts["start_refused"] += 1
        elif action == "TransactionEvent Started":
            if (result.get("idTokenInfo") or {}).get("status", "Accepted") != "Accepted":
                self.counts["start_refused"] += 1
                st.tx = None
        elif action in ("StopTransaction", "TransactionEvent Ended"):
            st.tx = None
        if kind == "boot":
            self._booted(st, ok=True)
        elif kind == "cycle":
            if st.step == 0 and st.tx is None:
                return  # a refused start is tried again at the next due call
            st.step = (st.step + 1) % (5 + MV_PER_CYCLE)

    def _booted(self, st: St, ok: bool) -> None:
        waiter = self.boot_waiters.pop(st.idx, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if not ok:
            return
        if not st.booted:
            st.booted = True
            self.booted += 1
        now = time.perf_counter()
        self.enqueue(st, "status", now)
        if st.bg_charging and st.tx is None and not st.rated:
            self.enqueue(st, "start", now)

    def on_lost(self, st: St, epoch: int) -> None:
        if epoch != st.epoch or st.client is None:
            return  # an old connection of this station, or one that never got through its handshake
        st.client = None
        self.connected -= 1
        self._forget(st)
        if self.reconnecting:
            self.counts["dropped_by_server"] += 1
            self._spawn(self._connect(st, delay=self.rnd.uniform(0.5, 1.5)))

    def _forget(self, st: St) -> None:
        if st.booted:
            st.booted = False
            self.booted -= 1
        if st.busy:
            st.busy = False
            self.counts["lost_in_flight"] += 1
            for mid in [m for m, e in self.pending.items() if e[0] is st]:
                del self.pending[mid]
        st.backlog.clear()
        waiter = self.boot_waiters.pop(st.idx, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, st: St, delay: float = 0.0, held: bool = False) -> None:
        """Connect and boot one station: at most `connect_concurrency` attempts in flight, back-off between."""
        if st.connecting:
            if held:
                self.sem.release()
            return
        st.connecting = True
        try:
            if delay:
                await asyncio.sleep(delay)
            while st.client is None:
                if not held:
                    await self.sem.acquire()
                held = False
                try:
                    if await self._attempt(st):
                        return
                finally:
                    self.sem.release()
                await asyncio.sleep(self.rnd.uniform(0.5, 1.5))
        finally:
            st.connecting = False

    async def _attempt(self, st: St) -> bool:
        """One connection attempt and its BootNotification; True when the station is up."""
        st.epoch += 1
        epoch = st.epoch
        src = self.spec.source_ips[st.idx % len(self.spec.source_ips)]
        client: Client | None = None
        try:
            _, client = await self.loop.create_connection(
                lambda: Client(self, st, epoch), self.spec.host, self.spec.port, local_addr=(src, 0)
            )
            await asyncio.wait_for(asyncio.shield(client.handshake), 30)
        except (OSError, HandshakeFailed, TimeoutError) as exc:
            if isinstance(exc, HandshakeFailed):
                reason = exc.reason
            elif isinstance(exc, TimeoutError):
                reason = "handshake timeout"
            else:
                reason = type(exc).__name__ + (f" errno {exc.errno}" if exc.errno else "")
            self.connect_failures[reason] += 1
            if client is not None:
                client.reset()
            return False
        st.client = client
        self.connected += 1
        waiter = self.loop.create_future()
        self.boot_waiters[st.idx] = waiter
        self.enqueue(st, "boot", time.perf_counter())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, 60)
        if not st.booted and st.client is not None:
            self.counts["boot_not_accepted"] += 1
        return st.client is not None  # a boot refused or unanswered is counted; the station stays connected

    # --- phases ---

    async def connect_all(self) -> None:
        for st in self.stations:
            await self.sem.acquire()  # at most connect_concurrency attempts (and tasks) at once
            self._spawn(self._connect(st, held=True))

    async def _background(self) -> None:
        """Heartbeats of every station, meter values of charging ones, spread evenly, open-loop."""
        stations = [st for st in self.stations if not st.rated]
        hb_order = stations[:]
        self.rnd.shuffle(hb_order)
        charging = [st for st in stations if st.bg_charging]
        self.rnd.shuffle(charging)
        schedules: list[list[Any]] = [
            ["hb", hb_order, len(hb_order) / self.spec.heartbeat_s, 0],
            ["mv", charging, len(charging) / self.spec.meter_s, 0],
        ]
        t0 = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            for sched in schedules:
                kind, order, rate, done = sched
                if not order:
                    continue
                due = int((now - t0) * rate)
                for k in range(done, due):
                    st = order[k % len(order)]
                    if st.booted and not st.rated:
                        self.enqueue(st, kind, t0 + k / rate)
                    else:
                        self.counts["bg_skipped"] += 1
                sched[3] = max(done, due)

    async def _rate(self, rated: list[St], rate: float, t0: float, until: float) -> None:
        issued = 0
        while True:
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            if now >= until:
                return
            due = int((now - t0) * rate)
            for k in range(issued, due):
                st = rated[k % len(rated)]
                if st.client is None:
                    self.counts["rated_not_connected"] += 1
                    continue
                self.enqueue(st, "cycle", t0 + k / rate)
            issued = max(issued, due)

    def storm(self) -> float:
        """Reset every connection at once, then reconnect every station; returns the reset instant."""
        self.reconnecting = False
        t = time.perf_counter()
        for st in self.stations:
            client = st.client
            st.client = None
            st.epoch += 1  # its connection_lost is an old connection's now
            if client is not None:
                client.reset()
                self.connected -= 1
            self._forget(st)
        self.reconnecting = True
        self._spawn(self.connect_all())
        return t

    def progress(self) -> dict[str, Any]:
        return {
            "booted": self.booted,
            "connected": self.connected,
            "sent": self.counts["sent"],
            "ok": self.counts["ok"],
            "callerror": self.counts["callerror"],
            "pending": len(self.pending),
            "failures": sum(self.connect_failures.values()),
            "rate_answered": len(self.lat["rate"].due) if "rate" in self.lat else 0,
            "tx_open": sum(1 for st in self.stations if st.tx is not None),
            "queued": sum(len(st.backlog) for st in self.stations),
            "rate_outstanding": sum(1 for e in self.pending.values() if e[5] == "rate")
            + sum(1 for st in self.rated for k, _ in st.backlog if k == "cycle"),
        }

    def results(self) -> dict[str, Any]:
        return {
            "lat": {k: (v.due.tobytes(), v.sent.tobytes(), v.errors) for k, v in self.lat.items()},
            "by_action": {
                k: (v.due.tobytes(), v.sent.tobytes(), v.errors) for k, v in self.by_action.items()
            },
            "counts": dict(self.counts),
            "connect_failures": dict(self.connect_failures),
            "errors": self.error_samples,
            "cpu_s": time.process_time(),
            "pending_in_windows": sum(1 for e in self.pending.values() if e[5]),
        }

    async def command(self, cmd: str, arg: Any) -> Any:
        if cmd == "connect":
            self._spawn(self.connect_all())
            return None
        if cmd == "background":
            self.windows["bg"] = (time.perf_counter(), float("inf"))
            if self.bg_task is None:
                self.bg_task = self.loop.create_task(self._background())
            return None
        if cmd == "window":  # close a window: ("bg", None)
            start, _ = self.windows.get(arg, (0.0, 0.0))
            self.windows[arg] = (start, time.perf_counter())
            return None
        if cmd == "reset_stats":
            self.lat.clear()
            self.by_action.clear()
            self.counts.clear()
            self.connect_failures.clear()
            self.error_samples.clear()
            return None
        if cmd == "rate":
            rated_idx: set[int] = set(arg["rated"])
            rated = [st for st in self.stations if st.idx in rated_idx]
            for st in rated:
                st.rated = True
            if self.bg_task is not None:  # the rated stations leave the background schedule
                self.bg_task.cancel()
                self.bg_task = self.loop.create_task(self._background())
            now = time.perf_counter()
            t0 = now + 0.05
            start = t0 + arg["warmup"]
            until = start + arg["seconds"]
            self.windows["rate"] = (start, until)
            self.windows["bg"] = (start, until)
            self.rated = rated
            if rated and arg["rate"] > 0:
                self.rate_task = self.loop.create_task(self._rate(rated, arg["rate"], t0, until))
            return until - now
        if cmd == "storm":
            self.storm()
            return None
        if cmd == "results":
            return self.results()
        if cmd == "stop":
            self.reconnecting = False
            for st in self.stations:
                if st.client is not None:
                    st.client.reset()
            self.done.set()
            return None
        raise ValueError(cmd)


async def _generator_async(spec: GenSpec, pipe: Connection) -> None:
    gen = Generator(spec, pipe)
    inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def readable() -> None:
        while pipe.poll():
            inbox.put_nowait(pipe.recv())

    gen.loop.add_reader(pipe.fileno(), readable)
    pipe.send(("ready", spec.index))

    async def reporter() -> None:
        while True:
            pipe.send(("progress", spec.index, gen.progress()))
            await asyncio.sleep(0.25)

    report = asyncio.create_task(reporter())
    while not gen.done.is_set():
        cmd, arg = await inbox.get()
        out = await gen.command(cmd, arg)
        pipe.send(("answer", spec.index, cmd, out))
    report.cancel()
    await asyncio.sleep(0.2)


def generator_main(spec: GenSpec, pipe: Connection) -> None:
    """Entry point of a generator process."""
    raise_nofile()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(_generator_async(spec, pipe))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            pipe.send(("failed", spec.index, f"{type(exc).__name__}: {exc}"))
        raise


# ---------------------------------------------------------------------------------------------------------
# the platform process
# ---------------------------------------------------------------------------------------------------------


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, by thread name (summed over threads of the same name)."""
    out: dict[str, float] = collections.defaultdict(float)
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out["main" if task.name == str(os.getpid()) else name] += (int(fields[11]) + int(fields[12])) / tick
    return out


class Probe:
    """In the platform process: event-loop lag, GC pauses, station flushes and charging commits, per window."""

    def __init__(self, platform: Any) -> None:
        self.platform = platform
        self.lags = array("d")
        self.gc: list[tuple[int, float]] = []
        self.flushes: list[tuple[float, int]] = []
        self.commits: list[tuple[float, int]] = []
        self.t_mark = time.perf_counter()
        self.cpu_mark = time.process_time()
        self.threads_mark = thread_cpu()
        self.committing = 0
        self.snapshot: Any = None
        gc_start = [0.0]

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                gc_start[0] = time.perf_counter()
            else:
                self.gc.append((info["generation"], (time.perf_counter() - gc_start[0]) * 1000))

        gc.callbacks.append(on_gc)
        stations, store = platform.stations, platform.charge_store
        flush, commit = stations.flush, store._commit

        async def timed_flush() -> int:
            t = time.perf_counter()
            n: int = await flush()
            if n:
                self.flushes.append((time.perf_counter() - t, n))
            return n

        async def timed_commit(batch: Any) -> Any:
            t = time.perf_counter()
            self.committing += 1
            try:
                out = await commit(batch)
            finally:
                self.committing -= 1
            self.commits.append((time.perf_counter() - t, len(batch)))
            return out

        stations.flush = timed_flush
        store._commit = timed_commit
        self.statements = 0

        def on_statement(*_: Any) -> None:
            self.statements += 1

        from sqlalchemy import event

        event.listen(platform.engine.sync_engine, "before_cursor_execute", on_statement)
        self.task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.lags.append((time.perf_counter() - t - 0.01) * 1000)

    def mark(self) -> None:
        self.lags = array("d")
        self.gc.clear()
        self.flushes.clear()
        self.commits.clear()
        self.statements = 0
        self.threads_mark = thread_cpu()
        self.t_mark = time.perf_counter()
        self.cpu_mark = time.process_time()

    def stats(self) -> dict[str, Any]:
        p = self.platform
        status = Path("/proc/self/status").read_text()
        mem = {
            k: int(line.split()[1])
            for line in status.splitlines()
            for k in ("VmRSS", "VmHWM")
            if line.startswith(k + ":")
        }
        lags = sorted(self.lags)
        commits = sorted(c[0] * 1000 for c in self.commits)
        span = max(1e-9, time.perf_counter() - self.t_mark)
        gcs = {}
        for gen in (0, 1, 2):
            d = [ms for g, ms in self.gc if g == gen]
            if d:
                gcs[gen] = (len(d), sum(d), max(d))
        return {
            "connected": len(p.central.links),
            "counters": dict(p.central.counters),
            "rss_kb": mem.get("VmRSS", 0),
            "hwm_kb": mem.get("VmHWM", 0),
            "fds": len(os.listdir("/proc/self/fd")),
            "tasks": len(asyncio.all_tasks()),
            "lag": (percentile(lags, 50), percentile(lags, 99), lags[-1] if lags else float("nan")),
            "gc": gcs,
            "flushes": (
                len(self.flushes),
                max((f[0] for f in self.flushes), default=0.0),
                sum(f[0] for f in self.flushes),
                sum(f[1] for f in self.flushes),
            ),
            "commits": (
                len(commits),
                sum(c[1] for c in self.commits) / max(1, len(commits)),
                percentile(commits, 50),
                percentile(commits, 99),
                commits[-1] if commits else float("nan"),
                sum(commits) / 1000 / span,
            ),
            "cpu": (time.process_time() - self.cpu_mark) / span,
            "statements": self.statements,
            "threads": {
                k: (v - self.threads_mark.get(k, 0.0)) / span
                for k, v in thread_cpu().items()
                if v - self.threads_mark.get(k, 0.0) > 0.01 * span
            },
            "span": span,
        }


async def _report_stuck_tasks(after_s: float) -> None:
    """If the platform has not stopped after `after_s`, log where its tasks wait (innermost coroutines)."""
    import logging

    await asyncio.sleep(after_s)
    where: collections.Counter[str] = collections.Counter()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        c: Any = t.get_coro()
        chain = []
        while c is not None:
            f = getattr(c, "cr_frame", None) or getattr(c, "ag_frame", None)
            if f is not None:
                chain.append(f"{f.f_code.co_name}:{f.f_lineno}")
            c = getattr(c, "cr_await", None) or getattr(c, "ag_await", None)
            if c is not None and not hasattr(c, "cr_frame"):
                break
        where[" > ".join(chain)] += 1
    lines = [f"{v} x {k}" for k, v in where.most_common(6)]
    logging.getLogger("bench").error(
        "the platform has not stopped after %.0f s; %d tasks wait:\n%s", after_s, len(tasks), "\n".join(lines)
    )


async def _server_async(values: dict[str, Any], pipe: Connection) -> None:
    from smartev.app import Platform
    from smartev.settings import Settings

    platform = Platform(Settings(**values))
    inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    async with platform.running():
        probe = Probe(platform)
        loop = asyncio.get_running_loop()

        def readable() -> None:
            while pipe.poll():
                inbox.put_nowait(pipe.recv())

        loop.add_reader(pipe.fileno(), readable)
        pipe.send(("ready", {"port": platform.central.port, **probe.stats()}))
        while True:
            cmd, _ = await inbox.get()
            if cmd == "stats":
                pipe.send(("stats", probe.stats()))
            elif cmd == "mark":
                probe.mark()
                pipe.send(("marked", None))
            elif cmd == "mem_snapshot":
                import tracemalloc

                if not tracemalloc.is_tracing():
                    tracemalloc.start(1)
                gc.collect()
                probe.snapshot = tracemalloc.take_snapshot()
                pipe.send(("mem_snapshot", None))
            elif cmd == "mem_top":
                import tracemalloc

                gc.collect()
                now = tracemalloc.take_snapshot()
                stats = now.compare_to(probe.snapshot, "filename")
                pipe.send(
                    (
                        "mem_top",
                        [(str(st.traceback[0].filename), st.size_diff, st.count_diff) for st in stats[:25]],
                    )
                )
            elif cmd == "stop":
                # Platform.running() cancels the charging writer before it closes the station connections:
                # a handler still waiting for its write would then wait forever and the stop would hang.
                # So let the writes of calls already received finish first.
                store = platform.charge_store
                for _ in range(300):
                    if store._queue.empty() and not probe.committing:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.3)
                break
        probe.task.cancel()
        asyncio.get_running_loop().create_task(_report_stuck_tasks(10))
    pipe.send(("stopped", None))


def server_main(values: dict[str, Any], pipe: Connection, log_path: str) -> None:
    """Entry point of the platform process."""
    import logging

    raise_nofile()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        filename=log_path, level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_server_async(values, pipe))


# ---------------------------------------------------------------------------------------------------------
# the parent: set-up, phases, figures
# ---------------------------------------------------------------------------------------------------------


async def prepare_database(url: str, n: int) -> float:
    """Migrate and insert n stations (one shared password hash) and the id tags; returns the seconds taken."""
    from sqlalchemy import insert

    from smartev.csms.models import IdTag, Station
    from smartev.csms.stations import PASSWORD_ITERATIONS
    from smartev.db import migrate
    from smartev.db.engine import create_engine
    from smartev.transport.credentials import hash_device_secret

    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        t = time.perf_counter()
        hashed = hash_device_secret(PASSWORD, PASSWORD_ITERATIONS)
        now = int(time.time() * 1000)
        async with engine.begin() as conn:
            for lo in range(0, n, 5000):
                rows = [
                    {"id": station_id(i), "password_hash": hashed, "created_ms": now, "online": False}
                    for i in range(lo, min(n, lo + 5000))
                ]
                await conn.execute(insert(Station), rows)
            tags = [
                {"tag": tag_of(i), "kind": "rfid", "blocked": False, "created_ms": now}
                for i in range(TAG_COUNT)
            ]
            await conn.execute(insert(IdTag), tags)
        return time.perf_counter() - t
    finally:
        await engine.dispose()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def read_status(pid: int) -> dict[str, int]:
    """VmRSS/VmHWM (kB) of a process, from /proc/<pid>/status."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1])
    except OSError:
        pass
    return out


def tcp_ext() -> dict[str, int]:
    """The kernel's ListenOverflows / ListenDrops / TCPReqQFullDrop / SyncookiesSent counters."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            d = dict(zip(head.split()[1:], map(int, values.split()[1:]), strict=False))
            keys = ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "SyncookiesSent")
            return {k: d.get(k, 0) for k in keys}
    return {}


class Cpu:
    """CPU seconds of named processes and of the whole machine, to give cores used over a window."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.start: dict[str, float] = {}
        self.t0 = 0.0

    def sample(self, pids: dict[str, list[int]]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, group in pids.items():
            total = 0.0
            for pid in group:
                with contextlib.suppress(self.psutil.Error):
                    t = self.psutil.Process(pid).cpu_times()
                    total += t.user + t.system
            out[name] = total
        s = self.psutil.cpu_times()
        busy = s.user + s.nice + s.system + getattr(s, "irq", 0.0) + getattr(s, "softirq", 0.0)
        out["others"] = busy - sum(out.values())
        return out

    def begin(self, pids: dict[str, list[int]]) -> None:
        self.start = self.sample(pids)
        self.t0 = time.monotonic()

    def end(self, pids: dict[str, list[int]]) -> dict[str, float]:
        now = self.sample(pids)
        dt = max(1e-9, time.monotonic() - self.t0)
        return {k: max(0.0, now[k] - self.start.get(k, 0.0)) / dt for k in now}


@dataclass
class Figures:
    """What the run measured, for the summary."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fail: bool = False

    def add(self, what: str, value: str, target: str = "") -> None:
        self.rows.append((what, value, target))


class Bench:
    """Runs the phases against a platform process and collects the figures."""

    def __init__(self, args: argparse.Namespace, console: Any) -> None:
        self.args = args
        self.console = console
        self.ctx = mp.get_context("spawn")
        self.tmp = Path(tempfile.mkdtemp(prefix="smartev-ocpp-bench-"))
        self.server: Any = None
        self.server_pipe: Connection | None = None
        self.gens: list[tuple[Any, Connection]] = []
        self.progress: dict[int, dict[str, Any]] = {}
        self.answers: dict[tuple[int, str], Any] = {}
        self.fig = Figures()
        self.cpu = Cpu()
        self.port = _free_port()
        self.values: dict[str, Any] = {}
        self.n = args.stations
        self.t0 = time.perf_counter()
        self.steps: list[str] = []

    def step(self, name: str) -> None:
        """Note how long the run has taken so far (the summary lists the steps)."""
        self.steps.append(f"{name} {time.perf_counter() - self.t0:.1f}")

    # --- processes ---

    def start_server(self) -> dict[str, Any]:
        parent, child = self.ctx.Pipe()
        self.server = self.ctx.Process(
            target=server_main, args=(self.values, child, str(self.tmp / "platform.log")), daemon=True
        )
        self.server.start()
        child.close()
        self.server_pipe = parent
        if not parent.poll(120):
            raise SystemExit("the platform did not start within 120 s; see " + str(self.tmp / "platform.log"))
        kind, info = parent.recv()
        assert kind == "ready", kind
        return dict(info)

    def server_call(self, cmd: str) -> Any:
        assert self.server_pipe is not None
        self.server_pipe.send((cmd, None))
        if not self.server_pipe.poll(60):
            raise SystemExit(f"the platform did not answer {cmd!r} within 60 s")
        return self.server_pipe.recv()[1]

    def start_generators(self, count: int) -> None:
        ips = [f"127.0.0.{2 + k}" for k in range(self.args.source_ips)]
        for g in range(count):
            spec = GenSpec(
                index=g,
                host="127.0.0.1",
                port=self.port,
                indices=list(range(g, self.n, count)),
                source_ips=ips,
                connect_concurrency=max(1, self.args.connect_concurrency // count),
                charging=self.args.charging,
                heartbeat_s=self.args.heartbeat_s,
                meter_s=self.args.meter_s,
                seed=self.args.seed + g,
            )
            parent, child = self.ctx.Pipe()
            proc = self.ctx.Process(target=generator_main, args=(spec, child), daemon=True)
            proc.start()
            child.close()
            self.gens.append((proc, parent))
        for g, _ in enumerate(self.gens):
            self.wait_answer(g, None, 60, kind="ready")

    def pump(self, timeout: float = 0.0) -> None:
        """Read what the generators sent."""
        deadline = time.monotonic() + timeout
        while True:
            got = False
            for _, pipe in self.gens:
                while pipe.poll():
                    msg = pipe.recv()
                    got = True
                    if msg[0] == "progress":
                        self.progress[msg[1]] = msg[2]
                    elif msg[0] == "answer":
                        self.answers[(msg[1], msg[2])] = msg[3]
                    elif msg[0] == "ready":
                        self.answers[(msg[1], "ready")] = True
                    elif msg[0] == "failed":
                        raise SystemExit(f"generator {msg[1]} failed: {msg[2]}")
            if got or time.monotonic() >= deadline:
                return
            time.sleep(0.01)

    def wait_answer(self, g: int, cmd: str | None, timeout: float, kind: str = "") -> Any:
        key = (g, kind or cmd or "")
        deadline = time.monotonic() + timeout
        while key not in self.answers:
            if time.monotonic() > deadline:
                raise SystemExit(f"generator {g} did not answer {key[1]!r} within {timeout:.0f} s")
            self.pump(0.05)
        return self.answers.pop(key)

    def gen_all(
        self, cmd: str, arg: Any = None, args: list[Any] | None = None, timeout: float = 120
    ) -> list[Any]:
        for g, (_, pipe) in enumerate(self.gens):
            pipe.send((cmd, args[g] if args is not None else arg))
        return [self.wait_answer(g, cmd, timeout) for g in range(len(self.gens))]

    def total(self, key: str) -> int:
        return sum(p.get(key, 0) for p in self.progress.values())

    def pids(self) -> dict[str, list[int]]:
        return {
            "platform": [self.server.pid] if self.server is not None else [],
            "generators": [p.pid for p, _ in self.gens],
        }

    def rss_kb(self) -> int:
        return read_status(self.server.pid).get("VmRSS", 0)

    # --- progress display ---

    def wait_booted(self, label: str, t0: float, timeout: float) -> float | None:
        """Show a progress bar until every station is booted; returns the seconds since t0, or None."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn(f"{label:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
        ) as bar:
            task = bar.add_task(label, total=self.n, info="")
            while True:
                self.pump(0.1)
                if len(self.progress) < len(self.gens):
                    continue  # progress from before the phase was cleared: wait for every generator's news
                booted = self.total("booted")
                info = f"failed attempts {self.total('failures'):,}"
                bar.update(task, completed=booted, info=info)
                if booted >= self.n:
                    return time.perf_counter() - t0
                if time.perf_counter() - t0 > timeout:
                    return None

    def wait_settled(self, label: str, t0: float, timeout: float) -> float | None:
        """Until no call is in flight or queued (every boot follow-up answered); seconds since t0, or None."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        want = round(self.n * self.args.charging)
        with Progress(
            TextColumn(f"{label:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
        ) as bar:
            task = bar.add_task(label, total=want, info="")
            while True:
                self.pump(0.2)
                bar.update(task, completed=self.total("tx_open"), info=f"in flight {self.total('pending'):,}")
                if self.total("pending") == 0 and self.total("queued") == 0:
                    return time.perf_counter() - t0
                if time.perf_counter() - t0 > timeout:
                    return None

    def run_for(self, label: str, seconds: float, extra: Any = None) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn(f"{label:<22}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
        ) as bar:
            task = bar.add_task(label, total=seconds, info="")
            t0 = time.perf_counter()
            last_ok, last_t = self.total("ok"), t0
            rate = 0.0
            while (elapsed := time.perf_counter() - t0) < seconds:
                self.pump(0.2)
                now = time.perf_counter()
                if now - last_t >= 1:
                    ok = self.total("ok")
                    rate, last_ok, last_t = (ok - last_ok) / (now - last_t), ok, now
                info = f"{rate:,.0f} answers/s, booted {self.total('booted'):,}, in flight {self.total('pending'):,}"
                if extra is not None:
                    info += extra()
                bar.update(task, completed=min(elapsed, seconds), info=info)
            bar.update(task, completed=seconds)

    # --- phases ---

    def collect(self) -> dict[str, Any]:
        """Latency arrays and counters of every generator, merged."""
        outs = self.gen_all("results")
        merged: dict[str, Any] = {"lat": {}, "by_action": {}, "counts": collections.Counter()}
        merged["connect_failures"] = collections.Counter()
        merged["errors"] = []
        merged["pending_in_windows"] = 0
        for out in outs:
            for section in ("lat", "by_action"):
                for k, (due, sent, errors) in out[section].items():
                    d, s = array("d"), array("d")
                    d.frombytes(due)
                    s.frombytes(sent)
                    cur = merged[section].setdefault(k, [array("d"), array("d"), 0])
                    cur[0].extend(d)
                    cur[1].extend(s)
                    cur[2] += errors
            merged["counts"].update(out["counts"])
            merged["connect_failures"].update(out["connect_failures"])
            merged["errors"].extend(out["errors"])
            merged["pending_in_windows"] += out["pending_in_windows"]
        return merged

    @staticmethod
    def lat_text(values: array[float]) -> str:
        d = sorted(values)
        if not d:
            return "-"
        return f"{percentile(d, 50):.1f} / {percentile(d, 95):.1f} / {percentile(d, 99):.1f} / {d[-1]:.0f} ms"

    def server_text(self, s: dict[str, Any]) -> str:
        lag = s["lag"]
        gc2 = s["gc"].get(2)
        commits = s["commits"]
        flushes = s["flushes"]
        out = (
            f"platform {s['cpu']:.2f} cores; loop lag p50/p99/max {lag[0]:.1f}/{lag[1]:.1f}/{lag[2]:.0f} ms; "
            f"station flushes {flushes[0]} (max {flushes[1]:.2f} s, {flushes[3]:,} rows); "
            f"charging commits {commits[0]:,} (avg {commits[1]:.1f} writes, p99 {commits[3]:.1f} ms, "
            f"max {commits[4]:.0f} ms, busy {commits[5]:.0%}); SQL statements {s['statements'] / s['span']:,.0f}/s"
        )
        if gc2:
            out += f"; full GCs {gc2[0]} (max {gc2[2]:.0f} ms)"
        threads = ", ".join(f"{k} {v:.2f}" for k, v in sorted(s["threads"].items(), key=lambda kv: -kv[1]))
        out += f"; platform threads (cores): {threads}"
        return out

    def phase_hold(self) -> None:
        a, fig, n = self.args, self.fig, self.n
        self.console.rule(f"[bold]1. {n:,} stations held")
        if a.trace_memory:
            self.server_call("mem_snapshot")
        rss0 = self.rss_kb()
        s0 = self.server_call("stats")
        net0 = tcp_ext()
        self.gen_all("reset_stats")
        self.cpu.begin(self.pids())
        t0 = time.perf_counter()
        self.gen_all("connect")
        took = self.wait_booted("connect + boot", t0, a.connect_timeout)
        cpu = self.cpu.end(self.pids())
        net1 = tcp_ext()
        booted = self.total("booted")
        # the boot follow-ups (status, and a transaction start at every charging station) are stored before
        # the steady state is measured
        settled = self.wait_settled("transactions opened", t0, a.settle_timeout)
        opened = self.total("tx_open")
        s1 = self.server_call("stats")
        rss1 = self.rss_kb()
        if a.trace_memory:
            top = self.server_call("mem_top")
            total = sum(size for _, size, _ in top)
            self.fig.notes.append(
                f"tracemalloc, growth while connecting, by file ({total / max(1, booted) / 1024:.1f} KB per station "
                "in the top 25 files): "
                + "; ".join(
                    f"{'/'.join(Path(f).parts[-2:])} {size / max(1, booted):,.0f} B ({count / max(1, booted):.1f} obj)"
                    for f, size, count in top[:14]
                )
            )
        fig.add(
            "stations connected and booted",
            f"{booted:,} of {n:,} (server: {s1['connected']:,} connections)",
            "≥ 20,000",
        )
        if took is None:
            fig.fail = True
            fig.add("connect + boot time", f"not all within {a.connect_timeout:.0f} s")
        else:
            fig.add(
                "connect + boot time",
                f"{took:.1f} s ({booted / took:,.0f} stations/s; ≤ {a.connect_concurrency:,} in flight)",
            )
        if settled is None:
            fig.add(
                "  transactions opened after connecting",
                f"{opened:,}: not all within {a.settle_timeout:.0f} s",
            )
        else:
            fig.add(
                "  transactions opened after connecting",
                f"{opened:,}, all stored {settled:.1f} s after the first connection",
            )
        fig.add(
            "  CPU while connecting",
            f"platform {cpu['platform']:.2f}, generators {cpu['generators']:.2f}, others {cpu['others']:.2f} cores",
        )
        overflow = {k: net1[k] - net0[k] for k in net1 if net1[k] - net0[k]}
        if overflow:
            fig.add("  kernel listen-queue counters", ", ".join(f"{k} +{v:,}" for k, v in overflow.items()))
        self.server_call("mark")
        self.gen_all("background")
        self.cpu.begin(self.pids())
        profiler = self.start_profiler(0, a.hold) if a.profile_phase == "hold" else None
        self.run_for("hold (heartbeats, MV)", a.hold)
        self.end_profiler(profiler)
        self.gen_all("window", "bg")
        cpu = self.cpu.end(self.pids())
        s2 = self.server_call("stats")
        rss2 = self.rss_kb()
        per = (rss1 - rss0) / max(1, booted)
        per2 = (rss2 - rss0) / max(1, booted)
        fig.add(
            "server VmRSS before / connected / after hold",
            f"{rss0 / 1024:,.0f} / {rss1 / 1024:,.0f} / {rss2 / 1024:,.0f} MB (HWM {s2['hwm_kb'] / 1024:,.0f} MB)",
        )
        fig.add(
            "memory per connected station",
            f"{per:.1f} KB (after hold {per2:.1f} KB; whole process / stations {rss2 / max(1, booted):.1f} KB)",
            "≤ 25 KB",
        )
        if per2 > 25:
            fig.fail = True
        r = self.collect()
        bg = r["lat"].get("bg")
        if bg:
            calls = len(bg[0])
            fig.add(
                f"hold: background calls over {a.hold:.0f} s",
                f"{calls:,} ({calls / a.hold:,.0f}/s), errors {bg[2]}, p50/p95/p99/max {self.lat_text(bg[0])}",
            )
        fig.add(
            "  during hold",
            self.server_text(s2) + f"; generators {cpu['generators']:.2f}, others {cpu['others']:.2f} cores",
        )
        fig.notes.append(
            f"hold: server tasks {s1['tasks']:,} for {s1['connected']:,} connections; fds {s1['fds']:,}; "
            f"before connecting: tasks {s0['tasks']:,}, fds {s0['fds']:,}"
        )
        if r["connect_failures"]:
            fig.notes.append(f"connect failures while connecting: {dict(r['connect_failures'])}")
        self.note_errors(r)

    def note_errors(self, r: dict[str, Any]) -> None:
        counts = {k: v for k, v in r["counts"].items() if k not in ("sent", "ok") and v}
        if counts:
            self.fig.notes.append(f"generator counters: {counts}")
        for e in r["errors"][:4]:
            self.fig.notes.append(f"error sample: {e}")

    def rated_split(self, m: int) -> list[dict[str, Any]]:
        g = len(self.gens)
        return [{"rated": [i for i in range(k, m, g)]} for k in range(g)]

    def run_rate(self, rate: float, seconds: float, warmup: float, show: bool = True) -> dict[str, Any]:
        m = min(self.args.rated, self.n)
        parts = self.rated_split(m)
        for part in parts:
            part.update(rate=rate * len(part["rated"]) / m, seconds=seconds, warmup=warmup)
        self.gen_all("reset_stats")
        self.server_call("mark")
        self.cpu.begin(self.pids())
        took = max(self.gen_all("rate", args=parts))
        end = time.perf_counter() + took
        profiler = (
            self.start_profiler(warmup, seconds) if show and self.args.profile_phase == "rate" else None
        )
        if show:
            self.run_for(f"rate {rate:,.0f}/s", max(0.0, end - time.perf_counter()))
        else:
            while time.perf_counter() < end:
                self.pump(0.2)
        cpu = self.cpu.end(self.pids())
        s = self.server_call("stats")
        self.end_profiler(profiler)
        for _ in range(200):  # the last calls' answers
            self.pump(0.05)
            if self.total("rate_outstanding") == 0:
                break
        r = self.collect()
        r["cpu"], r["server"], r["rate"], r["seconds"] = cpu, s, rate, seconds
        return r

    def start_profiler(self, warmup: float, seconds: float) -> Any:
        """py-spy record of the platform process for `seconds` after `warmup`, if asked for (--profile)."""
        import subprocess

        if not self.args.profile:
            return None
        spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        time.sleep(warmup)
        cmd = [spy, "record", "--pid", str(self.server.pid), "--duration", str(int(seconds)), "--rate", "100"]
        cmd += ["--format", self.args.profile_format, "--output", self.args.profile]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def end_profiler(self, profiler: Any) -> None:
        if profiler is None:
            return
        _, err = profiler.communicate(timeout=120)
        if profiler.returncode:
            self.fig.notes.append(f"py-spy failed: {err.decode(errors='replace')[-300:]}")
        else:
            self.fig.notes.append(
                f"py-spy profile of the platform ({self.args.profile_phase}): {self.args.profile}"
            )

    def phase_rate(self) -> None:
        a, fig = self.args, self.fig
        m = min(a.rated, self.n)
        self.console.rule(f"[bold]2. calls/s: {m:,} stations charging, open-loop at {a.rate:,.0f}/s")
        r = self.run_rate(a.rate, a.seconds, a.warmup)
        rl = r["lat"].get("rate", [array("d"), array("d"), 0])
        answered, errors = len(rl[0]), rl[2]
        achieved = answered / a.seconds
        p99 = percentile(sorted(rl[0]), 99)
        fig.add(
            f"calls/s ({m:,} stations, 1.6 + 2.0.1 mix)",
            f"{achieved:,.0f}/s answered of {a.rate:,.0f}/s offered over {a.seconds:.0f} s; "
            f"errors {errors}, unanswered {r['pending_in_windows']}",
            "≥ 1,000/s",
        )
        fig.add("  latency p50/p95/p99/max, from due", self.lat_text(rl[0]), "p99 ≤ 50 ms")
        fig.add("  latency p50/p95/p99/max, from send", self.lat_text(rl[1]))
        if achieved < 0.95 * a.rate or p99 > P99_TARGET_MS or errors:
            fig.fail = True
        for action, (due, _, errs) in sorted(r["by_action"].items()):
            d = sorted(due)
            fig.add(
                f"  {action}",
                f"{len(d):,} calls, p50 {percentile(d, 50):.1f} ms, p99 {percentile(d, 99):.1f} ms, "
                f"max {d[-1] if d else float('nan'):.0f} ms" + (f", {errs} errors" if errs else ""),
            )
        bg = r["lat"].get("bg")
        if bg:
            fig.add(
                "  background calls meanwhile",
                f"{len(bg[0]) / a.seconds:,.0f}/s, p99 {percentile(sorted(bg[0]), 99):.1f} ms, errors {bg[2]}",
            )
        cpu = r["cpu"]
        fig.add(
            "  during the rate window",
            self.server_text(r["server"])
            + f"; generators {cpu['generators']:.2f}, others {cpu['others']:.2f} cores",
        )
        self.note_errors(r)
        if a.find_max:
            self.find_max(achieved, p99)

    def find_max(self, base_achieved: float, base_p99: float) -> None:
        """Bisect for the highest offered rate whose p99 (from due) is within 50 ms with ≥ 95 % answered."""
        a, fig = self.args, self.fig
        self.console.rule("[bold]   highest rate with p99 ≤ 50 ms")
        tried = [f"{a.rate:,.0f}/s: p99 {base_p99:,.0f} ms, {base_achieved:,.0f}/s answered"]

        def good(rate: float) -> bool:
            for _ in range(600):  # the previous step's queued calls first
                self.pump(0.1)
                if self.total("rate_outstanding") == 0:
                    break
            r = self.run_rate(rate, a.max_seconds, 2.0, show=False)
            rl = r["lat"].get("rate", [array("d"), array("d"), 0])
            achieved = len(rl[0]) / a.max_seconds
            p99 = percentile(sorted(rl[0]), 99)
            ok = p99 <= P99_TARGET_MS and achieved >= 0.95 * rate and not rl[2]
            tried.append(f"{rate:,.0f}/s: p99 {p99:,.0f} ms, {achieved:,.0f}/s answered")
            self.console.print(
                f"   {rate:,.0f}/s offered: {achieved:,.0f}/s answered, p99 {p99:,.1f} ms, "
                f"platform {r['server']['cpu']:.2f} cores, others {r['cpu']['others']:.2f} -> "
                + ("ok" if ok else "over")
            )
            return ok

        ok0 = base_p99 <= P99_TARGET_MS and base_achieved >= 0.95 * a.rate
        lo, hi = (a.rate, 0.0) if ok0 else (0.0, a.rate)
        while not hi and lo < a.rate * 16:  # the offered rate was fine: double until it is not
            if good(lo * 2):
                lo *= 2
            else:
                hi = lo * 2
        for _ in range(a.max_steps):
            if not hi or hi - lo <= max(25.0, 0.1 * hi):
                break
            mid = round((lo + hi) / 2, -1) if lo else round(hi / 4, -1)
            if good(mid):
                lo = mid
            else:
                hi = mid
        found = f"≈ {lo:,.0f} calls/s" if lo else f"none down to {hi:,.0f} calls/s"
        fig.add(
            "highest rate with p99 ≤ 50 ms",
            found + (f" (over at {hi:,.0f}/s)" if lo and hi else "") + f"; {a.max_seconds:.0f} s steps",
        )
        if not lo or not ok0:
            fig.fail = True
        fig.notes.append("rate steps: " + "; ".join(tried))

    def phase_storm(self) -> None:
        a, fig = self.args, self.fig
        mode = a.storm_mode
        self.console.rule(f"[bold]3. reconnect storm ({mode}): {self.total('booted'):,} stations")
        if self.total("booted") < self.n:
            fig.add("reconnect storm", f"skipped: only {self.total('booted'):,} of {self.n:,} connected")
            return
        rss0 = self.rss_kb()
        net0 = tcp_ext()
        self.gen_all("reset_stats")
        if mode == "client":
            self.server_call("mark")
            self.cpu.begin(self.pids())
            t0 = time.perf_counter()
            profiler = self.start_profiler(0, 40) if a.profile_phase == "storm" else None
            self.gen_all("storm")
            self.progress.clear()  # what the generators said before they reset their connections
        else:
            self.cpu.begin(self.pids())
            t0 = time.perf_counter()
            os.kill(self.server.pid, signal.SIGKILL)
            self.server.join(10)
            if self.server_pipe is not None:
                self.server_pipe.close()
            info = self.start_server()
            fig.add("  new platform process listening after", f"{time.perf_counter() - t0:.1f} s")
            self.progress.clear()
            rss0 = info["rss_kb"]
        took = self.wait_booted("all reconnected", t0, a.storm_timeout)
        cpu = self.cpu.end(self.pids())
        if mode == "client":
            self.end_profiler(profiler)
        net1 = tcp_ext()
        s = self.server_call("stats")
        r = self.collect()
        if took is None:
            fig.fail = True
            fig.add(
                f"reconnect storm ({mode})",
                f"{self.total('booted'):,} of {self.n:,} back within {a.storm_timeout:.0f} s",
                "≤ 60 s",
            )
        else:
            fig.add(
                f"reconnect storm ({mode}): all {self.n:,} connected and booted",
                f"{took:.1f} s ({self.n / took:,.0f} stations/s)",
                "≤ 60 s",
            )
            if took > 60:
                fig.fail = True
        failures = dict(r["connect_failures"])
        fig.add(
            "  failed attempts (then 0.5-1.5 s back-off)",
            ", ".join(f"{k}: {v:,}" for k, v in failures.items()) or "none",
        )
        overflow = {k: net1[k] - net0[k] for k in net1 if net1[k] - net0[k]}
        if overflow:
            fig.add("  kernel listen-queue counters", ", ".join(f"{k} +{v:,}" for k, v in overflow.items()))
        fig.add(
            "  during the storm",
            self.server_text(s) + f"; generators {cpu['generators']:.2f}, others {cpu['others']:.2f} cores",
        )
        rss1 = self.rss_kb()
        fig.add(
            "  server VmRSS before / after",
            f"{rss0 / 1024:,.0f} / {rss1 / 1024:,.0f} MB; server connections {s['connected']:,}; "
            f"counters {s['counters']}",
        )
        self.note_errors(r)

    # --- the whole run ---

    def run(self) -> int:
        a, fig = self.args, self.fig
        soft, hard = raise_nofile()
        budget = hard - FD_RESERVE
        if self.n > budget:
            fig.notes.append(
                f"--stations {self.n:,} lowered to {budget:,}: the open-files hard limit is {hard:,} "
                f"(ulimit -Hn; this process cannot raise it: no CAP_SYS_RESOURCE) and the platform needs "
                f"~{FD_RESERVE} files besides one socket per station"
            )
            self.console.print(f"[yellow]{fig.notes[-1]}")
            self.n = budget
        gens = max(a.generators, math.ceil(self.n / (hard - FD_RESERVE)))
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        ports_per_ip = hi - lo + 1
        if a.source_ips * ports_per_ip < 2 * self.n:
            a.source_ips = math.ceil(2 * self.n / ports_per_ip)
        db = a.db
        pg_name = None
        try:
            if db == "postgresql":
                pg_name = f"smartev_bench_{secrets.token_hex(5)}"
                url = asyncio.run(self._create_pg(pg_name))
            else:
                url = f"sqlite+aiosqlite:///{self.tmp}/smartev.db"
            took = asyncio.run(prepare_database(url, self.n))
            fig.add(
                "stations registered",
                f"{self.n:,} + {TAG_COUNT:,} id tags in {took:.1f} s (bulk INSERT, one shared password hash)",
            )
            self.values = {
                "data_dir": str(self.tmp),
                "database_url": url,
                "secret_key": secrets.token_urlsafe(40),
                "mqtt_client_id": f"smartev-bench-{secrets.token_hex(4)}",
                "mqtt_clean_session": True,
                "mqtt_port": 0,
                "ocpp": {"port": self.port, "host": "127.0.0.1", "heartbeat_interval_s": int(a.heartbeat_s)},
            }
            t = time.perf_counter()
            info = self.start_server()
            self.console.print(
                f"platform pid {self.server.pid} on ws://127.0.0.1:{self.port}/ocpp, started in "
                f"{time.perf_counter() - t:.1f} s, VmRSS {info['rss_kb'] / 1024:.0f} MB, {info['fds']} fds; "
                f"{gens} generator process(es), source addresses 127.0.0.2-{1 + a.source_ips}"
            )
            self.start_generators(gens)
            self.step("started")
            phases = a.phases.split(",")
            if "hold" in phases:
                self.phase_hold()
            elif "rate" in phases or "storm" in phases:
                self.gen_all("connect")
                if self.wait_booted("connect + boot", time.perf_counter(), a.connect_timeout) is None:
                    raise SystemExit("not every station connected")
                self.gen_all("background")
            self.step("connected")
            if "rate" in phases:
                self.phase_rate()
                self.step("rate")
            if "storm" in phases:
                self.phase_storm()
                self.step("storm")
            self.summary(soft, hard, gens, ports_per_ip)
            return 1 if fig.fail and a.strict else 0
        finally:
            self.shutdown()
            self.step("stopped")
            self.console.print("run time (s, cumulative): " + ", ".join(self.steps))
            if pg_name:
                asyncio.run(self._drop_pg(pg_name))
            if not a.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)

    async def _create_pg(self, name: str) -> str:
        import asyncpg

        admin = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        base = PG_ADMIN.rsplit("/", 1)[0]
        return f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"

    async def _drop_pg(self, name: str) -> None:
        import asyncpg

        admin = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    def shutdown(self) -> None:
        for _, pipe in self.gens:
            with contextlib.suppress(OSError, BrokenPipeError):
                pipe.send(("stop", None))
        for proc, _ in self.gens:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        if self.server is not None and self.server.is_alive():
            with contextlib.suppress(OSError, BrokenPipeError):
                assert self.server_pipe is not None
                self.server_pipe.send(("stop", None))
            self.server.join(60)
            if self.server.is_alive():
                self.server.kill()
                self.server.join(5)
        log = self.tmp / "platform.log"
        if log.exists():
            lines = log.read_text(errors="replace").splitlines()
            errors = [ln for ln in lines if " ERROR " in ln or "Traceback" in ln]
            if lines:
                self.console.print(
                    f"platform log: {len(lines):,} lines, {len(errors):,} errors"
                    + (f"; first: {errors[0][:300]}" if errors else "")
                )

    def summary(self, soft: int, hard: int, gens: int, ports_per_ip: int) -> None:
        from rich.table import Table

        a = self.args
        table = Table(title="OCPP central system", title_justify="left", show_lines=False)
        table.add_column("figure")
        table.add_column("measured")
        table.add_column("target")
        for what, value, target in self.fig.rows:
            table.add_row(what, value, target)
        self.console.print(table)
        cores = os.cpu_count()
        self.console.print(
            f"machine: {cores} cores (os.cpu_count()), shared with other work; the platform, {gens} generator "
            f"process(es) and the database share them. Python {sys.version.split()[0]}, "
            f"database {a.db}. Open files: soft {soft:,}, hard {hard:,}; ephemeral ports "
            f"{ports_per_ip:,} per source address, {a.source_ips} source address(es)."
        )
        for note in self.fig.notes:
            self.console.print(f"- {note}")
        self.console.print(f"command: python {' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="500 stations, 10 s: a smoke check under a minute")
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--phases", default="hold,rate,storm", help="comma-separated: hold, rate, storm")
    p.add_argument("--stations", type=int, default=20_000, help="stations connected at once (default 20,000)")
    p.add_argument(
        "--rate", type=float, default=1000, help="calls/s offered by the rated stations (default 1,000)"
    )
    p.add_argument("--seconds", type=float, default=30, help="rate measurement window (default 30)")
    p.add_argument(
        "--warmup", type=float, default=3, help="seconds of rated load before measuring (default 3)"
    )
    p.add_argument(
        "--rated", type=int, default=1000, help="stations running transactions at --rate (default 1,000)"
    )
    p.add_argument(
        "--hold", type=float, default=60, help="seconds of background load in phase 1 (default 60)"
    )
    p.add_argument("--heartbeat-s", type=float, default=300, help="heartbeat interval (default 300)")
    p.add_argument(
        "--meter-s", type=float, default=60, help="meter values interval while charging (default 60)"
    )
    p.add_argument("--charging", type=float, default=0.5, help="share of stations charging (default 0.5)")
    p.add_argument(
        "--connect-concurrency", type=int, default=1000, help="handshakes+boots in flight (default 1,000)"
    )
    p.add_argument("--storm-mode", choices=["client", "restart"], default="client")
    p.add_argument("--storm-timeout", type=float, default=180)
    p.add_argument("--connect-timeout", type=float, default=300)
    p.add_argument(
        "--find-max", action="store_true", help="then step the rate to find the highest with p99 ≤ 50 ms"
    )
    p.add_argument(
        "--max-seconds", type=float, default=10, help="window of each --find-max step (default 10)"
    )
    p.add_argument("--max-steps", type=int, default=5, help="bisection steps of --find-max (default 5)")
    p.add_argument("--generators", type=int, default=1, help="load generator processes (default 1)")
    p.add_argument(
        "--source-ips", type=int, default=4, help="loopback source addresses 127.0.0.2.. (default 4)"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--profile", help="write a py-spy profile of the platform over --profile-phase to this file"
    )
    p.add_argument(
        "--trace-memory",
        action="store_true",
        help="tracemalloc in the platform: what the connections hold, by file",
    )
    p.add_argument("--profile-phase", default="rate", choices=["hold", "rate", "storm"])
    p.add_argument(
        "--settle-timeout",
        type=float,
        default=600,
        help="wait for the transactions opened at connect (default 600)",
    )
    p.add_argument("--profile-format", default="raw", choices=["speedscope", "flamegraph", "raw"])
    p.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (SQLite file, platform log)"
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args()
    if args.quick:
        args.stations = min(args.stations, 500)
        args.seconds, args.hold, args.warmup = 10, 5, 2
        args.rated = min(args.rated, 500)
        args.connect_concurrency = min(args.connect_concurrency, 200)
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=200)
    sys.exit(Bench(args, console).run())


if __name__ == "__main__":
    main()
