"""The timing wheel fires every key exactly when its time has come, whatever the jumps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from heartbeatd.core.wheel import TimerWheel

TICK = 0.01


def test_fires_at_due_time_not_before() -> None:
    wheel: TimerWheel[str] = TimerWheel(0.0, TICK)
    wheel.schedule("backup", 5.0)
    assert wheel.advance(4.99) == []
    assert wheel.advance(5.0) == ["backup"]
    assert wheel.advance(100.0) == []
    assert len(wheel) == 0


def test_rescheduling_replaces_the_earlier_time() -> None:
    wheel: TimerWheel[str] = TimerWheel(0.0, TICK)
    wheel.schedule("backup", 5.0)
    wheel.schedule("backup", 50.0)
    assert wheel.advance(10.0) == []
    assert wheel.advance(50.0) == ["backup"]


def test_cancel_forgets_the_key() -> None:
    wheel: TimerWheel[str] = TimerWheel(0.0, TICK)
    wheel.schedule("backup", 5.0)
    wheel.cancel("backup")
    wheel.cancel("never-scheduled")
    assert "backup" not in wheel
    assert wheel.advance(10.0) == []


def test_overdue_key_fires_on_next_advance() -> None:
    wheel: TimerWheel[str] = TimerWheel(100.0, TICK)
    wheel.schedule("late", 3.0)
    assert wheel.next_due() is not None and wheel.next_due() <= 100.0
    assert wheel.advance(100.0) == ["late"]


def test_long_jump_fires_everything_in_due_order() -> None:
    wheel: TimerWheel[int] = TimerWheel(0.0, TICK)
    dues = {1: 86400.0 * 30, 2: 7.5, 3: 3600.0, 4: 0.02}
    for key, due in dues.items():
        wheel.schedule(key, due)
    assert wheel.advance(86400.0 * 31) == [4, 2, 3, 1]


def test_next_due_never_later_than_the_earliest_key() -> None:
    wheel: TimerWheel[str] = TimerWheel(0.0, TICK)
    assert wheel.next_due() is None
    wheel.schedule("a", 3600.0)
    wheel.schedule("b", 90.0)
    # The caller may sleep until next_due: it must not sleep past b, and each wake-up either
    # fires or moves entries closer, so following next_due reaches b in a few steps.
    fired: list[str] = []
    steps = 0
    while not fired:
        due = wheel.next_due()
        assert due is not None and due <= 90.0
        fired = wheel.advance(due)
        steps += 1
    assert fired == ["b"] and steps <= 6


def test_beyond_the_span_waits_in_overflow_and_still_fires() -> None:
    wheel: TimerWheel[str] = TimerWheel(0.0, 1.0)  # 1 s ticks: span 64**6 s, about 2,177 years
    far = 64.0**6 * 3
    wheel.schedule("far", far)
    wheel.schedule("near", 10.0)
    assert wheel.advance(10.0) == ["near"]
    assert wheel.advance(far - 1) == []
    assert wheel.advance(far) == ["far"]


@settings(max_examples=300, deadline=None)
@given(
    start=st.floats(min_value=0, max_value=1e6),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("schedule"), st.integers(0, 20), st.floats(0, 5e5)),
            st.tuples(st.just("cancel"), st.integers(0, 20), st.just(0.0)),
            st.tuples(st.just("advance"), st.just(0), st.floats(0, 5e5)),
        ),
        max_size=60,
    ),
)
def test_behaves_like_a_plain_dictionary_of_deadlines(
    start: float, ops: list[tuple[str, int, float]]
) -> None:
    """Against a reference model: a dict of key -> due, fired when now >= due."""
    wheel: TimerWheel[int] = TimerWheel(start, TICK)
    model: dict[int, float] = {}
    now = start
    for op, key, amount in ops:
        if op == "schedule":
            due = now + amount - 1000  # some are already overdue
            wheel.schedule(key, due)
            model[key] = due
        elif op == "cancel":
            wheel.cancel(key)
            model.pop(key, None)
        else:
            now += amount
            fired = wheel.advance(now)
            # Ticks round due times up to the next 10 ms: a key may wait one tick, never fire early.
            expected = {k for k, due in model.items() if due <= now - TICK}
            possible = {k for k, due in model.items() if due <= now + 1e-9}
            assert expected <= set(fired) <= possible
            assert [model[k] for k in fired] == sorted(model[k] for k in fired)
            for k in fired:
                del model[k]
        assert len(wheel) == len(model)
        nxt = wheel.next_due()
        assert (nxt is None) == (not model)
        if model and nxt is not None:
            assert nxt <= max(now, min(model.values())) + TICK
