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
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from serving.predlog import PredictionLog
    from serving.scoring import ModelSet, Scored

log = logging.getLogger(__name__)

SHADOW = "shadow"
QUEUE_REQUESTS = 256
BATCH_SECONDS = 0.05


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
        while True:
            first = self._queue.get()
            if first is None:
                self._queue.task_done()
                return
            # Gather what arrives within BATCH_SECONDS and score it in one call: at one id
            # per request, per-call overhead is most of the cost, and it competes with
            # the champions' requests for the same two cores.
            items = [first]
            time.sleep(BATCH_SECONDS)
            stop = False
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    self._queue.task_done()
                    break
                items.append(item)
            try:
                self._score(items)
            except Exception:  # shadow scoring must never take anything down
                log.exception("shadow scoring failed")
            finally:
                for _ in items:
                    self._queue.task_done()
            if stop:
                return

    def _score(self, items: list[tuple[ModelSet, ModelSet, str, list[str], np.ndarray]]) -> None:
        from serving.scoring import score

        groups: dict[
            tuple[int, int], list[tuple[ModelSet, ModelSet, str, list[str], np.ndarray]]
        ] = {}
        for item in items:
            groups.setdefault((id(item[0]), id(item[1])), []).append(item)
        for group in groups.values():
            shadow, served = group[0][0], group[0][1]
            columns = [served.union_index.get(name) for name in shadow.union]
            if any(c is None for c in columns):
                # The challenger needs a feature the champions' lookup did not fetch.
                self.dropped += len(group)
                continue
            index = np.asarray(columns, dtype=np.intp)
            ids = [c for item in group for c in item[3]]
            matrix = np.concatenate([item[4][:, index] for item in group])
            scored = score(shadow, ids, matrix, explain=False, build_results=False)
            start = 0
            for _, _, request_id, customer_ids, _ in group:
                end = start + len(customer_ids)
                self.predictions.append(request_id, "score", rows(scored, start, end), role=SHADOW)
                start = end
                self.scored += 1


def rows(scored: Scored, start: int, end: int) -> Scored:
    """Rows start..end of a Scored (one request's share of a batch)."""
    return replace(
        scored,
        customer_ids=scored.customer_ids[start:end],
        features=scored.features[start:end],
        churn=scored.churn[start:end],
        propensity=scored.propensity[start:end],
        stage=scored.stage[start:end],
        next_best=scored.next_best[start:end],
        stage_current=scored.stage_current[start:end],
        stage_next=scored.stage_next[start:end],
        results=[],
    )
