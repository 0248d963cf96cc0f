"""One station's OCPP-J connection: strict frame parsing in front of the `ocpp` library's routing.

The library routes a CALL to its `@on` handler and validates it against the official JSON schemas. In front
of it this module rejects what the library would let through or only log: text that is not JSON, duplicate
keys (which `json.loads` silently collapses), frames that are not `[type, id, ...]` arrays, unknown message
types. Each gets a CALLERROR with the error code the connection's OCPP version defines, and the connection
stays up; frames over the size limit are refused by the websocket layer, which closes the connection.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol

import ocpp.messages
from ocpp.charge_point import ChargePoint
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, CallResult, MessageType

from smartev.csms.runtime import Services

logger = logging.getLogger(__name__)

# Schema validation in a worker thread (the library's default) costs a thread hop per message and gains
# nothing: a validation takes tens of microseconds. Inline, 1,000 calls/s stay cheap on one core.
ocpp.messages.ASYNC_VALIDATION = False

# OCPP 1.6 spells two error codes differently from 2.0.1.
_CODES_16 = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}
_CODES_201 = {
    "FormationViolation": "FormatViolation",
    "OccurenceConstraintViolation": "OccurrenceConstraintViolation",
}


class Connection(Protocol):
    """What the library needs of a websocket."""

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str) -> None: ...


class FrameError(Exception):
    """A frame that is not a valid OCPP-J message; `code` is the 2.0.1 name."""

    def __init__(self, code: str, description: str, unique_id: str = "-1") -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.unique_id = unique_id


class DuplicateKey(ValueError):
    """A JSON object with the same key twice."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise DuplicateKey(f"the key {k!r} appears twice in one object")
            seen.add(k)
    return result


def parse_frame(raw: str | bytes) -> Call | CallResult | CallError:
    """One OCPP-J frame, or FrameError saying what is wrong with it."""
    try:
        frame = json.loads(raw, object_pairs_hook=_no_duplicates)
    except DuplicateKey as exc:
        raise FrameError("FormatViolation", str(exc), _peek_id(raw)) from None
    except (ValueError, UnicodeDecodeError):
        raise FrameError("RpcFrameworkError", "the message is not valid JSON") from None
    if not isinstance(frame, list) or not frame:
        raise FrameError("RpcFrameworkError", "an OCPP-J message is a JSON array [type, id, ...]")
    type_id = frame[0]
    unique_id = frame[1] if len(frame) > 1 and isinstance(frame[1], str) else "-1"
    if not isinstance(type_id, int) or type_id not in (2, 3, 4):
        raise FrameError("MessageTypeNotSupported", f"unknown message type id {type_id!r}", unique_id)
    if len(frame) < 2 or not isinstance(frame[1], str) or not 1 <= len(frame[1]) <= 36:
        raise FrameError("RpcFrameworkError", "the message id must be a string of 1 to 36 characters")
    if type_id == MessageType.Call:
        if len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[3], dict):
            raise FrameError("RpcFrameworkError", "a CALL is [2, id, action, {payload}]", unique_id)
        return Call(frame[1], frame[2], frame[3])
    if type_id == MessageType.CallResult:
        if len(frame) != 3 or not isinstance(frame[2], dict):
            raise FrameError("RpcFrameworkError", "a CALLRESULT is [3, id, {payload}]", unique_id)
        return CallResult(frame[1], frame[2])
    if len(frame) != 5 or not isinstance(frame[2], str) or not isinstance(frame[4], dict):
        raise FrameError(
            "RpcFrameworkError", "a CALLERROR is [4, id, code, description, {details}]", unique_id
        )
    return CallError(frame[1], frame[2], str(frame[3]), frame[4])


def _peek_id(raw: str | bytes) -> str:
    try:
        frame = json.loads(raw)
    except ValueError:
        return "-1"
    if isinstance(frame, list) and len(frame) > 1 and isinstance(frame[1], str):
        return frame[1]
    return "-1"


class StationLink(ChargePoint):  # type: ignore[misc]
    """Base of the 1.6 and 2.0.1 adapters: strict frames, version-correct error codes, bookkeeping."""

    version: ClassVar[str]  # "ocpp1.6" | "ocpp2.0.1"
    _ocpp_version: ClassVar[str]

    def __init__(self, station_id: str, connection: Connection, services: Services) -> None:
        super().__init__(station_id, connection, response_timeout=services.response_timeout_s, logger=logger)
        self.s = services
        self.frames_rejected = 0
        self.on_message: Callable[[], None] | None = None

    def error_code(self, code: str) -> str:
        """The spelling of `code` in this connection's OCPP version."""
        table = _CODES_16 if self._ocpp_version == "1.6" else _CODES_201
        code = table.get(code, code)
        if self._ocpp_version == "1.6" and code in ("RpcFrameworkError", "MessageTypeNotSupported"):
            return "ProtocolError" if code == "RpcFrameworkError" else "NotSupported"
        return code

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Parse strictly, then let the library route and validate."""
        if self.on_message is not None:
            self.on_message()
        try:
            msg = parse_frame(raw_msg)
        except FrameError as exc:
            self.frames_rejected += 1
            logger.info("station %s sent a bad frame: %s", self.id, exc.description)
            await self._send_error(exc.unique_id, exc.code, exc.description)
            return
        if isinstance(msg, Call):
            try:
                await self._handle_call(msg)
            except OCPPError as error:
                self.frames_rejected += 1
                cause = (error.details or {}).get("cause") if isinstance(error.details, dict) else None
                await self._send_error(msg.unique_id, error.code, str(cause or error.description))
            return
        # a result nobody waits for (late, or made up) is dropped instead of queued for the next call
        if self._call_lock.locked():
            self._response_queue.put_nowait(msg)

    async def _send_error(self, unique_id: str, code: str, description: str) -> None:
        await self._send(CallError(unique_id, self.error_code(code), description[:500], {}).to_json())

    async def ask(self, payload: Any) -> Any:
        """Send a CALL and return the station's validated answer (raises OCPPError on a CALLERROR)."""
        return await self.call(payload, suppress=False)


Handler = Callable[..., Awaitable[Any]]
