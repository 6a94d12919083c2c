"""The "stays in its current stage" baseline the stage model has to beat."""

from __future__ import annotations

import numpy as np
import pytest

from training import evaluate


def test_stay_baseline() -> None:
    current = np.array([0, 1, 2, 2, 5, -1])
    following = np.array([0, 2, 2, 3, 5, 1])
    assert evaluate.stay_rate(current[:5], following[:5]) == pytest.approx(0.6)
    proba = evaluate.stay_baseline_proba(current, 6, 0.6)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert (proba[:5].argmax(axis=1) == current[:5]).all()
    assert proba[0, 0] == pytest.approx(0.6)
    assert proba[0, 1] == pytest.approx(0.4 / 5)
    assert np.allclose(proba[5], 1 / 6)  # unknown current stage: uniform
