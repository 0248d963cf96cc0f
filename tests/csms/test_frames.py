"""Malformed OCPP-J frames on a live connection, in both versions: each gets a CALLERROR with the code its
version spells (or, for a frame over the size limit, a closed connection), and nothing else is harmed: the
same connection still answers, and another station connects and charges as usual."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.messages import Call, CallError, CallResult
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from smartev.csms.link import FrameError, parse_frame

from .helpers import basic, connected, register, ts
from conftest import Harness, eventually, running_platform

PASSWORD = "frames-station-password-1"
PROTOCOLS = ["ocpp1.6", "ocpp2.0.1"]


async def _setup(h: Harness, *station_ids: str) -> str:
    """An operator, the id tag CARD-W, and the stations; returns the operator's token."""
    op = await h.user("op@example.com", "operator")
    r = await h.http.post("/api/v1/id-tags", json={"tag": "CARD-W"}, headers=h.auth(op))
    assert r.status_code == 201, r.text
    for station_id in station_ids:
        await register(h, op, station_id, password=PASSWORD)
    return op


async def _open(h: Harness, station_id: str, protocol: str) -> ClientConnection:
    return await websockets.connect(
        f"ws://127.0.0.1:{h.platform.central.port}/ocpp/{station_id}",
        additional_headers=basic(station_id, PASSWORD),
        subprotocols=[protocol],  # type: ignore[list-item]
        max_size=None,
        open_timeout=5,
    )


