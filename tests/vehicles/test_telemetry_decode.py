"""Decoding one telemetry message (pure): timestamps, limits, bad parts rejected without losing good ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smartev.vehicles.telemetry import MIN_TS_MS, DecodedMessage, MessageRejected, decode, parse_ts
from smartev.vss import default_catalog

CATALOG = default_catalog()
NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
NOW_MS = 1_795_255_200_000
SKEW_MS = 300_000
SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
LIMITS = {"max_bytes": 64 * 1024, "max_samples": 50, "max_signals": 20}


def run(doc: Any, **overrides: int) -> DecodedMessage:
    payload = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return decode(payload, CATALOG, now_ms=NOW_MS, **{**LIMITS, "max_future_ms": SKEW_MS, **overrides})


def one(ts: Any, signals: dict[str, Any] | None = None) -> DecodedMessage:
    return run({"seq": 1, "samples": [{"ts": ts, "signals": signals or {"Vehicle.Speed": 1.0}}]})


def test_the_clock_constant_is_right() -> None:
    assert int((NOW - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1)) == NOW_MS


@pytest.mark.parametrize(
    ("ts", "ms"),
    [
        ("2026-11-21T10:00:00Z", NOW_MS),
        ("2026-11-21T10:00:00.250Z", NOW_MS + 250),
        ("2026-11-21T09:59:59.999Z", NOW_MS - 1),
        ("2026-11-21T10:00:00.001+00:00", NOW_MS + 1),
        ("2026-11-21T11:00:00+01:00", NOW_MS),
        ("2026-11-21T04:30:00-05:30", NOW_MS),
        ("2026-11-21T10:00:00.250000Z", NOW_MS + 250),
        ("2026-11-21t10:00:00Z", NOW_MS),  # RFC 3339 allows a lower-case t
        ("2026-11-21 10:00:00Z", NOW_MS),  # and a space instead of the T
        ("2000-01-01T00:00:00Z", MIN_TS_MS),
        (NOW_MS, NOW_MS),
        (NOW_MS - 86_400_000, NOW_MS - 86_400_000),
        (float(NOW_MS), NOW_MS),  # a whole number written as a float is still milliseconds
    ],
)
def test_timestamps_in_rfc3339_or_epoch_milliseconds(ts: Any, ms: int) -> None:
    assert parse_ts(ts) == ms
    msg = one(ts)
    assert msg.errors == []
    assert msg.rows == [("Vehicle.Speed", ms, 1.0)]
    assert msg.min_ts == ms


@pytest.mark.parametrize(
    ("ts", "words"),
    [
        ("2026-11-21T10:00:00", ["no timezone"]),
        ("2026-11-21T10:00:00.250", ["no timezone"]),
        ("2026-11-21", ["no timezone"]),
        ("yesterday", ["not RFC 3339"]),
        ("", ["not RFC 3339"]),
        ("2026-13-01T00:00:00Z", ["not RFC 3339"]),
        ("2026-11-21T10:00:00+25:00", ["not RFC 3339"]),
        (str(NOW_MS), ["not RFC 3339"]),  # epoch milliseconds must be a number, not text
        (float(NOW_MS) + 0.5, ["epoch milliseconds"]),
        (None, ["epoch milliseconds"]),
        (True, ["epoch milliseconds"]),
        ([NOW_MS], ["epoch milliseconds"]),
        ({"ms": NOW_MS}, ["epoch milliseconds"]),
        (NOW_MS // 1000, ["before the year 2000"]),  # seconds instead of milliseconds
        (MIN_TS_MS - 1, ["before the year 2000"]),
        ("1999-12-31T23:59:59.999Z", ["before the year 2000"]),
        (0, ["before the year 2000"]),
        (-1, ["before the year 2000"]),
        (NOW_MS + SKEW_MS + 1, ["future"]),
        ("2026-11-21T10:05:00.001Z", ["future"]),
        (NOW_MS * 1000, ["future"]),  # microseconds instead of milliseconds
        ("9999-12-31T23:59:59Z", ["future"]),
    ],
)
def test_bad_timestamps_reject_their_sample_with_a_reason(ts: Any, words: list[str]) -> None:
    msg = one(ts)
    assert msg.rows == []
    assert len(msg.errors) == 1
    assert msg.errors[0]["path"] == "samples[0].ts"
    for word in words:
        assert word in msg.errors[0]["reason"], msg.errors[0]["reason"]


def test_the_future_skew_limit_is_inclusive() -> None:
    assert one(NOW_MS + SKEW_MS).rows == [("Vehicle.Speed", NOW_MS + SKEW_MS, 1.0)]
    assert one(NOW_MS + SKEW_MS + 1).rows == []
    strict = run(
        {"seq": 1, "samples": [{"ts": NOW_MS + 1, "signals": {"Vehicle.Speed": 1.0}}]}, max_future_ms=0
    )
    assert strict.rows == [] and "future" in strict.errors[0]["reason"]


def test_errors_in_one_sample_do_not_drop_the_others() -> None:
    msg = run(
        {
            "seq": 7,
            "samples": [
                {"ts": "2026-11-21T10:00:00", "signals": {"Vehicle.Speed": 10.0}},  # naive
                {"ts": NOW_MS - 2000, "signals": {"Vehicle.Speed": 20.0, SOC: 80, "Vehicle.Nope": 1}},
                "not an object",
                {"ts": NOW_MS - 1000, "signals": ["Vehicle.Speed", 30.0]},
                {"ts": NOW_MS - 1000},
                {"ts": 5, "signals": {"Vehicle.Speed": 40.0}},  # pre-2000
                {"ts": NOW_MS, "signals": {"Vehicle.Speed": "fast", SOC: 101, "Vehicle.IsMoving": True}},
            ],
        }
    )
    assert msg.seq == 7
    assert msg.rows == [
        ("Vehicle.Speed", NOW_MS - 2000, 20.0),
        (SOC, NOW_MS - 2000, 80.0),
        ("Vehicle.IsMoving", NOW_MS, True),
    ]
    assert [e["path"] for e in msg.errors] == [
        "samples[0].ts",
        "Vehicle.Nope",
        "samples[2]",
        "samples[3].signals",
        "samples[4].signals",
        "samples[5].ts",
        "Vehicle.Speed",
        SOC,
    ]
    assert msg.min_ts == NOW_MS - 2000


def test_a_sample_with_too_many_signals_is_rejected_alone() -> None:
    crowded = {p: True for p in list(CATALOG.signals)[:50] if CATALOG.signals[p].datatype == "boolean"}
    assert len(crowded) > LIMITS["max_signals"]
    msg = run(
        {"seq": 1, "samples": [{"ts": NOW_MS, "signals": crowded}, {"ts": NOW_MS, "signals": {SOC: 50}}]}
    )
    assert msg.rows == [(SOC, NOW_MS, 50.0)]
    assert msg.errors == [{"path": "samples[0].signals", "reason": "more than 20 signals in one sample"}]


@pytest.mark.parametrize(
    ("payload", "kind", "seq", "words"),
    [
        (b"", "not_json", None, "not valid JSON"),
        (b"not json", "not_json", None, "not valid JSON"),
        (b'{"seq": 1, "samples": [', "not_json", None, "not valid JSON"),
        (b"\xff\xfe{}", "not_json", None, "not valid JSON"),
        (b"[]", "bad_shape", None, "JSON object"),
        (b'"text"', "bad_shape", None, "JSON object"),
        (b"null", "bad_shape", None, "JSON object"),
        (b'{"samples": []}', "bad_shape", None, '"seq"'),
        (b'{"seq": "1", "samples": []}', "bad_shape", None, '"seq"'),
        (b'{"seq": -1, "samples": []}', "bad_shape", None, '"seq"'),
        (b'{"seq": 1.0, "samples": []}', "bad_shape", None, '"seq"'),
        (b'{"seq": true, "samples": []}', "bad_shape", None, '"seq"'),
        (b'{"seq": 9223372036854775808, "samples": []}', "bad_shape", None, '"seq"'),
        (b'{"seq": 3}', "bad_shape", 3, '"samples"'),
        (b'{"seq": 3, "samples": []}', "bad_shape", 3, '"samples"'),
        (b'{"seq": 3, "samples": {"ts": 1}}', "bad_shape", 3, '"samples"'),
    ],
)
def test_unreadable_messages_are_rejected_whole(
    payload: bytes, kind: str, seq: int | None, words: str
) -> None:
    with pytest.raises(MessageRejected) as caught:
        run(payload)
    assert caught.value.kind == kind
    assert caught.value.seq == seq
    assert words in caught.value.reason


def test_the_largest_seq_is_accepted() -> None:
    assert run({"seq": 2**63 - 1, "samples": [{"ts": NOW_MS, "signals": {SOC: 1}}]}).seq == 2**63 - 1


def test_size_limits() -> None:
    doc = {"seq": 9, "samples": [{"ts": NOW_MS, "signals": {"Vehicle.Speed": 1.0}}] * 51}
    with pytest.raises(MessageRejected) as caught:
        run(doc)
    assert (caught.value.kind, caught.value.seq) == ("too_large", 9)
    assert "51 samples" in caught.value.reason
    assert len(run(doc, max_samples=51).rows) == 51

    big = orjson.dumps(
        {"seq": 1, "samples": [{"ts": NOW_MS, "signals": {"Vehicle.Speed": 1.0}}], "pad": "x" * 70_000}
    )
    with pytest.raises(MessageRejected) as caught:
        run(big)
    assert caught.value.kind == "too_large"
    assert str(len(big)) in caught.value.reason


# -- properties ----------------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise_anything_but_message_rejected(payload: bytes) -> None:
    try:
        run(payload)
    except MessageRejected as exc:
        assert exc.reason and exc.kind in ("not_json", "bad_shape", "too_large")


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
INT_BOUNDS = {
    "uint8": (0, 255),
    "uint16": (0, 65_535),
    "uint32": (0, 2**32 - 1),
    "int8": (-128, 127),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
}


def plausible_values(path: str) -> st.SearchStrategy[Any]:
    """Values of the right kind for the signal (mostly valid, some just outside its range)."""
    signal = CATALOG.signals[path]
    base = signal.datatype.removesuffix("[]")
    element: st.SearchStrategy[Any]
    if signal.allowed is not None:
        element = st.sampled_from(signal.allowed) | st.text(max_size=5)
    elif base == "boolean":
        element = st.booleans()
    elif base in INT_BOUNDS:
        lo, hi = INT_BOUNDS[base]
        element = st.integers(lo - 2, hi + 2)
    elif base in ("float", "double"):
        lo = signal.min - 1 if signal.min is not None else None
        hi = signal.max + 1 if signal.max is not None else None
        element = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    else:
        element = st.text(max_size=10)
    return st.lists(element, max_size=3) if signal.is_array else element


paths = (
    st.sampled_from(sorted(CATALOG.signals))
    | st.sampled_from(sorted(CATALOG.branches))
    | st.text(max_size=12).filter(lambda p: not p.startswith("samples["))
)
signal_entries = st.sampled_from(sorted(CATALOG.signals)).flatmap(
    lambda p: st.tuples(st.just(p), plausible_values(p) | json_values)
) | st.tuples(paths, json_values)
timestamps = (
    st.integers(MIN_TS_MS - 10_000, NOW_MS + SKEW_MS + 10_000)
    | st.datetimes(datetime(1999, 12, 31), datetime(2026, 11, 22), timezones=st.just(UTC)).map(
        lambda d: d.isoformat()
    )
    | st.datetimes().map(lambda d: d.isoformat())
    | json_values
)
samples = (
    st.fixed_dictionaries(
        {"ts": timestamps, "signals": st.lists(signal_entries, max_size=8).map(dict) | json_values}
    )
    | json_values
)
documents = (
    st.fixed_dictionaries(
        {"seq": st.integers(-5, 2**64 - 1) | json_values, "samples": st.lists(samples, max_size=6)}
    )
    | json_values
)


@settings(max_examples=400)
@given(documents)
def test_any_json_document_is_decoded_or_rejected_and_every_row_is_valid(doc: Any) -> None:
    try:
        msg = run(doc)
    except MessageRejected as exc:
        assert exc.reason
        return
    assert isinstance(doc, dict) and isinstance(msg.seq, int)
    whole_sample_errors = {e["path"].split(".")[0] for e in msg.errors if e["path"].startswith("samples[")}
    accounted = 0
    for i, sample in enumerate(doc["samples"]):
        if f"samples[{i}]" in whole_sample_errors:
            accounted += 1
        else:  # a readable sample: each of its signals is either a row or a reason
            accounted += len(sample["signals"])
    assert len(msg.rows) + len(msg.errors) == accounted
    for path, ts, value in msg.rows:
        assert CATALOG.validate(path, value) == value
        assert MIN_TS_MS <= ts <= NOW_MS + SKEW_MS
    for error in msg.errors:
        assert error["reason"]


@given(st.integers(MIN_TS_MS, 4_102_444_800_000))
@example(1_093_077_386_909)  # 2004-08-21T08:36:26.909Z
@example(2_156_060_381_298)  # 2038-04-28T09:39:41.298Z
def test_rfc3339_timestamps_keep_their_exact_millisecond(ms: int) -> None:
    text = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
    assert parse_ts(text.replace("+00:00", "Z")) == ms


@pytest.mark.parametrize("ts", ["2026-11-21t10:00:00z", "2026-11-21T10:00:00z", "2026-11-21T10:00:00.000z"])
def test_rfc3339_allows_lower_case_t_and_z(ts: str) -> None:
    assert parse_ts(ts) == NOW_MS


def test_text_with_a_nul_character_is_rejected_and_the_rest_kept() -> None:
    msg = one(NOW_MS, {"Vehicle.Body.BodyType": "SUV\u0000", "Vehicle.Speed": 3.0})
    assert msg.rows == [("Vehicle.Speed", NOW_MS, 3.0)]
    assert [e["path"] for e in msg.errors] == ["Vehicle.Body.BodyType"]
