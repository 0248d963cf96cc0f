"""Real MQTT brokers (Mosquitto as a process, amqtt in-process) and a minimal platform for the sim tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import aiomqtt
import orjson
import pytest
from amqtt.broker import Broker  # type: ignore[import-untyped]

from smartev.sim.telemetry import rfc3339_ms


def mosquitto_binary() -> str:
    path = shutil.which("mosquitto", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("mosquitto is required in CI")
        pytest.skip("mosquitto is not installed")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_listening(port: int, within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


class BrokerUnderTest(Protocol):
    """A broker on a fixed port that can be stopped and started again (to test restarts)."""

    port: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class MosquittoBroker:
    """Mosquitto as a child process, anonymous, without persistence (a restart forgets every session)."""

    def __init__(self, directory: Path, binary: str) -> None:
        self.port = free_port()
        self._binary = binary
        self._conf = directory / "mosquitto.conf"
        self._conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"
        )
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(self._binary, "-c", str(self._conf))
        await wait_listening(self.port)

    async def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            await asyncio.wait_for(self._process.wait(), 10)
            self._process = None


class AmqttBroker:
    """amqtt in this process (the library the platform's embedded broker builds on), anonymous."""

    def __init__(self) -> None:
        self.port = free_port()
        self._broker: Any = None

    async def start(self) -> None:
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = Broker(config)
        await self._broker.start()

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None


class FakePlatform:
    """The platform's side of the car contract, as small as it gets: acks every seq, sends commands."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.acking = True
        self.telemetry: list[tuple[str, dict[str, Any]]] = []  # (vin, message) in arrival order
        self.payloads: dict[tuple[str, int], set[bytes]] = {}
        self.results: list[dict[str, Any]] = []
        self.status: dict[str, str] = {}
        self._client = aiomqtt.Client(
            "127.0.0.1", port, identifier=f"fake-platform-{secrets.token_hex(4)}", clean_session=True
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FakePlatform:
        await self._client.__aenter__()
        await self._client.subscribe(
            [("vehicles/+/telemetry", 1), ("vehicles/+/command-results", 1), ("vehicles/+/status", 1)]
        )
        self._task = asyncio.create_task(self._listen())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(None, None, None)

    async def _listen(self) -> None:
        async for message in self._client.messages:
            _, vin, kind = message.topic.value.split("/", 2)
            payload = message.payload
            assert isinstance(payload, bytes)
            if kind == "status":
                self.status[vin] = payload.decode()
                continue
            doc = orjson.loads(payload)
            if kind == "command-results":
                self.results.append(doc)
            elif kind == "telemetry":
                self.telemetry.append((vin, doc))
                self.payloads.setdefault((vin, doc["seq"]), set()).add(payload)
                if self.acking:
                    await self._client.publish(
                        f"vehicles/{vin}/telemetry/ack", orjson.dumps({"seq": doc["seq"]}), qos=1
                    )
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise asyncio.CancelledError  # 3.11's wait_for (inside publish) can swallow a cancel

    async def command(
        self,
        vin: str,
        command_id: str,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        ttl_s: float = 30.0,
    ) -> None:
        """Send a command the way the platform does."""
        expires_at = rfc3339_ms((datetime.now(UTC) + timedelta(seconds=ttl_s)).timestamp())
        body = {"id": command_id, "name": name, "args": args or {}, "expires_at": expires_at}
        await self._client.publish(f"vehicles/{vin}/commands", orjson.dumps(body), qos=1)

    def seqs(self, vin: str) -> set[int]:
        """Every seq received from this car."""
        return {doc["seq"] for v, doc in self.telemetry if v == vin}

    def latest(self, vin: str, path: str) -> Any:
        """The last value received for a signal (None if never)."""
        value = None
        for v, doc in self.telemetry:
            for sample in doc["samples"] if v == vin else ():
                value = sample["signals"].get(path, value)
        return value

    def results_for(self, command_id: str) -> list[dict[str, Any]]:
        """Every result received for a command id."""
        return [r for r in self.results if r["id"] == command_id]


# Generous by default: amqtt 0.12.1 sometimes stops handling a connection when another client subscribes at
# the same moment (it iterates its subscription table across awaits); the car recovers after its 10 s timeout.
async def eventually(check: Any, within_s: float = 30.0) -> Any:
    """Wait until `check()` is truthy and return its value; fail with the last value otherwise."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not met within {within_s} s, last value {value!r}")
        await asyncio.sleep(0.02)
