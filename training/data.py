"""Training sets from the Feast feature services, split out of time.

Train on older snapshots, validate on the next `validation_months`, test on the
latest fully labelled `test_months`: the model is always judged on months it has
never seen, as it will be in production. A customer-snapshot row belongs to
exactly one split.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from clm import segments
from clm.domain import STAGES
from clm.errors import ClmError
from clm.families import spec as family_spec
from clm.progress import step_progress

if TYPE_CHECKING:
    import pandas as pd

    from clm.settings import Settings

SPLITS = ("train", "validation", "test")
# Entity rows per Feast point-in-time join: bounds the offline store's working memory
# (~0.5 GB + 3.5 GB per million rows on DuckDB) at the cost of ~10 s of setup per chunk.
FETCH_CHUNK_ROWS = 250_000


class TrainingDataError(ClmError):
    """The feature store cannot give a usable training set."""


def label_columns(family: str) -> list[str]:
    """The label columns a family learns from (see docs/contracts.md, labels)."""
    return list(family_spec(family).label_columns)


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
    """One family's rows: ids, `split`, features (float32 in memory), labels and segments."""

    family: str
    feature_service: str
    features: list[str]
    frame: pd.DataFrame
    split: OutOfTimeSplit
    lineage: dict[str, Any] = field(default_factory=dict)

    def part(self, name: str) -> pd.DataFrame:
        """One split's rows, features as float64 (what serving sends and models are logged with)."""
        part = self.frame[self.frame["split"] == name]
        return part.astype(dict.fromkeys(self.features, "float64"))


