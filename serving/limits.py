"""Keeping expensive requests from starving cheap ones.

An explanation (LightGBM's per-feature contributions for every row and booster)
costs about a hundred times a plain score: 1,000 ids with `explain` took 4.5 s
of CPU, and four such clients pushed a one-id /score from 7 ms to 19.7 s,
because every request queued for the same worker thread. Three bounds:

- size: at most `serving.max_explain_ids` ids or rows per request with explain
  (413 above, checked by the endpoint);
- lanes: scoring runs on worker threads, explain requests on their own
  `EXPLAIN_THREADS` lane, so a plain request never waits behind an explanation
  (LightGBM releases the GIL while it predicts);
- admission: at most `serving.explain_per_key` explain requests in flight per
  API key and `serving.explain_queue` in the whole service; the next one is
  answered 429 at once with a Retry-After estimated from recent explain times.

Counters change only on the event loop (never from the worker threads), so they
need no lock.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from anyio import CapacityLimiter

    from clm.settings import ServingSettings

T = TypeVar("T")

SCORE_THREADS = 2  # plain requests: lookup and scoring release the GIL for most of their time
EXPLAIN_THREADS = 1  # explanations: one core at most, whatever the demand


class Refused(Exception):
    """An explain request over a limit: answer 429 with `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Lanes:
    """Runs request work on worker threads, explain requests on their own bounded lane."""

    def __init__(self, serving: ServingSettings) -> None:
        self.per_key = serving.explain_per_key
        self.queue = serving.explain_queue
        self._in_flight: Counter[str] = Counter()
        self._explaining = 0
        self._seconds = 1.0  # moving average of an explain request's time, for Retry-After
        self._limiters: dict[bool, CapacityLimiter] = {}

    def _limiter(self, explain: bool) -> CapacityLimiter:
        # Created on first use: anyio limiters belong to the running event loop.
        if explain not in self._limiters:
            from anyio import CapacityLimiter

            self._limiters[explain] = CapacityLimiter(EXPLAIN_THREADS if explain else SCORE_THREADS)
        return self._limiters[explain]

    def retry_after(self) -> int:
        """Seconds until an explain slot is likely free (at least 1)."""
        return max(1, math.ceil(self._seconds * max(1, self._explaining) / EXPLAIN_THREADS))

    async def run(self, caller: str | None, explain: bool, work: Callable[[], T]) -> T:
        """`work()` on a worker thread of the right lane; raises `Refused` over a limit."""
        from anyio import to_thread

        if not explain:
            return await to_thread.run_sync(work, limiter=self._limiter(False))
        who = caller or "anonymous"
        if self._in_flight[who] >= self.per_key:
            raise Refused(
                f"at most {self.per_key} request(s) with explain in flight per API key; "
                "wait for the previous one or retry later",
                self.retry_after(),
            )
        if self._explaining >= self.queue:
            raise Refused(
                f"the service is busy with {self._explaining} requests with explain; retry later",
                self.retry_after(),
            )
        self._in_flight[who] += 1
        self._explaining += 1
        started = time.monotonic()
        try:
            return await to_thread.run_sync(work, limiter=self._limiter(True))
        finally:
            self._explaining -= 1
            self._in_flight[who] -= 1
            if not self._in_flight[who]:
                del self._in_flight[who]
            self._seconds = 0.8 * self._seconds + 0.2 * (time.monotonic() - started)
