"""A small MQTT 3.1.1 client for simulated cars: one connection per car, cheap enough for 10,000 in one process.

aiomqtt costs over 300 µs of Python per message per car (a task per received message, a `wait_for` and an Event
per PUBACK, a thread-safe wake-up per write, a housekeeping task per client), which capped one process at about
3,000 cars at 1 Hz (bench/fleet.py). A simulated car needs only CONNECT with a will and a persistent session,
SUBSCRIBE, QoS 1 both ways and keep-alive, so it gets exactly that, on an asyncio Protocol. Each car still logs
in as its own VIN, so the broker's per-car authentication and ACLs apply as to a real car. The in-car agent
(`smartev.agent`), which runs one connection, stays on aiomqtt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_REPLY_TIMEOUT_S = 10.0  # CONNACK, SUBACK and the PUBACK of the status message

# -- the MQTT wire ----------------------------------------------------------------------------------------------


class LinkDown(ConnectionError):
    """The broker refused the car, broke the protocol, went silent or closed the connection."""


_CONNACK, _PUBLISH, _PUBACK, _SUBACK, _PINGRESP = 2, 3, 4, 9, 13
_PINGREQ = b"\xc0\x00"
_DISCONNECT = b"\xe0\x00"


def _length(n: int) -> bytes:
    """MQTT's variable-length integer."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


