"""One station's OCPP-J connection: strict frame parsing in front of the `ocpp` library's routing.

The library routes a CALL to its `@on` handler and validates it against the official JSON schemas. In front
of it this module rejects what the library would let through or only log: text that is not JSON (NaN and
Infinity are not), duplicate keys (which `json.loads` silently collapses), nesting too deep to parse, strings
that cannot be encoded (lone surrogates), frames that are not `[type, id, ...]` arrays, unknown message
types. Each gets a CALLERROR with the error code the connection's OCPP version defines, and the connection
stays up; frames over the size limit are refused by the websocket layer, which closes the connection.

Schema violations are named by what failed (a wrong type, a missing field, an extra property, a value out
of range) rather than by the library's coarser mapping. An action that is not OCPP gets NotImplemented ("not
known by receiver"), an OCPP action the central system does not take gets NotSupported (the library has
the two the other way round); an answer of ours that fails its schema is our fault: InternalError. Results
to CALLs we are not waiting for are dropped.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol

import fastjsonschema
import ocpp.messages
from ocpp.charge_point import ChargePoint
from ocpp.exceptions import GenericError, OCPPError, UnknownCallErrorCodeError
from ocpp.messages import Call, CallError, CallResult, MessageType
from ocpp.v16.enums import Action as Action16
from ocpp.v201.enums import Action as Action201

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

# What a failed JSON-schema keyword is called in OCPP-J (2.0.1 names; `error_code` spells them for 1.6).
# A missing field breaks its cardinality (1..1): an occurrence constraint, as ocpp-rpc reports it too.
# A string over its maximum length breaks its data type (CiString50Type, ...), as the `ocpp` library says.
_SCHEMA_CODES = {
    "type": "TypeConstraintViolation",
    "maxLength": "TypeConstraintViolation",
    "required": "OccurrenceConstraintViolation",
    "minItems": "OccurrenceConstraintViolation",
    "maxItems": "OccurrenceConstraintViolation",
    "additionalProperties": "FormatViolation",
    "enum": "PropertyConstraintViolation",
    "minimum": "PropertyConstraintViolation",
    "maximum": "PropertyConstraintViolation",
    "exclusiveMinimum": "PropertyConstraintViolation",
    "exclusiveMaximum": "PropertyConstraintViolation",
    "minLength": "PropertyConstraintViolation",
    "pattern": "PropertyConstraintViolation",
    "format": "PropertyConstraintViolation",
    "multipleOf": "PropertyConstraintViolation",
}

_ACTIONS = {"1.6": {a.value for a in Action16}, "2.0.1": {a.value for a in Action201}}

# Validating every CALL with jsonschema took 38 % of the central system's CPU under load: the same official
# schemas compiled to Python by fastjsonschema check a call in a few microseconds. jsonschema still explains a
# refusal (which keyword failed, for the right OCPP error code); that path is rare.
_FAST: dict[tuple[str, str], Callable[[Any], Any] | None] = {}


def _fast_validator(version: str, action: str) -> Callable[[Any], Any] | None:
    key = (version, action)
    if key not in _FAST:
        try:
            schema = ocpp.messages.get_validator(MessageType.Call, action, version).schema
            _FAST[key] = fastjsonschema.compile(schema, use_formats=False)  # as the library: no format checks
        except Exception:  # no schema, or one fastjsonschema cannot compile: the library validates it
            logger.debug("no compiled schema for %s %s", version, action, exc_info=True)
            _FAST[key] = None
    return _FAST[key]


class Connection(Protocol):
    """What the library needs of a websocket."""

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


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


class _NotJSON(ValueError):
    """Text `json.loads` would take but JSON (RFC 8259) does not: NaN, Infinity, numbers beyond a float."""


def _constant(name: str) -> Any:
    raise _NotJSON(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJSON(f"the number {text[:20]} is out of range")
    return value


def _loads(raw: str) -> Any:
    return json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_constant, parse_float=_finite)


def parse_frame(raw: str | bytes) -> Call | CallResult | CallError:
    """One OCPP-J frame, or FrameError saying what is wrong with it."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        frame = _loads(text)
    except DuplicateKey as exc:
        raise FrameError("FormatViolation", str(exc), _peek_id(raw)) from None
    except _NotJSON as exc:
        raise FrameError(
            "RpcFrameworkError", f"the message is not valid JSON: {exc}", _peek_id(raw)
        ) from None
    except RecursionError:
        raise FrameError("RpcFrameworkError", "the message is nested too deeply") from None
    except UnicodeError:
        raise FrameError("RpcFrameworkError", "the message is not valid UTF-8 text") from None
    except ValueError:
        raise FrameError("RpcFrameworkError", "the message is not valid JSON") from None
    if "\\u" in text and not _encodable(frame):
        raise FrameError(
            "FormatViolation", "a string holds an unpaired surrogate escape (\\ud800-\\udfff)", _peek_id(raw)
        )
    if not isinstance(frame, list) or not frame:
        raise FrameError("RpcFrameworkError", "an OCPP-J message is a JSON array [type, id, ...]")
    type_id = frame[0]
    unique_id = (
        frame[1] if len(frame) > 1 and isinstance(frame[1], str) and 1 <= len(frame[1]) <= 36 else "-1"
    )
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


