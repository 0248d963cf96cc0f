"""The spool: durable, bounded by size and age, oldest dropped first and counted, seqs never reused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from smartev.agent.spool import Spool
from smartev.clock import ManualClock


def sample(ts_ms: int, n: int = 3) -> dict[str, object]:
    return {"ts": ts_ms, "signals": {f"Vehicle.Signal{i}": i for i in range(n)}}


def test_messages_survive_reopening_and_leave_only_when_acked(tmp_path: Path) -> None:
    clock = ManualClock()
    spool = Spool(tmp_path / "s.db", clock=clock)
    seqs = [spool.append([sample(clock.now_ms() + i)], clock.now_ms() + i).seq for i in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    spool.ack(seqs[:2])
    spool.close()

    reopened = Spool(tmp_path / "s.db", clock=clock)
    assert [m.seq for m in reopened.pending()] == seqs[2:]
    stats = reopened.stats()
    assert (stats.depth, stats.acked_messages, stats.appended_messages) == (3, 2, 5)
    assert reopened.append([sample(1)], 1).seq > seqs[-1], "a seq is never reused after a restart"


def test_seq_floor_is_the_wall_clock_so_a_lost_file_cannot_reuse_stored_seqs(tmp_path: Path) -> None:
    clock = ManualClock()
    first = Spool(tmp_path / "a.db", clock=clock).append([sample(1)], 1).seq
    clock.advance(1.0)
    # A new (or rolled-back) spool file: its first seq is still above everything sent before.
    assert Spool(tmp_path / "b.db", clock=clock).append([sample(1)], 1).seq > first


def test_size_bound_drops_oldest_first_and_counts_exactly(tmp_path: Path) -> None:
    clock = ManualClock()
    spool = Spool(tmp_path / "s.db", max_bytes=10_000, clock=clock)
    appended = [spool.append([sample(1000 + i, n=4), sample(2000 + i, n=2)], 1000 + i) for i in range(200)]
    stats = spool.stats()
    assert stats.bytes <= 10_000
    kept = [m.seq for m in spool.pending(limit=1000)]
    dropped = [m.seq for m in appended if m.seq not in kept]
    assert kept == [m.seq for m in appended[len(dropped) :]], "what goes is the oldest, what stays the newest"
    assert stats.dropped_messages == stats.dropped_for_size == len(dropped) > 0
    assert stats.dropped_samples == 2 * len(dropped)
    assert stats.dropped_signals == 6 * len(dropped)
    assert stats.depth == len(kept)


def test_age_bound_drops_by_the_oldest_sample(tmp_path: Path) -> None:
    clock = ManualClock()
    spool = Spool(tmp_path / "s.db", max_age_s=3600, clock=clock)
    now = clock.now_ms()
    old = spool.append([sample(now - 2 * 3600_000)], now - 2 * 3600_000)
    recent = spool.append([sample(now - 60_000)], now - 60_000)
    dropped = spool.enforce_age()
    assert (dropped.messages, dropped.signals) == (1, 3)
    assert [m.seq for m in spool.pending()] == [recent.seq]
    assert spool.stats().dropped_for_age == 1 and old.seq not in {m.seq for m in spool.pending()}


def test_rejected_messages_leave_and_are_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", clock=ManualClock())
    m = spool.append([sample(1)], 1)
    assert spool.reject([m.seq]) == 1
    assert spool.reject([m.seq]) == 0, "a second rejection of the same message counts nothing"
    assert spool.stats().rejected_messages == 1 and spool.stats().depth == 0


def test_commands_are_remembered_across_restarts(tmp_path: Path) -> None:
    clock = ManualClock()
    spool = Spool(tmp_path / "s.db", clock=clock)
    assert spool.command_seen("c1") is None
    spool.command_started("c1")
    assert spool.command_seen("c1") == (None, None), "started but not answered: an interrupted command"
    spool.command_answered("c1", "succeeded", "locked", b'{"id":"c1"}')
    spool.close()
    again = Spool(tmp_path / "s.db", clock=clock)
    assert again.command_seen("c1") == ("succeeded", "locked")
    assert again.unsent_results() == [("c1", b'{"id":"c1"}')]
    again.result_sent("c1")
    assert again.unsent_results() == []


def test_status_can_be_read_while_the_file_is_open(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", clock=ManualClock())
    spool.append([sample(5)], 5)
    reader = sqlite3.connect(f"file:{tmp_path / 's.db'}?mode=ro", uri=True)
    assert reader.execute("SELECT count(*) FROM messages").fetchone() == (1,)
    reader.close()


@pytest.mark.parametrize("bad", [{"max_bytes": 0}, {"max_age_s": -1}])
def test_bounds_must_be_positive(tmp_path: Path, bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        Spool(tmp_path / "s.db", **bad)  # type: ignore[arg-type]


def test_acks_free_their_bytes_so_the_size_bound_only_counts_what_waits(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=5_000, clock=ManualClock())
    for i in range(500):
        m = spool.append([sample(i)], i)
        spool.ack([m.seq])
    stats = spool.stats()
    assert (stats.depth, stats.bytes, stats.dropped_messages) == (0, 0, 0)


def test_a_late_ack_of_a_dropped_message_is_counted_as_arrived(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=2_000, clock=ManualClock())
    first = spool.append([sample(1)], 1)
    for i in range(100):
        spool.append([sample(2 + i)], 2 + i)
    assert first.seq not in {m.seq for m in spool.pending(limit=1000)}
    spool.ack([first.seq])
    stats = spool.stats()
    assert (stats.dropped_then_acked_messages, stats.dropped_then_acked_signals) == (1, 3)
    spool.ack([first.seq])
    assert spool.stats().dropped_then_acked_messages == 1, "a repeated ack counts once"
