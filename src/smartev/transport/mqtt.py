"""The platform's MQTT adapter: subscribes to the cars' topics, hands payloads to the domain, sends replies.

It implements `vehicles.ports.VehicleLink`; the topic layout lives only here and in docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
import orjson
import paho.mqtt.client as paho

from smartev.errors import Unavailable

logger = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where a broker is and how to log in to it."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        """Parse mqtt://user:pass@host:port (mqtts:// for TLS)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"broker URL {url!r} must start with mqtt:// or mqtts://")
        tls = parts.scheme in ("mqtts", "ssl")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    def public_url(self) -> str:
        """The URL without credentials (what cars are told)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class MqttLink:
    """One persistent MQTT session of the platform, reconnecting with backoff."""

    def __init__(
        self, address: BrokerAddress, *, client_id: str, shared: bool = False, clean_session: bool = False
    ) -> None:
        self._address = address
        self._clean_session = clean_session
        self._client_id = client_id
        self._shared = shared
        self._client: aiomqtt.Client | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connected = asyncio.Event()
        self.last_error: str | None = None
        self.counters: Counter[str] = Counter()
        self.on_telemetry: Handler | None = None
        self.on_command_result: Handler | None = None
        self.on_status: Handler | None = None

    async def run(self) -> None:
        """Stay connected and dispatch incoming messages until cancelled."""
        backoff = 0.5
        failing = False
        prefix = "$share/smartev/" if self._shared else ""
        while True:
            try:
                async with aiomqtt.Client(
                    self._address.host,
                    self._address.port,
                    username=self._address.username,
                    password=self._address.password,
                    identifier=self._client_id,
                    clean_session=self._clean_session,
                    keepalive=30,
                    # unlimited: with a limit paho scans every outstanding message on each PUBACK (O(n²) when
                    # a batch of acks goes out); a QoS 1 session has at most 65,535 messages in flight anyway
                    max_inflight_messages=0,
                    tls_params=aiomqtt.TLSParameters() if self._address.tls else None,
                    timeout=10,
                ) as client:
                    await client.subscribe(
                        [
                            (prefix + "vehicles/+/telemetry", 1),
                            (prefix + "vehicles/+/command-results", 1),
                            ("vehicles/+/status", 1),
                        ]
                    )
                    self._client = client
                    self.connected.set()
                    self.last_error = None
                    if failing:
                        logger.warning("connected to the MQTT broker again")
                    failing = False
                    backoff = 0.5
                    # aiomqtt's iterator costs a task and an asyncio.wait per message: take the first message
                    # from it (it notices a disconnect), then drain what else arrived straight from its queue
                    inbox: asyncio.Queue[aiomqtt.Message] = client._queue
                    async for message in client.messages:
                        await self._dispatch(message.topic.value, message.payload)
                        while inbox.qsize():
                            message = inbox.get_nowait()
                            await self._dispatch(message.topic.value, message.payload)
            except aiomqtt.MqttError as exc:
                self._client = None
                self.connected.clear()
                self.last_error = f"{type(exc).__name__}: {exc}"
                if not failing:
                    logger.error(
                        "lost the MQTT broker at %s: %s; reconnecting", self._address.public_url(), exc
                    )
                failing = True
                await asyncio.sleep(backoff + random.random() * backoff)
                backoff = min(backoff * 2, 10.0)

    async def _dispatch(self, topic: str, payload: Any) -> None:
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != "vehicles":
            self.counters["unexpected_topic"] += 1
            return
        data = payload if isinstance(payload, bytes) else str(payload or "").encode()
        vin, kind = parts[1], "/".join(parts[2:])
        try:
            if kind == "telemetry" and self.on_telemetry:
                await self.on_telemetry(vin, data)
            elif kind == "command-results" and self.on_command_result:
                self._spawn(self.on_command_result(vin, data))
            elif kind == "status" and self.on_status:
                await self.on_status(vin, data)
            else:
                self.counters["unexpected_topic"] += 1
        except Exception:
            # one bad message must never stop the loop for everyone else
            self.counters["handler_errors"] += 1
            logger.exception("handling a message on %s failed", kind)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 10) -> None:  # noqa: ASYNC109
        """Publish with QoS 1; Unavailable when not connected or the broker does not confirm in time."""
        client = self._client
        if client is None:
            raise Unavailable("not connected to the MQTT broker")
        try:
            await client.publish(topic, payload, qos=1, retain=retain, timeout=timeout)
        except aiomqtt.MqttError as exc:
            raise Unavailable(f"MQTT publish failed: {exc}") from exc

    def publish_nowait(self, topic: str, payload: bytes) -> None:
        """Queue a QoS 1 publish without waiting for the broker; Unavailable when not connected.

        For replies a car gets again if they are lost (acks, error reports): awaiting each PUBACK through
        aiomqtt costs an event, a timeout and a scan of every pending call per message. paho still tracks the
        PUBACK and resends on reconnect.
        """
        client = self._client
        if client is None:
            raise Unavailable("not connected to the MQTT broker")
        info = client._client.publish(topic, payload, qos=1)  # aiomqtt's paho client (pinned aiomqtt 2.5)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise Unavailable(f"MQTT publish failed: {paho.error_string(info.rc)}")

    # -- vehicles.ports.VehicleLink --------------------------------------------------------------------------

    async def send_ack(self, vin: str, seq: int) -> None:
        self.publish_nowait(f"vehicles/{vin}/telemetry/ack", b'{"seq":%d}' % seq)

    async def send_errors(self, vin: str, seq: int | None, errors: list[dict[str, str]]) -> None:
        self.publish_nowait(f"vehicles/{vin}/errors", orjson.dumps({"seq": seq, "errors": errors}))

    async def send_command(self, vin: str, command: dict[str, Any]) -> None:
        await self.publish(f"vehicles/{vin}/commands", orjson.dumps(command), retain=False)

    def health(self) -> dict[str, Any]:
        """Broker connectivity and counters."""
        ok = self.connected.is_set()
        return {
            "ok": ok,
            "reason": None if ok else (self.last_error or "not connected to the MQTT broker yet"),
            "url": self._address.public_url(),
            "counters": dict(self.counters),
        }
