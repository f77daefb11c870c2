"""Sends under way per notifier: few to a fast target, more to a slow one, in order."""

from __future__ import annotations

import asyncio

import pytest

from heartbeatd.notify.slots import AT_ONCE, MOST, ROWS_PER_SLOT, Slots, allowed_at_once


def test_quick_sends_keep_few_at_once_and_slow_ones_get_more_up_to_a_cap() -> None:
    assert allowed_at_once(0.002) == AT_ONCE  # loopback: CPU-bound, few at once
    assert allowed_at_once(0.1) == AT_ONCE  # a service 100 ms away: 40 a second already
    assert allowed_at_once(3.0) == 15  # 3 s a send: 5 a second still
    assert allowed_at_once(60.0) == MOST


async def _enter(slots: Slots, entered: list[int], n: int, leave: asyncio.Event) -> None:
    async with slots:
        entered.append(n)
        await leave.wait()


async def test_sends_beyond_the_limit_wait_and_go_in_order() -> None:
    slots = Slots()
    entered: list[int] = []
    leave = asyncio.Event()
    tasks = [asyncio.create_task(_enter(slots, entered, n, leave)) for n in range(AT_ONCE + 2)]
    await asyncio.sleep(0)
    assert entered == list(range(AT_ONCE))
    leave.set()
    await asyncio.gather(*tasks)
    assert entered == list(range(AT_ONCE + 2))
    assert slots.used == 0


async def test_slow_deliveries_let_waiting_sends_in_at_once() -> None:
    slots = Slots()
    entered: list[int] = []
    leave = asyncio.Event()
    tasks = [asyncio.create_task(_enter(slots, entered, n, leave)) for n in range(10)]
    await asyncio.sleep(0)
    assert len(entered) == AT_ONCE
    for _ in range(3):
        slots.delivered(3.0)  # as if earlier sends had taken 3 s each
    await asyncio.sleep(0)
    assert len(entered) == 10  # no send had to finish first
    for _ in range(20):
        slots.delivered(0.001)  # the service got quick again: back to few at once
    assert slots.limit == AT_ONCE
    leave.set()
    await asyncio.gather(*tasks)


async def test_a_cancelled_send_gives_its_place_back() -> None:
    slots = Slots()
    entered: list[int] = []
    leave = asyncio.Event()
    holders = [asyncio.create_task(_enter(slots, entered, n, leave)) for n in range(AT_ONCE)]
    waiting = asyncio.create_task(_enter(slots, entered, 99, leave))
    admitted_then_cancelled = asyncio.create_task(_enter(slots, entered, 98, leave))
    last = asyncio.create_task(_enter(slots, entered, 5, leave))
    await asyncio.sleep(0)
    waiting.cancel()  # cancelled while it waits: it leaves the line
    await asyncio.sleep(0)
    holders[0].cancel()  # a holder leaves, its slot goes to the next in line ...
    await asyncio.sleep(0)
    admitted_then_cancelled.cancel()  # ... which is cancelled before it could run
    await asyncio.gather(holders[0], waiting, admitted_then_cancelled, return_exceptions=True)
    await asyncio.sleep(0)
    assert 5 in entered and 98 not in entered and 99 not in entered
    assert slots.used == AT_ONCE
    leave.set()
    await asyncio.gather(*holders[1:], last)
    assert slots.used == 0


@pytest.mark.parametrize(("held", "wanted"), [(0, 16), (7, 9), (8, 0), (16, 0)])
def test_rows_are_read_ahead_for_every_slot_once_half_are_used(held: int, wanted: int) -> None:
    assert ROWS_PER_SLOT * AT_ONCE == 16
    assert Slots().rows_wanted(held) == wanted
