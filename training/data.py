"""Training sets from the Feast feature services, split out of time.

Train on older snapshots, validate on the next `validation_months`, test on the
latest fully labelled `test_months`: the model is always judged on months it has
never seen, as it will be in production. A customer-snapshot row belongs to
exactly one split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from clm.domain import PROPENSITY_PRODUCTS, STAGES, VALUE_TIERS
from clm.errors import ClmError

if TYPE_CHECKING:
    import pandas as pd

    from clm.settings import Settings

SPLITS = ("train", "validation", "test")


class TrainingDataError(ClmError):
    """The feature store cannot give a usable training set."""


def label_columns(family: str) -> list[str]:
    """The label columns a family learns from (see docs/contracts.md, labels)."""
    if family == "churn":
        return ["churn_90d"]
    if family == "propensity":
        return [f"adopt_{product}_90d" for product in PROPENSITY_PRODUCTS]
    if family == "stage":
        return ["stage_next"]
    raise TrainingDataError(f"unknown model family {family!r}; expected churn, propensity or stage")


@dataclass(frozen=True)
class OutOfTimeSplit:
    train: list[pd.Timestamp]
    validation: list[pd.Timestamp]
    test: list[pd.Timestamp]

    def of(self, snapshot: pd.Timestamp) -> str | None:
        for name in SPLITS:
            if snapshot in getattr(self, name):
                return name
        return None

    def as_dict(self) -> dict[str, list[str]]:
        return {name: [ts.isoformat() for ts in getattr(self, name)] for name in SPLITS}


def out_of_time_split(
    labelled_snapshots: list[pd.Timestamp], *, validation_months: int, test_months: int
) -> OutOfTimeSplit:
    """Oldest snapshots train, the next `validation_months` validate, the latest `test_months` test."""
    ordered = sorted(set(labelled_snapshots))
    needed = validation_months + test_months + 1
    if len(ordered) < needed:
        raise TrainingDataError(
            f"only {len(ordered)} labelled snapshot(s) ({', '.join(str(s.date()) for s in ordered) or 'none'}); "
            f"the out-of-time split needs at least {needed} (training.validation_months="
            f"{validation_months} + training.test_months={test_months} + 1 to train on). "
            "Simulate or ingest more months, or lower them in mlflow.yaml."
        )
    test = ordered[-test_months:]
    validation = ordered[-(test_months + validation_months) : -test_months]
    train = ordered[: -(test_months + validation_months)]
    return OutOfTimeSplit(train=train, validation=validation, test=test)


@dataclass
class TrainingSet:
    """One family's rows: ids, `split`, features (float64), labels and segments."""

    family: str
    feature_service: str
    features: list[str]
    frame: pd.DataFrame
    split: OutOfTimeSplit
    lineage: dict[str, Any] = field(default_factory=dict)

    def part(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name]


