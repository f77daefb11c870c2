"""A hierarchical timing wheel: O(1) schedule and cancel for every check's next deadline.

Time is cut into ticks. Level 0 has 64 slots of one tick, level 1 has 64 slots of 64 ticks, and
so on for LEVELS levels. An entry sits at the level of the highest 6-bit group in which its due
tick differs from the current tick, so only entries near in time sit in fine-grained slots. When
the current tick reaches the start of a coarse slot, that slot's entries are re-filed one level
down (a cascade); when it reaches a level-0 slot, its entries fire.

Advancing never walks tick by tick: a bitmap per level gives the next non-empty slot, so a jump
of hours after a suspend costs a handful of steps, and next_due() tells the caller how long it
may sleep. Entries beyond the wheel's span (about 21 years at 10 ms ticks) wait in an overflow
set that is re-filed when the top level wraps.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

BITS = 6
SLOTS = 1 << BITS
MASK = SLOTS - 1
LEVELS = 6
SPAN_BITS = BITS * LEVELS

READY = -1  # level marker: due at or before the current tick, returned by the next advance
OVERFLOW = LEVELS  # level marker: beyond the top level's span


class TimerWheel(Generic[K]):
    """Keys with a due time; advance(now) returns the keys whose time has come, earliest first."""

    def __init__(self, now: float, tick: float) -> None:
        self._tick = tick
        self._current = math.floor(now / tick)
        self._slots: list[list[dict[K, float]]] = [
            [{} for _ in range(SLOTS)] for _ in range(LEVELS)
        ]
        self._occupied = [0] * LEVELS  # bit s set when slot s of that level holds entries
        self._ready: dict[K, float] = {}
        self._overflow: dict[K, float] = {}
        self._where: dict[K, tuple[int, int]] = {}  # key -> (level or marker, slot)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def schedule(self, key: K, due: float) -> None:
        """Fire `key` once the clock reaches `due`; replaces any earlier schedule of the key."""
        self.cancel(key)
        self._file(key, due)

    def cancel(self, key: K) -> None:
        place = self._where.pop(key, None)
        if place is None:
            return
        level, slot = place
        if level == READY:
            del self._ready[key]
        elif level == OVERFLOW:
            del self._overflow[key]
        else:
            bucket = self._slots[level][slot]
            del bucket[key]
            if not bucket:
                self._occupied[level] &= ~(1 << slot)

    def next_due(self) -> float | None:
        """When advance() next has work (a firing or a cascade); None when the wheel is empty."""
        if self._ready:
            return self._current * self._tick
        tick = self._next_event_tick()
        return None if tick is None else tick * self._tick

    def advance(self, now: float) -> list[K]:
        """Move the wheel to `now` and return every key whose due time has passed."""
        target = math.floor(now / self._tick)
        while True:
            event = self._next_event_tick()
            if event is None or event > target:
                break
            self._current = event
            self._refile_reached_slots()
        self._current = max(self._current, target)
        fired = sorted(self._ready.items(), key=lambda item: item[1])
        for key, _ in fired:
            del self._where[key]
        self._ready.clear()
        return [key for key, _ in fired]

    def _file(self, key: K, due: float) -> None:
        ticks = math.ceil(due / self._tick)
        if ticks <= self._current:
            self._ready[key] = due
            self._where[key] = (READY, 0)
            return
        level = ((ticks ^ self._current).bit_length() - 1) // BITS
        if level >= LEVELS:
            self._overflow[key] = due
            self._where[key] = (OVERFLOW, 0)
            return
        slot = (ticks >> (BITS * level)) & MASK
        self._slots[level][slot][key] = due
        self._occupied[level] |= 1 << slot
        self._where[key] = (level, slot)

    def _next_event_tick(self) -> int | None:
        """The earliest tick at which some slot's entries must fire or move down a level."""
        best: int | None = None
        for level in range(LEVELS):
            shift = BITS * level
            position = (self._current >> shift) & MASK
            later = self._occupied[level] >> (position + 1)
            if not later:
                continue
            slot = position + 1 + ((later & -later).bit_length() - 1)
            base = (self._current >> (shift + BITS)) << (shift + BITS)
            tick = base | (slot << shift)
            if best is None or tick < best:
                best = tick
        if self._overflow:
            wrap = ((self._current >> SPAN_BITS) + 1) << SPAN_BITS
            best = wrap if best is None else min(best, wrap)
        return best

    def _refile_reached_slots(self) -> None:
        """Re-file the entries of every slot the current tick has just entered, top level first,
        so an entry cascades all the way down (or fires) in one step."""
        if self._overflow and self._current & ((1 << SPAN_BITS) - 1) == 0:
            waiting, self._overflow = self._overflow, {}
            for key, due in waiting.items():
                self._file(key, due)
        for level in reversed(range(LEVELS)):
            slot = (self._current >> (BITS * level)) & MASK
            if not self._occupied[level] >> slot & 1:
                continue
            bucket, self._slots[level][slot] = self._slots[level][slot], {}
            self._occupied[level] &= ~(1 << slot)
            for key, due in bucket.items():
                self._file(key, due)
