"""Shadow scoring: each family's challenger scores the same `/score` requests in the
background, and its rows go to the prediction log with `role = "shadow"`.

The request path only queues (customer ids, the feature matrix it already looked up):
the response is built from the champions and never waits for or names a challenger.
One worker thread scores the queue; the queue is bounded, so under a burst shadow
rows are dropped (counted in `dropped`) rather than slowing the champions down.
Once outcomes mature, monitoring compares champion and challenger on the same
customers and months (`clm monitor drift --traffic shadow`, monitoring/).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from serving.predlog import PredictionLog
    from serving.scoring import ModelSet

log = logging.getLogger(__name__)

SHADOW = "shadow"
QUEUE_REQUESTS = 64


class ShadowScorer:
    """A background thread scoring queued requests with the shadow model set."""

    def __init__(self, predictions: PredictionLog, *, capacity: int = QUEUE_REQUESTS) -> None:
        self.predictions = predictions
        self.dropped = 0
        self.scored = 0
        self._queue: queue.Queue[tuple[ModelSet, ModelSet, str, list[str], np.ndarray] | None] = (
            queue.Queue(maxsize=capacity)
        )
        self._thread = threading.Thread(target=self._run, name="shadow-scoring", daemon=True)
        self._thread.start()

    def submit(
        self,
        shadow: ModelSet,
        served: ModelSet,
        request_id: str,
        customer_ids: list[str],
        matrix: np.ndarray,
    ) -> None:
        """Queue a request scored by `served` (its feature matrix in `served.union` order)."""
        try:
            self._queue.put_nowait((shadow, served, request_id, list(customer_ids), matrix))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 10.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout=timeout)

    def join(self) -> None:
        """Wait until everything queued so far is scored (tests)."""
        self._queue.join()

    def _run(self) -> None:
        from serving.scoring import score

        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                shadow, served, request_id, customer_ids, matrix = item
                columns = [served.union_index.get(name) for name in shadow.union]
                if any(c is None for c in columns):
                    # The challenger needs a feature the champions' lookup did not fetch.
                    self.dropped += 1
                    continue
                shadow_matrix = matrix[:, np.asarray(columns, dtype=np.intp)]
                scored = score(
                    shadow, customer_ids, shadow_matrix, explain=False, build_results=False
                )
                self.predictions.append(request_id, "score", scored, role=SHADOW)
                self.scored += 1
            except Exception:  # shadow scoring must never take anything down
                log.exception("shadow scoring failed")
            finally:
                self._queue.task_done()