def stage_index(values: pd.Series) -> np.ndarray:
    """Stage labels as class indices in `STAGES` order (-1 when missing or unknown)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(values):
        return values.fillna(-1).astype(int).to_numpy()
    lookup = {name: i for i, name in enumerate(STAGES)}
    return values.map(lookup).fillna(-1).astype(int).to_numpy()


def labelled_mask(labels: pd.DataFrame, family: str) -> np.ndarray:
    """Which label rows have a complete horizon for this family (and a customer still scored)."""
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
    if family == "stage" and "stage" in labels.columns:
        # "Churned stays churned" would flatter the stage metrics. Churn and propensity
        # keep these rows: batch scoring scores every customer, and no customer may be
        # scored by a model trained without anyone like them.
        keep &= labels["stage"].astype(str) != "churned"
    return keep.to_numpy(dtype=bool)


def unsupported_reason(settings: Settings, labels: pd.DataFrame, family: str) -> str | None:
    """Why the data cannot train `family` (one line), or None when it can.

    Checked on the labels before any feature is fetched, so `clm train all` trains what
    the data supports and says why it skips the rest.
    """
    if family == "propensity" and not (settings.raw_dir / "holdings.parquet").is_file():
        return "no holdings table was ingested (product adoption cannot be observed)"
    columns = label_columns(family)
    if any(c not in labels.columns for c in columns):
        return f"the labels lack {', '.join(c for c in columns if c not in labels.columns)}"
    own = labels.loc[labelled_mask(labels, family)]
    if own.empty:
        return "no snapshot has a complete 90-day outcome yet; ingest more months"
    try:
        split = out_of_time_split(
            list(own["snapshot_ts"].unique()),
            validation_months=settings.training.validation_months,
            test_months=settings.training.test_months,
        )
    except TrainingDataError as exc:
        return str(exc)
    names = own["snapshot_ts"].map(split.of)
    for name in ("train", "validation", "test"):
        part = own.loc[names == name, columns]
        if family == "stage":
            both = part[columns[0]].dropna().nunique() >= 2
        else:
            both = any(part[c].dropna().nunique() >= 2 for c in columns)
        if not both:
            return f"the {name} split has only one outcome of {', '.join(columns)}"
    return None


def labelled_rows(labels: pd.DataFrame, family: str) -> pd.DataFrame:
    """Label rows whose horizon is complete for this family."""
    return labels.loc[labelled_mask(labels, family)].reset_index(drop=True)


def assemble(
    family: str,
    feature_service: str,
    features: list[str],
    labels: pd.DataFrame,
    feature_rows: pd.DataFrame,
    split: OutOfTimeSplit,
) -> TrainingSet:
    """Join features to labels on (customer_id, snapshot_ts) and tag each row with its split.

    `feature_rows` has `customer_id`, `event_timestamp` (= snapshot_ts) and the
    features; the segments (`clm.segments`) are named from the labels' current stage
    and the value-tier code feature.
    """
    import pandas as pd

    missing = [f for f in features if f not in feature_rows.columns]
    if missing:
        raise TrainingDataError(
            f"feature service {feature_service!r} returned no column(s) {missing}; "
            "run `clm features apply` so the store matches the definitions"
        )
    keep = ["customer_id", "snapshot_ts", *label_columns(family)]
    for extra in ("stage", "churn_90d"):
        if extra in labels.columns and extra not in keep:
            keep.append(extra)
    # Rows outside the split are dropped from the (small) labels before the join, so the
    # wide feature rows are copied once, not once per step.
    lab = labels[keep].reset_index(drop=True)
    lab["snapshot_ts"] = pd.to_datetime(lab["snapshot_ts"], utc=True)
    lab["split"] = lab["snapshot_ts"].map(split.of)
    lab = lab[lab["split"].notna()].reset_index(drop=True)
    # float32 halves the memory of the widest block; LightGBM bins the values anyway.
    values = feature_rows[features].astype("float32", copy=False)
    ts_column = "event_timestamp" if "event_timestamp" in feature_rows.columns else "snapshot_ts"
    keys = pd.DataFrame(
        {
            "customer_id": feature_rows["customer_id"].astype(str).to_numpy(),
            "snapshot_ts": _instants(feature_rows[ts_column]),
        }
    )
    lab["customer_id"] = lab["customer_id"].astype(str)
    if len(lab) == len(keys) and (
        np.array_equal(lab["customer_id"].to_numpy(), keys["customer_id"].to_numpy())
        and np.array_equal(_instants(lab["snapshot_ts"]), keys["snapshot_ts"].to_numpy())
    ):
        # Same rows in the same order (the store was asked for exactly these): no join needed.
        frame = pd.concat([lab, values.reset_index(drop=True)], axis=1)
    else:
        if keys.duplicated().any():
            raise TrainingDataError(
                f"feature service {feature_service!r} returned duplicate (customer_id, snapshot) "
                "rows; rebuild with `clm features build`"
            )
        keys["__row"] = np.arange(len(keys))
        lab["__ts"] = _instants(lab["snapshot_ts"])
        joined = lab.merge(
            keys.rename(columns={"snapshot_ts": "__ts"}), on=["customer_id", "__ts"], how="inner"
        ).drop(columns="__ts")
        rows = joined.pop("__row").to_numpy()
        frame = pd.concat([joined, values.iloc[rows].reset_index(drop=True)], axis=1)
    if "stage" in frame.columns:
        frame["stage"] = segments.names_from_codes(stage_index(frame["stage"]), "stage")
    segments.add_segment_names(frame)
    if frame.empty:
        raise TrainingDataError(
            f"no training rows for {family}: the labels and the feature service {feature_service!r} "
            "share no (customer_id, snapshot) pair; rebuild with `clm features build` and `apply`"
        )
    lineage = describe(family, feature_service, frame, split)
    return TrainingSet(family, feature_service, list(features), frame, split, lineage)


def _instants(values: pd.Series) -> np.ndarray:
    """Timestamps as naive UTC datetime64[ns], whatever their unit or zone: comparable keys."""
    import pandas as pd

    return pd.to_datetime(values, utc=True).dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def describe(
    family: str, feature_service: str, frame: pd.DataFrame, split: OutOfTimeSplit
) -> dict[str, Any]:
    """Dataset lineage logged with the run: service, snapshot range, row counts, label rates."""
    out: dict[str, Any] = {"family": family, "feature_service": feature_service, "splits": {}}
    split_of = frame["split"].to_numpy()
    for name in SPLITS:
        # Only the id and label columns: a copy of all columns of the training split
        # would be the largest transient of the whole run.
        part = frame.loc[split_of == name, ["customer_id", *label_columns(family)]]
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
    return next(iter(load_training_sets(settings, (family,), progress=progress)))


def load_training_sets(
    settings: Settings, families: Sequence[str], *, progress: bool = True
) -> Iterator[TrainingSet]:
    """The families' training sets one at a time, fetching each feature set from Feast once.

    Families whose feature services serve the same features (today all three) share one
    point-in-time join over the union of their labelled rows; each family then takes its
    own rows. Only one family's set is alive beside the shared rows at any time, so
    consume (and drop) each before asking for the next.
    """
    import pandas as pd

    from features import store

    labels = store.load_labels(settings)
    labels["snapshot_ts"] = pd.to_datetime(labels["snapshot_ts"], utc=True)
    labels["customer_id"] = labels["customer_id"].astype(str)
    services = {f: settings.models.family(f).feature_service for f in families}
    groups: dict[tuple[str, ...], list[str]] = {}
    for family in families:
        names = tuple(store.feature_names(settings, services[family]))
        groups.setdefault(names, []).append(family)
    for names, members in groups.items():
        masks = {f: labelled_mask(labels, f) for f in members}
        union = np.logical_or.reduce(list(masks.values()))
        shared = labels.loc[union].reset_index(drop=True)
        rows = fetch_features(
            settings, services[members[0]], shared[["customer_id", "snapshot_ts"]], progress
        )
        for i, family in enumerate(members):
            keep = masks[family][union]
            own = shared.loc[keep].reset_index(drop=True)
            split = out_of_time_split(
                list(own["snapshot_ts"].unique()),
                validation_months=settings.training.validation_months,
                test_months=settings.training.test_months,
            )
            own_rows = rows if keep.all() else rows.loc[keep].reset_index(drop=True)
            if i == len(members) - 1:
                rows = shared = None  # the last family needs the shared rows no more
            training_set = assemble(family, services[family], list(names), own, own_rows, split)
            del own, own_rows
            yield training_set
            del training_set


def fetch_features(
    settings: Settings, service: str, entities: pd.DataFrame, progress: bool = True
) -> pd.DataFrame:
    """Feast's point-in-time rows of `service` for `entities` (customer_id, snapshot_ts), in
    their order, features as float32, asked for `FETCH_CHUNK_ROWS` rows at a time.

    One join over every row makes the offline store hold several copies of the whole
    result (2.3 GB for 0.5M rows); chunks bound that to one chunk's worth.
    """
    import pandas as pd

    from features import store

    names = list(store.feature_names(settings, service))
    starts = range(0, len(entities), FETCH_CHUNK_ROWS)
    # Filled in place chunk by chunk: a list of chunks concatenated at the end would hold
    # the whole result twice.
    values = np.empty((len(entities), len(names)), dtype=np.float32)
    keys = entities[["customer_id", "snapshot_ts"]].reset_index(drop=True)
    with step_progress(
        f"training set {service}: {len(entities):,} rows", len(starts), progress, transient=True
    ) as advance:
        for start in starts:
            chunk = keys.iloc[start : start + FETCH_CHUNK_ROWS].rename(
                columns={"snapshot_ts": "event_timestamp"}
            )
            got = store.training_frame(settings, service, chunk, progress=False)
            if len(got) != len(chunk) or not np.array_equal(
                got["customer_id"].astype(str).to_numpy(),
                chunk["customer_id"].astype(str).to_numpy(),
            ):
                raise TrainingDataError(
                    f"feature service {service!r} did not return one row per entity in order "
                    f"(rows {start}..{start + len(chunk) - 1}); run `clm features apply`"
                )
            values[start : start + len(chunk)] = got[names].to_numpy(dtype=np.float32)
            del got
            advance()
    out = pd.DataFrame(values, columns=names, copy=False)
    out.insert(0, "event_timestamp", keys["snapshot_ts"].to_numpy())
    out.insert(0, "customer_id", keys["customer_id"].to_numpy())
    return out