def utf8(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return len(raw).to_bytes(2, "big") + raw


class CarLink(asyncio.Protocol):
    """One car's MQTT 3.1.1 connection: CONNECT with a will, SUBSCRIBE, and QoS 1 PUBLISH both ways.

    Received messages go to `on_message(topic, payload)` as they arrive, each acknowledged after it was handled;
    PUBACKs of our publishes go to `on_puback(packet_id)`. Keep-alive pings go out when the car has been quiet
    for half the keep-alive, and a broker silent for 1.5 keep-alives is taken as gone. No state outlives the
    connection: what must survive a reconnect is the car's to resend (the outbox, unconfirmed results).
    """

    def __init__(
        self,
        on_message: Callable[[str, bytes], None],
        on_puback: Callable[[int], None] | None = None,
        *,
        keepalive_s: int = 30,
    ) -> None:
        self._on_message = on_message
        self._on_puback = on_puback
        self._keepalive_s = keepalive_s
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiting: dict[int, asyncio.Future[Any]] = {}  # packet id → SUBACK codes or a confirmed PUBACK
        self._next_id = 0
        self._connack: asyncio.Future[int] = self._loop.create_future()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._writes = self._reads = 0
        self._quiet_ticks = 0
        self._keepalive: asyncio.TimerHandle | None = None

    async def connect(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        username: str,
        password: str,
        will: tuple[str, bytes],
        clean_session: bool = False,
    ) -> None:
        """Open the connection and log in; LinkDown when the broker refuses, OSError when unreachable."""
        try:
            async with asyncio.timeout(_REPLY_TIMEOUT_S):
                await self._loop.create_connection(lambda: self, host, port)
                flags = (
                    0x80 | 0x40 | 0x20 | 0x08 | 0x04 | (0x02 if clean_session else 0)
                )  # user, password, will
                variable = b"\x00\x04MQTT\x04" + bytes([flags]) + self._keepalive_s.to_bytes(2, "big")
                payload = utf8(client_id) + utf8(will[0]) + utf8(will[1]) + utf8(username) + utf8(password)
                self._write(b"\x10" + _length(len(variable) + len(payload)) + variable + payload)
                code = await asyncio.shield(self._connack)
            if code != 0:
                raise LinkDown(f"the broker refused the connection (CONNACK code {code})")
        except BaseException:
            if self._transport is not None:
                self._transport.abort()
            raise
        self._keepalive = self._loop.call_later(self._keepalive_s / 2, self._keep_alive)

    async def subscribe(self, topics: list[tuple[str, int]]) -> list[int]:
        """Subscribe and return the granted QoS per topic (0x80 for a refusal)."""
        packet_id = self._packet_id()
        body = packet_id.to_bytes(2, "big") + b"".join(utf8(t) + bytes([qos]) for t, qos in topics)
        codes: list[int] = await self._request(
            packet_id, b"\x82" + _length(len(body)) + body, _REPLY_TIMEOUT_S
        )
        return codes

    def publish(self, topic: bytes, payload: bytes, *, retain: bool = False) -> int:
        """Queue a QoS 1 PUBLISH of `topic` (as `_utf8` encodes it) and return its packet id."""
        packet_id = self._packet_id()
        head = topic + packet_id.to_bytes(2, "big")
        self._write((b"\x33" if retain else b"\x32") + _length(len(head) + len(payload)) + head + payload)
        return packet_id

    async def publish_confirmed(
        self, topic: str, payload: bytes, *, retain: bool = False, timeout_s: float = _REPLY_TIMEOUT_S
    ) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        packet_id = self._packet_id()
        head = utf8(topic) + packet_id.to_bytes(2, "big")
        packet = (b"\x33" if retain else b"\x32") + _length(len(head) + len(payload)) + head + payload
        await self._request(packet_id, packet, timeout_s)

    def close(self) -> None:
        """Say goodbye (the will is not published) and close the connection."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_DISCONNECT)
            self._transport.close()

    # -- asyncio.Protocol --------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._keepalive is not None:
            self._keepalive.cancel()
        down = LinkDown(f"connection lost: {exc}" if exc else "connection closed")
        futures: list[asyncio.Future[Any]] = [self._connack, self.closed, *self._waiting.values()]
        for future in futures:
            if not future.done():
                future.set_exception(down)
        self._waiting.clear()
        # Nobody may await these (a lost connection is also reported by `closed`): mark them retrieved.
        for future in (self._connack, self.closed):
            if not future.cancelled():
                future.exception()

    def data_received(self, data: bytes) -> None:
        self._reads += 1
        buffer = self._buffer
        buffer += data
        size = len(buffer)
        pos = 0
        while True:
            i = pos + 1  # after the packet type: the remaining length, 1 to 4 bytes of 7 bits
            length = shift = 0
            while i < size:
                digit = buffer[i]
                i += 1
                length |= (digit & 0x7F) << shift
                shift += 7
                if digit < 0x80:
                    break
            else:
                break  # the length is not all here yet
            end = i + length
            if end > size:
                break
            self._packet(buffer[pos], bytes(buffer[i:end]))
            pos = end
        del buffer[:pos]

    # -- internals ---------------------------------------------------------------------------------------------

    def _packet(self, header: int, body: bytes) -> None:
        kind = header >> 4
        if kind == _PUBLISH:
            qos = (header >> 1) & 3
            end = 2 + int.from_bytes(body[:2], "big")
            topic = body[2:end].decode()
            if qos:
                self._on_message(topic, body[end + 2 :])
                self._write(b"\x40\x02" + body[end : end + 2])
            else:
                self._on_message(topic, body[end:])
        elif kind == _PUBACK:
            packet_id = int.from_bytes(body[:2], "big")
            waiter = self._waiting.pop(packet_id, None)
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result(None)
            elif self._on_puback is not None:
                self._on_puback(packet_id)
        elif kind == _SUBACK:
            waiter = self._waiting.pop(int.from_bytes(body[:2], "big"), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(list(body[2:]))
        elif kind == _CONNACK:
            if not self._connack.done():
                self._connack.set_result(body[1] if len(body) > 1 else 0x80)
        elif kind != _PINGRESP:
            logger.warning("simulated car: unexpected MQTT packet type %d; closing", kind)
            if self._transport is not None:
                self._transport.abort()

    def _write(self, packet: bytes) -> None:
        # Dropped on a closing connection: `connection_lost` follows and fails whoever waits for an answer,
        # and the car resends what matters after it reconnects.
        transport = self._transport
        if transport is not None and not transport.is_closing():
            self._writes += 1
            transport.write(packet)

    def _packet_id(self) -> int:
        packet_id = self._next_id % 0xFFFF + 1
        while packet_id in self._waiting:
            packet_id = packet_id % 0xFFFF + 1
        self._next_id = packet_id
        return packet_id

    async def _request(self, packet_id: int, packet: bytes, timeout_s: float) -> Any:
        if self._transport is None:
            raise LinkDown("not connected")
        waiter: asyncio.Future[Any] = self._loop.create_future()
        self._waiting[packet_id] = waiter
        self._write(packet)
        try:
            async with asyncio.timeout(timeout_s):
                return await waiter
        except TimeoutError:
            raise LinkDown("the broker did not answer in time") from None
        finally:
            self._waiting.pop(packet_id, None)

    def _keep_alive(self) -> None:
        """Every half keep-alive: ping if we sent nothing, give up if the broker said nothing for 1.5."""
        transport = self._transport
        if transport is None:
            return
        self._quiet_ticks = 0 if self._reads else self._quiet_ticks + 1
        if self._quiet_ticks >= 3:
            logger.debug("simulated car: the broker went silent; closing")
            transport.abort()
            return
        if not self._writes:
            self._write(_PINGREQ)
        self._reads = self._writes = 0
        self._keepalive = self._loop.call_later(self._keepalive_s / 2, self._keep_alive)
