"""The pace of one large send, shared by its bulk POSTs in flight: a messages-per-second limit, and one
common pause when Infobip answers 429.

A throttled request alone backing off would let the others keep hitting the limit; here a 429 makes
*every* request of the send wait, and consecutive 429s make the pause grow (exponential, capped) until
a request goes through again.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from airflow_provider_omni.backoff import jittered_backoff

if TYPE_CHECKING:
    from collections.abc import Callable

#: Seconds of the first shared pause after a 429 without ``Retry-After``.
THROTTLE_BASE = 1.0
#: Longest shared pause, in seconds.
THROTTLE_MAX = 60.0
#: A paced send's POST may be throttled (429: nothing was processed) this many times before it fails.
THROTTLED_RETRIES = 10


class SendPace:
    """Let requests go out at ``messages_per_second`` at most, and pause them all after a 429.

    Thread safe: every thread of a send calls :meth:`wait_turn` before each POST (retries included).
    The limit is kept by *virtual scheduling*: a request of ``n`` messages occupies ``n / rate``
    seconds of the send's timeline, starting when the previous one's ends (or now, if later), so the
    long-run rate is exact however the bulks are sized, and an idle moment is not saved up as a burst.

    :param messages_per_second: the limit; None or 0 for none.
    :param clock: monotonic seconds (tests give a fake one).
    :param sleep: how to wait (tests give a fake one).
    """

    def __init__(
        self,
        messages_per_second: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = float(messages_per_second) if messages_per_second else None
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_start = 0.0
        self._resume_at = 0.0
        self._streak = 0
        #: 429 answers seen by the send (by any thread).
        self.throttled = 0

    def wait_turn(self, messages: int) -> float:
        """Block until a request of ``messages`` destinations may go out; return the seconds waited."""
        waited = self._wait_pause()
        if self.rate is not None:
            with self._lock:
                now = self._clock()
                start = max(now, self._next_start)
                self._next_start = start + messages / self.rate
            if start > now:
                self._sleep(start - now)
                waited += start - now
            waited += self._wait_pause()  # a 429 elsewhere while this one waited its turn
        return waited

    def _wait_pause(self) -> float:
        waited = 0.0
        while True:
            with self._lock:
                pause = self._resume_at - self._clock()
            if pause <= 0:
                return waited
            self._sleep(pause)
            waited += pause

    def throttle(self, retry_after: float | None) -> float:
        """Note a 429: pause every request of the send; return the pause in seconds.

        ``Retry-After`` is honoured when given (capped); otherwise the pause doubles with each 429
        in a row (with jitter), and one that ends later than the current pause extends it.
        """
        with self._lock:
            if retry_after is not None:
                pause = min(max(retry_after, 0.0), THROTTLE_MAX)
            else:
                pause = jittered_backoff(self._streak, base=THROTTLE_BASE, cap=THROTTLE_MAX)
            self._streak += 1
            self.throttled += 1
            resume = self._clock() + pause
            self._resume_at = max(self._resume_at, resume)
            if self.rate is not None:
                self._next_start = max(self._next_start, resume)
            return pause

    def went_through(self) -> None:
        """Note an answer that was not a 429: the next 429 starts the pauses from the shortest again."""
        with self._lock:
            self._streak = 0
