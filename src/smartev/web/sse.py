"""Server-sent event streams of domain events, shared by every live endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import orjson
from fastapi.responses import StreamingResponse

from smartev.events import EventBus

KEEPALIVE_S = 15.0
BUFFER = 1000


def sse(kind: str, data: Any) -> bytes:
    """One event in the text/event-stream format."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def event_stream(
    bus: EventBus, types: Iterable[type[Any]], encode: Callable[[Any], bytes | None]
) -> StreamingResponse:
    """Stream the bus's events of these types, each through `encode` (None drops it).

    A slow reader loses the oldest events rather than holding memory (live pages want the newest state); a
    comment line every 15 s keeps proxies from closing an idle stream.
    """
    queue: asyncio.Queue[bytes] = asyncio.Queue(BUFFER)

    def put(event: Any) -> None:
        frame = encode(event)
        if frame is None:
            return
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(frame)

    unsubscribe = [bus.subscribe(t, put) for t in types]

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            while True:
                try:
                    yield await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
        finally:
            for u in unsubscribe:
                u()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
