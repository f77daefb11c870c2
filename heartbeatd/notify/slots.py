"""How many sends one notifier may have under way: few to a fast target, more to a slow one.

Sends run several at once to hide a service's round trip. To a target on loopback or a fast LAN
a send is nearly all CPU, and that CPU belongs to the loop that answers pings: eight at once in
an alert storm to a loopback webhook kept the loop ~86 % busy and doubled the ping p99, four
left it at 1.3x (benchmarks/alert_storm.py). To a slow service four at once is a throughput cap
instead (four at once to a target that takes 3 s: 1.3 alerts a second; the soak's slow target
fell behind), while waiting costs no CPU. So a notifier whose sends take long gets as many at
once as keep SLOW_RATE sends a second going, up to MOST: what it adds is at most SLOW_RATE sends
a second, whatever the service's speed. Only delivered sends count: a target that never answers
keeps AT_ONCE connections, no more.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from types import TracebackType

AT_ONCE = 4  # sends under way per notifier while its sends are quick
SLOW_RATE = 5.0  # sends a second a slow service is still given
MOST = 16
WEIGHT = 0.3  # of the newest delivered send's duration in the running average
# Due rows a notifier holds per slot, read in one go once fewer than half remain, so a storm
# does not read the outbox once per delivery. One read is one writer call, which no budget
# can split: 64 rows at once held the loop for ~2 ms.
ROWS_PER_SLOT = 4


def allowed_at_once(seconds_per_send: float) -> int:
    """Sends under way for a notifier whose delivered sends take `seconds_per_send`."""
    return min(MOST, max(AT_ONCE, math.ceil(seconds_per_send * SLOW_RATE)))


class Slots:
    """One notifier's sends under way, admitted in order, `limit` at a time.

    `async with slots:` around a send; `delivered(seconds)` after one that worked, which moves
    the limit with the notifier's speed and lets waiting sends in when it grows.
    """

    def __init__(self) -> None:
        self.limit = AT_ONCE
        self.used = 0
        self._seconds_per_send = 0.0
        self._waiting: deque[asyncio.Future[None]] = deque()

    def delivered(self, seconds: float) -> None:
        self._seconds_per_send += WEIGHT * (seconds - self._seconds_per_send)
        self.limit = allowed_at_once(self._seconds_per_send)
        self._admit()

    def rows_wanted(self, held: int) -> int:
        """How many due rows to read for this notifier, holding `held` (in flight or waiting)."""
        full = ROWS_PER_SLOT * self.limit
        return full - held if held < full // 2 else 0

    async def __aenter__(self) -> None:
        if self.used < self.limit and not self._waiting:
            self.used += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn  # _admit counts the slot as ours before waking us
        except asyncio.CancelledError:
            if not turn.cancelled():  # admitted, then cancelled before it ran: pass it on
                self._release()
            elif turn in self._waiting:
                self._waiting.remove(turn)
            raise

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        self.used -= 1
        self._admit()

    def _admit(self) -> None:
        while self._waiting and self.used < self.limit:
            turn = self._waiting.popleft()
            if not turn.done():  # not one cancelled while it waited
                self.used += 1
                turn.set_result(None)
