"""clm.segments: training, promotion and monitoring name the same segments the same way."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clm import segments
from clm.domain import STAGES, VALUE_TIERS
from features.catalog import FEATURE_NAMES


def test_codes_become_names_and_anything_else_unknown() -> None:
    codes = [0, 1.0, 2, 3, -1, np.nan, None, 1.5, "x"]
    assert list(segments.names_from_codes(codes, "value_tier")) == [
        *VALUE_TIERS,
        *["unknown"] * 6,
    ]
    stage = pd.Series([5.0, 0.0], index=[10, 11])  # a frame's column, any index
    assert list(segments.names_from_codes(stage, "stage")) == [STAGES[5], STAGES[0]]


def test_every_segment_has_a_code_feature() -> None:
    assert set(segments.SEGMENTS) == set(segments.SEGMENT_FEATURES)
    assert set(segments.SEGMENT_FEATURES.values()) <= set(FEATURE_NAMES)


def test_training_and_monitoring_frames_carry_the_same_segment_names() -> None:
    from monitoring.inputs import normalise_log
    from tests.training import synthetic

    training = synthetic.training_set("churn").frame
    codes = training["value_tier_code"].to_numpy()
    assert list(training["value_tier"]) == [VALUE_TIERS[int(c)] for c in codes]
    assert set(training["stage"]) <= set(STAGES)

    log = pd.DataFrame(
        {
            "f_value_tier_code": [2.0, np.nan, 0.0],
            "f_stage_code": [1.0, 1.0, 9.0],
            "stage_current": ["mature", None, "dormant"],
        }
    )
    shaped = normalise_log(log)
    assert list(shaped["value_tier"]) == ["private", "unknown", "mass"]
    # The stage the service reported wins over the code feature.
    assert list(shaped["stage"]) == ["mature", "unknown", "dormant"]
    assert list(normalise_log(log.drop(columns="stage_current"))["stage"]) == [
        "growing",
        "growing",
        "unknown",
    ]
