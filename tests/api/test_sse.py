"""Event streams: a reader that falls too far behind is told to start over rather than silently fed gaps."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from smartev.events import EventBus
from smartev.web.sse import BUFFER, event_stream, sse


@dataclass(frozen=True)
class Tick:
    n: int


async def _read(response: object, frames: int) -> list[bytes]:
    out = []
    async for chunk in response.body_iterator:  # type: ignore[attr-defined]
        out.append(chunk if isinstance(chunk, bytes) else chunk.encode())
        if len(out) == frames:
            break
    return out


async def test_events_arrive_in_order_and_a_slow_reader_is_cut_off() -> None:
    bus = EventBus()
    response = event_stream(bus, [Tick], lambda e: sse("tick", {"n": e.n}) if e.n >= 0 else None)
    for n in (-1, 1, 2):  # -1 is filtered out by the encoder
        bus.publish(Tick(n))
    assert await _read(response, 3) == [
        b"retry: 2000\n\n",
        b'event: tick\ndata: {"n":1}\n\n',
        b'event: tick\ndata: {"n":2}\n\n',
    ]

    for n in range(BUFFER + 5):  # nobody reads: the reader has fallen behind
        bus.publish(Tick(n))
    async with asyncio.timeout(5):
        rest = [chunk async for chunk in response.body_iterator]  # type: ignore[attr-defined]
    assert rest == [], "the stream ends (the client reconnects and rereads the state), nothing half-applied"
    assert bus._handlers[Tick] == [], "and it unsubscribed"