def stage_index(values: pd.Series) -> np.ndarray:
    """Stage labels as class indices in `STAGES` order (-1 when missing or unknown)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(values):
        return values.fillna(-1).astype(int).to_numpy()
    lookup = {name: i for i, name in enumerate(STAGES)}
    return values.map(lookup).fillna(-1).astype(int).to_numpy()


def labelled_rows(labels: pd.DataFrame, family: str) -> pd.DataFrame:
    """Label rows whose horizon is complete for this family."""
    columns = label_columns(family)
    missing = [c for c in ["customer_id", "snapshot_ts", *columns] if c not in labels.columns]
    if missing:
        raise TrainingDataError(
            f"labels table lacks column(s) {missing}; rebuild it with `clm features build`"
        )
    if family == "propensity":
        # Product labels are null for holders; the horizon is complete when churn is known.
        key = "churn_90d" if "churn_90d" in labels.columns else columns[0]
        keep = labels[key].notna() | labels[columns].notna().any(axis=1)
    else:
        keep = labels[columns[0]].notna()
    if "stage" in labels.columns:
        # A customer who has already churned is no longer scored: keeping those rows
        # would teach "churned stays churned" and flatter every metric.
        keep &= labels["stage"].astype(str) != "churned"
    return labels.loc[keep].reset_index(drop=True)


def assemble(
    family: str,
    feature_service: str,
    features: list[str],
    labels: pd.DataFrame,
    feature_rows: pd.DataFrame,
    split: OutOfTimeSplit,
    segment_columns: dict[str, str] | None = None,
) -> TrainingSet:
    """Join features to labels on (customer_id, snapshot_ts) and tag each row with its split.

    `feature_rows` has `customer_id`, `event_timestamp` (= snapshot_ts) and the
    features; `segment_columns` maps `value_tier`/`stage` to the feature holding its code.
    """
    import pandas as pd

    missing = [f for f in features if f not in feature_rows.columns]
    if missing:
        raise TrainingDataError(
            f"feature service {feature_service!r} returned no column(s) {missing}; "
            "run `clm features apply` so the store matches the definitions"
        )
    rows = feature_rows.rename(columns={"event_timestamp": "snapshot_ts"})
    rows = rows[["customer_id", "snapshot_ts", *features]].copy()
    rows["snapshot_ts"] = pd.to_datetime(rows["snapshot_ts"], utc=True)
    rows[features] = rows[features].astype("float64")
    keep = ["customer_id", "snapshot_ts", *label_columns(family)]
    for extra in ("stage", "churn_90d"):
        if extra in labels.columns and extra not in keep:
            keep.append(extra)
    lab = labels[keep].copy()
    lab["snapshot_ts"] = pd.to_datetime(lab["snapshot_ts"], utc=True)
    frame = lab.merge(rows, on=["customer_id", "snapshot_ts"], how="inner", validate="one_to_one")
    frame["split"] = frame["snapshot_ts"].map(split.of)
    frame = frame[frame["split"].notna()].reset_index(drop=True)
    frame["value_tier"] = _segment_names(
        frame, (segment_columns or {}).get("value_tier"), VALUE_TIERS
    )
    if "stage" in frame.columns:
        codes = stage_index(frame["stage"])
        frame["stage"] = [STAGES[c] if 0 <= c < len(STAGES) else "unknown" for c in codes]
    else:
        frame["stage"] = _segment_names(frame, (segment_columns or {}).get("stage"), STAGES)
    if frame.empty:
        raise TrainingDataError(
            f"no training rows for {family}: the labels and the feature service {feature_service!r} "
            "share no (customer_id, snapshot) pair; rebuild with `clm features build` and `apply`"
        )
    lineage = describe(family, feature_service, frame, split)
    return TrainingSet(family, feature_service, list(features), frame, split, lineage)


def _segment_names(
    frame: pd.DataFrame, column: str | None, vocabulary: tuple[str, ...]
) -> list[str]:
    if column is None or column not in frame.columns:
        return ["unknown"] * len(frame)
    codes = frame[column].fillna(-1).astype(int).to_numpy()
    return [vocabulary[c] if 0 <= c < len(vocabulary) else "unknown" for c in codes]


def describe(
    family: str, feature_service: str, frame: pd.DataFrame, split: OutOfTimeSplit
) -> dict[str, Any]:
    """Dataset lineage logged with the run: service, snapshot range, row counts, label rates."""
    out: dict[str, Any] = {"family": family, "feature_service": feature_service, "splits": {}}
    for name in SPLITS:
        part = frame[frame["split"] == name]
        rates = {}
        for column in label_columns(family):
            values = part[column].dropna()
            if family == "stage":
                idx = stage_index(values)
                rates = {f"stage_next_{s}": float((idx == i).mean()) for i, s in enumerate(STAGES)}
            else:
                rates[column] = float(values.astype(float).mean()) if len(values) else float("nan")
        snaps = getattr(split, name)
        out["splits"][name] = {
            "snapshots": [str(s.date()) for s in snaps],
            "first_snapshot": str(min(snaps).date()),
            "last_snapshot": str(max(snaps).date()),
            "rows": int(len(part)),
            "customers": int(part["customer_id"].nunique()),
            "label_rates": rates,
        }
    return out


def load_training_set(settings: Settings, family: str, *, progress: bool = True) -> TrainingSet:
    """Read labels, ask Feast for the family's feature service rows, split out of time."""
    import pandas as pd

    from features import store

    service = settings.models.family(family).feature_service
    features = list(store.feature_names(settings, service))
    labels = labelled_rows(store.load_labels(settings), family)
    labels["snapshot_ts"] = pd.to_datetime(labels["snapshot_ts"], utc=True)
    split = out_of_time_split(
        list(labels["snapshot_ts"].unique()),
        validation_months=settings.training.validation_months,
        test_months=settings.training.test_months,
    )
    entity_df = labels[["customer_id", "snapshot_ts"]].rename(
        columns={"snapshot_ts": "event_timestamp"}
    )
    feature_rows = store.training_frame(settings, service, entity_df, progress=progress)
    return assemble(
        family, service, features, labels, feature_rows, split, segment_columns(settings)
    )


def segment_columns(settings: Settings) -> dict[str, str]:
    """The feature names holding the value-tier and current-stage codes."""
    from features import store

    columns = store.segment_columns
    if callable(columns):
        columns = columns(settings)
    if isinstance(columns, dict):
        return dict(columns)
    names = list(columns)
    return {"value_tier": names[0], "stage": names[1]}
