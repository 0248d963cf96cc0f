"""What a simulated car sends: timestamps, deltas with a periodic full state, an outbox until acked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartev.sim.model import SignalValue
from smartev.sim.telemetry import Outbox, SignalDelta, rfc3339_ms


@pytest.mark.parametrize(
    ("epoch_s", "text"),
    [
        (datetime(2026, 11, 21, 10, 0, 0, 250_000, tzinfo=UTC).timestamp(), "2026-11-21T10:00:00.250Z"),
        (1_795_000_000.0, "2026-11-18T11:06:40.000Z"),
        (1_795_000_000.9996, "2026-11-18T11:06:41.000Z"),  # rounds up across the second
        (1_795_000_000.0004, "2026-11-18T11:06:40.000Z"),
    ],
)
def test_timestamps_are_rfc3339_utc_with_milliseconds(epoch_s: float, text: str) -> None:
    assert rfc3339_ms(epoch_s) == text


@given(st.integers(946_684_800_000, 4_102_444_800_000))
def test_timestamps_round_trip_to_the_millisecond(ms: int) -> None:
    text = rfc3339_ms(ms / 1000)
    assert len(text) == 24 and text.endswith("Z")
    assert round(datetime.fromisoformat(text).timestamp() * 1000) == ms


def test_delta_sends_everything_first_then_only_changes_then_everything_again() -> None:
    delta = SignalDelta(full_every_s=30.0)
    state: dict[str, SignalValue] = {
        "Vehicle.Speed": 0.0,
        "Vehicle.IsMoving": False,
        "Vehicle.Diagnostics.DTCList": [],
    }
    assert delta.changes(state, 0.0) == state
    assert delta.changes(state, 1.0) == {}
    moving: dict[str, SignalValue] = {**state, "Vehicle.Speed": 12.5, "Vehicle.IsMoving": True}
    assert delta.changes(moving, 2.0) == {"Vehicle.Speed": 12.5, "Vehicle.IsMoving": True}
    assert delta.changes(moving, 29.0) == {}
    assert delta.changes(moving, 30.0) == moving
    assert delta.changes({**moving, "Vehicle.Diagnostics.DTCList": ["P0A80"]}, 31.0) == {
        "Vehicle.Diagnostics.DTCList": ["P0A80"]
    }


def test_outbox_resends_unacked_messages_with_backoff_until_acked() -> None:
    outbox = Outbox(resend_after_s=5.0, max_resend_after_s=20.0)
    outbox.add(1, b"one")
    outbox.add(2, b"two")
    assert [m.seq for m in outbox.due(0.0)] == [1, 2]
    outbox.mark_sent(1, 0.0)
    outbox.mark_sent(2, 0.0)
    assert outbox.due(4.9) == []
    assert outbox.ack(2)
    assert [m.seq for m in outbox.due(5.0)] == [1]
    outbox.mark_sent(1, 5.0)
    assert outbox.due(14.9) == [] and outbox.next_due_at() == 15.0  # second wait doubled
    outbox.mark_sent(1, 15.0)
    outbox.mark_sent(1, 35.0)
    assert outbox.next_due_at() == 55.0  # capped at 20 s
    assert [m.payload for m in outbox] == [b"one"]
    assert outbox.ack(1) and len(outbox) == 0 and outbox.next_due_at() is None


def test_outbox_ignores_acks_for_messages_it_has_not_sent() -> None:
    # After a restart the broker may deliver acks meant for the previous run's seq 1..n: they must not
    # settle this run's messages with the same seqs before these were ever sent.
    outbox = Outbox()
    outbox.add(1, b"new one")
    assert not outbox.ack(1)
    assert not outbox.ack(7)
    outbox.mark_sent(1, 0.0)
    assert outbox.ack(1)
    assert not outbox.ack(1)  # a repeated ack


def test_outbox_makes_everything_due_after_a_reconnect() -> None:
    outbox = Outbox(resend_after_s=5.0)
    outbox.add(1, b"x")
    outbox.mark_sent(1, 100.0)
    assert outbox.due(101.0) == []
    outbox.all_due()
    assert [m.seq for m in outbox.due(101.0)] == [1]


def test_outbox_drops_the_oldest_beyond_capacity() -> None:
    outbox = Outbox(capacity=3)
    dropped = sum(outbox.add(seq, b"m") for seq in range(1, 6))
    assert dropped == 2 and outbox.dropped == 2
    assert [m.seq for m in outbox] == [3, 4, 5]
