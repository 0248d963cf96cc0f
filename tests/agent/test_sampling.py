"""Sampling rules (on change, deadband, at most every N ms, heartbeat) and batching."""

from __future__ import annotations

import pytest

from smartev.agent.sampling import Batcher, Rule, Sampler

SPEED = "Vehicle.Speed"
SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
LOCKED = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"


def test_on_change_sends_only_changes() -> None:
    s = Sampler()
    assert s.offer(0, {SPEED: 10.0, LOCKED: True}) == {SPEED: 10.0, LOCKED: True}
    assert s.offer(100, {SPEED: 10.0, LOCKED: True}) == {}
    assert s.offer(200, {SPEED: 11.0, LOCKED: True}) == {SPEED: 11.0}


def test_deadband_counts_from_the_last_sent_value_not_the_last_reading() -> None:
    s = Sampler([Rule(SPEED, deadband=1.0)])
    s.offer(0, {SPEED: 50.0})
    # Creeping up 0.4 at a time: each step is inside the band, but the drift is not lost.
    assert s.offer(100, {SPEED: 50.4}) == {}
    assert s.offer(200, {SPEED: 50.8}) == {}
    assert s.offer(300, {SPEED: 51.2}) == {SPEED: 51.2}


def test_deadband_does_not_apply_to_booleans() -> None:
    s = Sampler([Rule("*", deadband=5.0)])
    s.offer(0, {LOCKED: True})
    assert s.offer(1, {LOCKED: False}) == {LOCKED: False}


def test_min_interval_holds_back_and_then_sends_the_latest() -> None:
    s = Sampler([Rule(SPEED, min_interval_ms=1000)])
    assert s.offer(0, {SPEED: 1.0}) == {SPEED: 1.0}
    assert s.offer(100, {SPEED: 2.0}) == {}
    assert s.offer(200, {SPEED: 3.0}) == {}
    assert s.due(500) == []
    assert s.due(1000) == [(200, {SPEED: 3.0})], "the latest held value, stamped when it was read"
    assert s.due(2000) == []


def test_a_held_value_that_returns_to_the_sent_one_is_not_sent() -> None:
    s = Sampler([Rule(SPEED, min_interval_ms=1000)])
    s.offer(0, {SPEED: 1.0})
    s.offer(100, {SPEED: 2.0})
    s.offer(200, {SPEED: 1.0})
    assert s.due(1500) == []


def test_first_matching_rule_wins_and_globs_match() -> None:
    s = Sampler([Rule(SPEED, deadband=2.0), Rule("Vehicle.Powertrain.*", min_interval_ms=500)])
    assert s.rule_for(SPEED).deadband == 2.0
    assert s.rule_for(SOC).min_interval_ms == 500
    assert s.rule_for(LOCKED).match == "*"


def test_heartbeat_sends_the_full_state_without_repeating_a_value_sent_at_that_instant() -> None:
    s = Sampler(heartbeat_s=60)
    s.offer(0, {SPEED: 0.0, SOC: 80.0})
    assert s.due(0) == []  # the heartbeat clock starts here
    s.offer(60_000, {SPEED: 5.0, SOC: 80.0})  # speed changes at the heartbeat instant: sent by the change
    assert s.due(60_000) == [(60_000, {SOC: 80.0})]


def test_not_on_change_sends_every_reading_within_the_interval() -> None:
    s = Sampler([Rule(SOC, on_change=False, min_interval_ms=1000)])
    assert s.offer(0, {SOC: 80.0}) == {SOC: 80.0}
    assert s.offer(500, {SOC: 80.0}) == {}
    assert s.due(1000) == [(500, {SOC: 80.0})]


@pytest.mark.parametrize("bad", [{"deadband": -1.0}, {"min_interval_ms": -5}, {"deadband": float("nan")}])
def test_bad_rules_say_which(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"Vehicle\.Speed"):
        Rule(SPEED, **bad)  # type: ignore[arg-type]


def test_batches_close_by_size_and_by_age() -> None:
    b = Batcher(max_samples=3, max_delay_ms=1000)
    assert b.add("t0", 0, {SPEED: 1.0}, now_ms=0) == []
    assert b.add("t1", 1, {SPEED: 2.0}, now_ms=10) == []
    closed = b.add("t2", 2, {SPEED: 3.0}, now_ms=20)
    assert len(closed) == 1 and [x["ts"] for x in closed[0].samples] == ["t0", "t1", "t2"]
    b.add("t3", 3, {SPEED: 4.0}, now_ms=30)
    assert b.due(500) is None
    late = b.due(1030)
    assert late is not None and late.first_ts_ms == 3 and late.signals == 1
    assert b.add("t4", 4, {}, now_ms=40) == [], "an empty sample is not a sample"


def test_batches_close_before_exceeding_the_signal_limit() -> None:
    b = Batcher(max_samples=100, max_signals=5, max_delay_ms=1000)
    b.add("a", 0, {f"s{i}": i for i in range(3)}, now_ms=0)
    closed = b.add("b", 1, {f"s{i}": i for i in range(3)}, now_ms=1)
    assert [c.signals for c in closed] == [3]
    rest = b.flush()
    assert rest is not None and rest.signals == 3
