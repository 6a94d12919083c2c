"""The oracle AUC: how well the true hazards rank what actually happened.

Scores are accumulated chunk by chunk into fine histograms on the logit scale,
so the AUC of a million-customer bank needs no more memory than a small one.
"""

from __future__ import annotations

import numpy as np

BINS = 1 << 14
LOW, HIGH = -16.0, 8.0


class StreamingAUC:
    """AUC of a score for a binary outcome, from histograms of positives and negatives."""

    def __init__(self) -> None:
        self.pos = np.zeros(BINS, np.int64)
        self.neg = np.zeros(BINS, np.int64)

    def add(self, score: np.ndarray, outcome: np.ndarray) -> None:
        p = np.clip(score.astype(np.float64), 1e-9, 1 - 1e-9)
        logit = np.log(p) - np.log1p(-p)
        b = np.clip(((logit - LOW) / (HIGH - LOW) * BINS).astype(np.int64), 0, BINS - 1)
        self.pos += np.bincount(b[outcome], minlength=BINS)
        self.neg += np.bincount(b[~outcome], minlength=BINS)

    @property
    def positives(self) -> int:
        return int(self.pos.sum())

    def auc(self) -> float | None:
        """P(score of a positive > score of a negative), ties count half; None without both classes."""
        n_pos, n_neg = self.pos.sum(), self.neg.sum()
        if n_pos == 0 or n_neg == 0:
            return None
        below = np.cumsum(self.neg) - self.neg
        wins = (self.pos * below).sum() + 0.5 * (self.pos * self.neg).sum()
        return float(wins / (n_pos * n_neg))
