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
_FELL_BEHIND = b": fell behind\n\n"


def sse(kind: str, data: Any) -> bytes:
    """One event in the text/event-stream format."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def event_stream(
    bus: EventBus, types: Iterable[type[Any]], encode: Callable[[Any], bytes | None]
) -> StreamingResponse:
    """Stream the bus's events of these types, each through `encode` (None drops it).

    Events carry only what changed, so a reader that falls `BUFFER` events behind cannot catch up by
    skipping some: its stream is ended instead, and the client reconnects and reads the whole state again.
    A comment line every 15 s keeps proxies from closing an idle stream.
    """
    queue: asyncio.Queue[bytes] = asyncio.Queue(BUFFER + 1)

    def put(event: Any) -> None:
        frame = encode(event)
        if frame is None:
            return
        if queue.qsize() >= BUFFER:
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(_FELL_BEHIND)
            return
        queue.put_nowait(frame)

    unsubscribe = [bus.subscribe(t, put) for t in types]

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            while True:
                try:
                    frame = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if frame is _FELL_BEHIND:
                    return  # the client reconnects (retry: 2000) and reads the state afresh
                yield frame
        finally:
            for u in unsubscribe:
                u()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