def _encodable(frame: Any) -> bool:
    """False when a string holds a lone surrogate (only a \\u escape makes one), which is not text: no
    database, log or peer can store it."""
    try:
        json.dumps(frame, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _peek_id(raw: str | bytes) -> str:
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):
        return "-1"
    if isinstance(frame, list) and len(frame) > 1 and isinstance(frame[1], str) and 1 <= len(frame[1]) <= 36:
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
        self._awaited: set[str] = set()  # ids of our CALLs still waiting for their result
        for action, handlers in self.route_map.items():
            # route_message validates these calls itself, with the compiled schema
            if _fast_validator(self._ocpp_version, action) is not None:
                handlers["_skip_schema_validation"] = True

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
            if msg.action not in self.route_map:
                self.frames_rejected += 1
                if msg.action in _ACTIONS[self._ocpp_version]:
                    code, text = "NotSupported", f"the central system does not take {msg.action}"
                else:
                    code, text = (
                        "NotImplemented",
                        f"{msg.action[:50]} is not an OCPP {self._ocpp_version} action",
                    )
                await self._send_error(msg.unique_id, code, text)
                return
            try:
                check = _fast_validator(self._ocpp_version, msg.action)
                if check is not None:
                    try:
                        check(msg.payload)
                    except fastjsonschema.JsonSchemaException:
                        raise GenericError(description="the payload fails its schema") from None
                await self._handle_call(msg)
            except OCPPError as error:
                self.frames_rejected += 1
                await self._send_error(msg.unique_id, *self._refusal(msg, error))
            except RecursionError:  # a payload nested just shallow enough to parse, too deep to walk
                self.frames_rejected += 1
                await self._send_error(msg.unique_id, "FormatViolation", "the payload is nested too deeply")
            return
        # a result nobody waits for (late, or made up) is dropped instead of queued for the next call
        if msg.unique_id in self._awaited:
            self._response_queue.put_nowait(msg)
        else:
            logger.info("station %s answered a call we are not waiting for (id %r)", self.id, msg.unique_id)

    def _refusal(self, call: Call, error: OCPPError) -> tuple[str, str]:
        """The error code and text for a CALL the library refused while validating."""
        try:
            validator = ocpp.messages.get_validator(MessageType.Call, call.action, self._ocpp_version)
        except (OSError, ValueError):  # no schema for the action
            return error.code, str((error.details or {}).get("cause") or error.description)
        for problem in validator.iter_errors(call.payload):
            where = "/".join(str(p) for p in problem.absolute_path)
            return _SCHEMA_CODES.get(problem.validator, "FormatViolation"), (
                f"{where}: {problem.message}" if where else problem.message
            )
        # the request is valid, so it was our answer that failed its schema
        logger.error("station %s: our answer to %s fails its schema: %s", self.id, call.action, error)
        return "InternalError", f"the central system could not form a valid {call.action} answer"

    def accept_boot(self, vendor: str, model: str, serial: str | None, firmware: str | None) -> Any:
        """Record what a booting station says it is; the version's Accepted answer with our interval."""
        self.s.stations.booted(self.id, vendor, model, serial, firmware, self.s.clock.now_ms())
        return self._call_result.BootNotification(
            current_time=self.s.now_text(), interval=self.s.heartbeat_interval_s, status="Accepted"
        )

    def answer_heartbeat(self) -> Any:
        """A sign of life; the version's answer with our time."""
        self.s.stations.heartbeat(self.id, self.s.clock.now_ms())
        return self._call_result.Heartbeat(current_time=self.s.now_text())

    async def _send_error(self, unique_id: str, code: str, description: str) -> None:
        await self._send(CallError(unique_id, self.error_code(code), description[:255], {}).to_json())

    async def call(
        self,
        payload: Any,
        suppress: bool = True,
        unique_id: str | None = None,
        skip_schema_validation: bool = False,
    ) -> Any:
        """The library's call, remembering its id so that only its own result is taken as the answer."""
        unique_id = unique_id or str(uuid.uuid4())
        self._awaited.add(unique_id)
        try:
            return await super().call(payload, suppress, unique_id, skip_schema_validation)
        finally:
            self._awaited.discard(unique_id)

    async def ask(self, payload: Any) -> Any:
        """Send a CALL and return the station's validated answer (raises OCPPError on a CALLERROR)."""
        try:
            return await self.call(payload, suppress=False)
        except UnknownCallErrorCodeError as exc:
            # e.g. 2.0.1's RpcFrameworkError, which the library has no exception for
            raise GenericError(description=str(exc)) from None

    async def disconnect(self, reason: str) -> None:
        """Close the connection (normal closure)."""
        await self._connection.close(1000, reason)


Handler = Callable[..., Awaitable[Any]]
