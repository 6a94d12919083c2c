"""The segments that promotion gates and risk reports break results down by.

Two segments, the customer's value tier and current lifecycle stage. The feature
table holds each as an integer code feature (its index in the vocabulary of
`clm.domain`); frames that are judged by segment (the training holdout, a
version's reference sample, the prediction log in monitoring's shape) carry them
as names in a column of the segment's name, `unknown` where the code is missing
or out of range.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from clm.domain import STAGES, VALUE_TIERS

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SEGMENTS",
    "SEGMENT_FEATURES",
    "UNKNOWN",
    "VOCABULARIES",
    "add_segment_names",
    "names_from_codes",
]

# Segment columns of a judged frame, in report order.
SEGMENTS: tuple[str, ...] = ("value_tier", "stage")
# The feature holding each segment's code.
SEGMENT_FEATURES: dict[str, str] = {"value_tier": "value_tier_code", "stage": "stage_code"}
VOCABULARIES: dict[str, tuple[str, ...]] = {"value_tier": VALUE_TIERS, "stage": STAGES}
UNKNOWN = "unknown"


def names_from_codes(codes: Any, segment: str) -> np.ndarray:
    """The names of a segment's integer codes (floats, NaN and None allowed) as an object
    array; `unknown` for a missing, fractional or out-of-range code."""
    import pandas as pd

    vocabulary = VOCABULARIES[segment]
    values = pd.to_numeric(pd.Series(codes), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    valid = (values >= 0) & (values < len(vocabulary)) & (values == np.round(values))
    index = np.where(valid, values, len(vocabulary)).astype(int)
    return np.array([*vocabulary, UNKNOWN], dtype=object)[index]


def add_segment_names(frame: pd.DataFrame, *, overwrite: bool = False) -> pd.DataFrame:
    """Set each segment's name column from its code feature, in place; a segment whose
    column exists is kept unless `overwrite`, one with neither is all `unknown`."""
    for segment in SEGMENTS:
        if segment in frame.columns and not overwrite:
            continue
        feature = SEGMENT_FEATURES[segment]
        if feature in frame.columns:
            frame[segment] = names_from_codes(frame[feature], segment)
        else:
            frame[segment] = UNKNOWN
    return frame