async def _answer(ws: ClientConnection) -> list[Any]:
    frame: list[Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return frame


async def _still_answers(ws: ClientConnection) -> None:
    await ws.send(json.dumps([2, "hb-after", "Heartbeat", {}]))
    answer = await _answer(ws)
    assert answer[:2] == [3, "hb-after"] and "currentTime" in answer[2], answer


async def _another_station_charges(h: Harness, op: str, station_id: str, protocol: str) -> None:
    """A fresh station connects, boots and runs a whole transaction, which is stored."""
    start = datetime.now(UTC)
    async with connected(h, station_id, PASSWORD, protocol) as cp:
        if protocol == "ocpp1.6":
            boot = await cp.call(c16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            assert boot.status == "Accepted"
            started = await cp.call(
                c16.StartTransaction(connector_id=1, id_tag="CARD-W", meter_start=100, timestamp=ts(start))
            )
            assert started.id_tag_info["status"] == "Accepted"
            await cp.call(
                c16.StopTransaction(
                    meter_stop=2_100, timestamp=ts(start, 5), transaction_id=started.transaction_id
                )
            )
        else:
            boot = await cp.call(
                c201.BootNotification(charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp")
            )
            assert boot.status == "Accepted"
            tx = str(uuid.uuid4())
            for seq, (kind, minutes, wh) in enumerate((("Started", 0, 100), ("Ended", 5, 2_100))):
                await cp.call(
                    c201.TransactionEvent(
                        event_type=kind,
                        timestamp=ts(start, minutes),
                        trigger_reason="Authorized" if kind == "Started" else "StopAuthorized",
                        seq_no=seq,
                        transaction_info={"transaction_id": tx},
                        evse={"id": 1, "connector_id": 1},
                        meter_value=[{"timestamp": ts(start, minutes), "sampled_value": [{"value": wh}]}],
                    )
                )
    r = await h.http.get("/api/v1/charging-sessions", params={"station": station_id}, headers=h.auth(op))
    (session,) = r.json()
    assert session["status"] == "ended" and session["energy_wh"] == 2_000


def _both(frame: str) -> dict[str, str]:
    return {"ocpp1.6": frame, "ocpp2.0.1": frame}


BAD_JSON = ("ProtocolError", "RpcFrameworkError")  # 1.6 has no RpcFrameworkError
TOKEN = '"idToken":{"idToken":"CARD-W","type":"ISO14443"}'

# name: (frame per version, error code per version (1.6, 2.0.1), the message id the error answers)
BAD_FRAMES: dict[str, tuple[dict[str, str], tuple[str, str], str]] = {
    "not JSON": (_both("this is not json"), BAD_JSON, "-1"),
    "truncated JSON": (_both('[2,"f1","Heartbeat",{'), BAD_JSON, "-1"),
    "a JSON object, not an array": (_both('{"messageTypeId":2,"messageId":"f1"}'), BAD_JSON, "-1"),
    "an empty array": (_both("[]"), BAD_JSON, "-1"),
    "NaN, which is not JSON": (_both('[2,"f1","Heartbeat",{"x":NaN}]'), BAD_JSON, "f1"),
    "a number beyond a float": (_both('[2,"f1","Heartbeat",{"x":1e999}]'), BAD_JSON, "f1"),
    "nesting 100,000 deep": (_both("[" * 100_000 + "]" * 100_000), BAD_JSON, "-1"),
    "an unknown message type": (
        _both('[5,"f1","Heartbeat",{}]'),
        ("NotSupported", "MessageTypeNotSupported"),
        "f1",
    ),
    "a message id that is a number": (_both('[2,17,"Heartbeat",{}]'), BAD_JSON, "-1"),
    "a message id over 36 characters": (_both(f'[2,"{"x" * 37}","Heartbeat",{{}}]'), BAD_JSON, "-1"),
    "a CALL without payload": (_both('[2,"f1","Heartbeat"]'), BAD_JSON, "f1"),
    "a CALL whose payload is a list": (_both('[2,"f1","Heartbeat",[]]'), BAD_JSON, "f1"),
    "an action that is not OCPP": (
        _both('[2,"f1","FlyToTheMoon",{}]'),
        ("NotImplemented", "NotImplemented"),
        "f1",
    ),
    "an action only the central system sends": (
        {
            "ocpp1.6": '[2,"f1","RemoteStartTransaction",{"idTag":"CARD-W"}]',
            "ocpp2.0.1": '[2,"f1","RequestStartTransaction",{"remoteStartId":1,' + TOKEN + "}]",
        },
        ("NotSupported", "NotSupported"),
        "f1",
    ),
    "an extra property": (
        {
            "ocpp1.6": '[2,"f1","Authorize",{"idTag":"CARD-W","colour":"red"}]',
            "ocpp2.0.1": '[2,"f1","Authorize",{' + TOKEN + ',"colour":"red"}]',
        },
        ("FormationViolation", "FormatViolation"),
        "f1",
    ),
    "a duplicate key": (
        {
            "ocpp1.6": '[2,"f1","Authorize",{"idTag":"CARD-W","idTag":"CARD-X"}]',
            "ocpp2.0.1": '[2,"f1","Authorize",{"idToken":{"idToken":"CARD-W","type":"ISO14443","type":"Central"}}]',
        },
        ("FormationViolation", "FormatViolation"),
        "f1",
    ),
    "a wrong type": (
        {
            "ocpp1.6": '[2,"f1","Authorize",{"idTag":5}]',
            "ocpp2.0.1": '[2,"f1","Authorize",{"idToken":{"idToken":5,"type":"ISO14443"}}]',
        },
        ("TypeConstraintViolation", "TypeConstraintViolation"),
        "f1",
    ),
    "a string over its maximum length": (
        {
            "ocpp1.6": '[2,"f1","Authorize",{"idTag":"' + "x" * 21 + '"}]',
            "ocpp2.0.1": '[2,"f1","Authorize",{"idToken":{"idToken":"' + "x" * 37 + '","type":"ISO14443"}}]',
        },
        ("TypeConstraintViolation", "TypeConstraintViolation"),
        "f1",
    ),
    "a missing required field": (
        {
            "ocpp1.6": '[2,"f1","Authorize",{}]',
            "ocpp2.0.1": '[2,"f1","Authorize",{"idToken":{"idToken":"CARD-W"}}]',
        },
        ("OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
        "f1",
    ),
    "a value outside its enumeration": (
        {
            "ocpp1.6": '[2,"f1","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Flying"}]',
            "ocpp2.0.1": '[2,"f1","StatusNotification",{"timestamp":"2026-01-01T00:00:00Z",'
            '"connectorStatus":"Flying","evseId":1,"connectorId":1}]',
        },
        ("PropertyConstraintViolation", "PropertyConstraintViolation"),
        "f1",
    ),
    "a lone surrogate in a string": (
        {
            "ocpp1.6": '[2,"f1","Authorize",{"idTag":"\\ud800"}]',
            "ocpp2.0.1": '[2,"f1","Authorize",{"idToken":{"idToken":"\\udfff","type":"ISO14443"}}]',
        },
        ("FormationViolation", "FormatViolation"),
        "f1",
    ),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Harness, str]]:
    """One platform for the whole bad-frame matrix: each case must leave it serving the next one."""
    async with running_platform(tmp_path_factory.mktemp("frames"), "sqlite", "embedded") as h:
        yield h, await _setup(h)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", BAD_FRAMES, ids=list(BAD_FRAMES))
async def test_a_bad_frame_gets_its_callerror_and_harms_nothing(
    shared: tuple[Harness, str], case: str, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    h, op = shared
    bad, good = f"CP-BAD-{uuid.uuid4().hex[:8]}", f"CP-GOOD-{uuid.uuid4().hex[:8]}"
    for station_id in (bad, good):
        await register(h, op, station_id, password=PASSWORD)
    frames, codes, answered_id = BAD_FRAMES[case]
    ws = await _open(h, bad, protocol)
    try:
        await ws.send(frames[protocol])
        answer = await _answer(ws)
        code = codes[PROTOCOLS.index(protocol)]
        assert answer[:3] == [4, answered_id, code], answer
        assert isinstance(answer[3], str) and 0 < len(answer[3]) <= 255 and answer[4] == {}
        await _still_answers(ws)
    finally:
        await ws.close()
    await _another_station_charges(h, op, good, protocol)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_frame_over_the_size_limit_closes_the_connection_and_harms_nothing(
    quick: Harness, protocol: str
) -> None:
    op = await _setup(quick, "CP-BAD", "CP-GOOD")
    ws = await _open(quick, "CP-BAD", protocol)
    payload = json.dumps([2, "big", "DataTransfer", {"vendorId": "x", "data": "x" * 10_000_000}])
    with pytest.raises(ConnectionClosed):
        await ws.send(payload)
        await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1009  # message too big
    await eventually(lambda: not quick.platform.central.online("CP-BAD"), timeout=5)
    await _another_station_charges(quick, op, "CP-GOOD", protocol)
    # the station itself may come back
    ws = await _open(quick, "CP-BAD", protocol)
    try:
        await _still_answers(ws)
    finally:
        await ws.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_results_to_calls_we_did_not_make_are_dropped(quick: Harness, protocol: str) -> None:
    await _setup(quick, "CP-BAD")
    ws = await _open(quick, "CP-BAD", protocol)
    try:
        await ws.send('[3,"made-up",{"status":"Accepted"}]')
        await ws.send('[4,"made-up-too","GenericError","",{}]')
        await ws.send('[4,"made-up-3","NoSuchCode","",{}]')
        await _still_answers(ws)  # the next frame we get answers our Heartbeat: nothing answered the results
    finally:
        await ws.close()


@pytest.mark.parametrize(
    ("protocol", "reply"),
    [
        ("ocpp2.0.1", [4, None, "RpcFrameworkError", "could not parse it", {}]),
        ("ocpp1.6", [4, None, "NoSuchErrorCode", "vendor firmware says no", {}]),
        ("ocpp1.6", [3, None, {"status": "Sideways"}]),
    ],
    ids=["2.0.1 RpcFrameworkError", "unknown error code", "answer outside its schema"],
)
async def test_a_station_answering_our_call_strangely_gets_the_api_a_409_not_a_500(
    quick: Harness, protocol: str, reply: list[Any]
) -> None:
    op = await _setup(quick, "CP-ODD")
    ws = await _open(quick, "CP-ODD", protocol)
    try:
        reset = asyncio.create_task(
            quick.http.post("/api/v1/stations/CP-ODD/reset", json={"type": "soft"}, headers=quick.auth(op))
        )
        call = await _answer(ws)
        assert call[0] == 2 and call[2] == "Reset"
        await ws.send(json.dumps([3, "not-the-id", {"status": "Accepted"}]))  # made up: must not be taken
        await ws.send(json.dumps([reply[0], call[1], *reply[2:]]))
        r = await asyncio.wait_for(reset, 10)
        assert r.status_code == 409, r.text
        assert "Reset" in r.text or "reset" in r.text
        await _still_answers(ws)
    finally:
        await ws.close()


async def test_bytes_that_are_not_http_leave_no_traceback_and_the_port_serves_on(
    quick: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A port scanner, or a TLS client on a plain port: refused quietly."""
    op = await _setup(quick, "CP-GOOD")
    for garbage in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(100),
        b"HELLO\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", quick.platform.central.port)
        writer.write(garbage)
        writer.write_eof()
        await asyncio.wait_for(reader.read(), 5)  # the server answers or hangs up
        writer.close()
    await _another_station_charges(quick, op, "CP-GOOD", "ocpp1.6")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# --- parse_frame never fails in any other way ---

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
frame_like = st.lists(json_values, max_size=6) | st.tuples(
    st.sampled_from([2, 3, 4, 5, 0, -1, True, "2", 2.0]),
    st.text(max_size=40) | st.integers(),
    st.text(max_size=20) | json_values,
    json_values,
).map(list)


def _mutations(text: str) -> st.SearchStrategy[str]:
    cut = st.integers(0, max(0, len(text)))
    return st.one_of(
        st.just(text),
        cut.map(lambda i: text[:i]),  # truncated
        cut.flatmap(lambda i: st.text(max_size=3).map(lambda t: text[:i] + t + text[i:])),  # spliced
        st.just(text.replace('"', "'")),
        st.just(text.replace("}", ',"k":1,"k":2}', 1)),  # duplicate keys
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(),
        st.binary(),
        frame_like.map(json.dumps).flatmap(_mutations),
        st.integers(1, 3_000).map(lambda n: "[" * n + "]" * n),
        st.integers(1, 3_000).map(lambda n: '[2,"x","A",' + '{"a":' * n + "1" + "}" * n + "]"),
        st.sampled_from(
            [
                "NaN",
                '[2,"1","A",{"v":-Infinity}]',
                "1e999",
                '["\\ud800"]',
                '[2,"' + "\\udc00" * 3 + '","A",{}]',
            ]
        ),
    )
)
def test_parse_frame_returns_a_message_or_raises_frame_error(raw: str | bytes) -> None:
    try:
        message = parse_frame(raw)
    except FrameError as exc:
        assert exc.code in {"RpcFrameworkError", "MessageTypeNotSupported", "FormatViolation"}
        assert isinstance(exc.unique_id, str) and 1 <= len(exc.unique_id) <= 36
        assert exc.description
        return
    assert isinstance(message, Call | CallResult | CallError)
    assert isinstance(message.unique_id, str) and 1 <= len(message.unique_id) <= 36
    if isinstance(message, Call):
        assert isinstance(message.action, str) and isinstance(message.payload, dict)
    elif isinstance(message, CallResult):
        assert isinstance(message.payload, dict)
    else:
        assert isinstance(message.error_code, str) and isinstance(message.error_details, dict)
    # what came through is plain JSON text: it goes out again as UTF-8 (to a log, a database, a peer)
    json.dumps(
        message.payload if not isinstance(message, CallError) else message.error_details, ensure_ascii=False
    ).encode()
