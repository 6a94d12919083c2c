"""What monitoring reads: the champion's reference sample from the MLflow registry,
the prediction log (or a batch-scored file), and the registry's version history.

Everything is turned into one shape before comparing: a numeric column per
feature (the feature's own name) and per score (`churn_probability`,
`propensity_<product>`, `stage_prob_<stage>`, `stage_next_code`), plus the
segment columns `value_tier` and `stage` as names. Customer ids are kept only
where a join needs them (performance) and never reach a report.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from clm import mlflow_access
from clm.domain import PROPENSITY_PRODUCTS, STAGES
from clm.errors import ClmError
from clm.segments import UNKNOWN, add_segment_names
from clm.settings import FAMILIES

if TYPE_CHECKING:
    from clm.settings import Settings


class MonitoringInputError(ClmError):
    """A monitoring input (registry version, prediction log, batch file) is missing or unusable."""


@dataclass
class ChampionVersion:
    """The serving champion of one family, with its manifest and reference sample."""

    family: str
    registered_name: str
    version: str
    run_id: str | None
    tags: dict[str, str]
    manifest: dict[str, Any]
    model_dir: Path
    reference: pd.DataFrame = field(repr=False)

    @property
    def features(self) -> list[str]:
        return list(
            self.manifest.get("features") or json.loads(self.tags.get("clm.features", "[]"))
        )


def families(model: str | None) -> list[str]:
    if model is None or model == "all":
        return list(FAMILIES)
    if model not in FAMILIES:
        raise MonitoringInputError(
            f"unknown model {model!r}; use one of {', '.join(FAMILIES)} (or leave --model out)"
        )
    return [model]


def score_columns(family: str, manifest: dict[str, Any] | None = None) -> list[str]:
    """The score columns monitored for a family (names as in the prediction log)."""
    if family == "churn":
        return ["churn_probability"]
    if family == "propensity":
        products = (manifest or {}).get("products") or list(PROPENSITY_PRODUCTS)
        return [f"propensity_{p}" for p in products]
    classes = (manifest or {}).get("classes") or list(STAGES)
    # The predicted next stage as a class code: PSI of the stage distribution.
    return ["stage_next_code", *[f"stage_prob_{c}" for c in classes]]


def load_champion(settings: Settings, family: str, client: Any = None) -> ChampionVersion:
    """The champion version of `family`, its manifest and its validation sample."""
    client = client or mlflow_access.client(settings)
    name = settings.models.family(family).registered_name
    alias = settings.aliases.champion
    try:
        version = client.get_model_version_by_alias(name, alias)
    except Exception as exc:  # MlflowException: no such model or alias
        raise MonitoringInputError(
            f"no {alias!r} version of {name} in the registry at {settings.registry_uri} ({exc}); "
            f"train one with `clm train {family}`"
        ) from None
    local = mlflow_access.download_version(
        settings, name, str(version.version), mlflow_client=client
    )
    manifest_path = local / "manifest.json"
    sample_path = local / "reference" / "validation_sample.parquet"
    if not manifest_path.is_file() or not sample_path.is_file():
        raise MonitoringInputError(
            f"{name} version {version.version} has no manifest.json or reference/validation_sample.parquet "
            f"in {local}; retrain it with `clm train {family}` so monitoring has a reference"
        )
    manifest = json.loads(manifest_path.read_text())
    reference = pd.read_parquet(sample_path)
    return ChampionVersion(
        family=family,
        registered_name=name,
        version=str(version.version),
        run_id=version.run_id,
        tags=dict(version.tags or {}),
        manifest=manifest,
        model_dir=local,
        reference=normalise_reference(reference, family, manifest),
    )


def normalise_reference(frame: pd.DataFrame, family: str, manifest: dict[str, Any]) -> pd.DataFrame:
    """The reference sample in monitoring's shape (features, scores, segments)."""
    out = frame.copy()
    rename = {
        c: c[2:]
        for c in out.columns
        if c.startswith("f_") and c[2:] in manifest.get("features", [])
    }
    out = out.rename(columns=rename)
    if family == "churn" and "churn_probability" not in out.columns:
        for candidate in ("score", "churn_score", "prediction", "score_churn"):
            if candidate in out.columns:
                out["churn_probability"] = out[candidate]
                break
    if family == "propensity":
        for product in manifest.get("products") or PROPENSITY_PRODUCTS:
            target = f"propensity_{product}"
            for candidate in (f"score_{product}", f"score_propensity_{product}", product):
                if target not in out.columns and candidate in out.columns:
                    out[target] = out[candidate]
    if family == "stage":
        classes = manifest.get("classes") or list(STAGES)
        for c in classes:
            target = f"stage_prob_{c}"
            for candidate in (f"score_{c}", f"proba_{c}", f"stage_next_prob_{c}"):
                if target not in out.columns and candidate in out.columns:
                    out[target] = out[candidate]
        probs = [f"stage_prob_{c}" for c in classes]
        if "stage_next_code" not in out.columns and all(p in out.columns for p in probs):
            best = out[probs].to_numpy(float).argmax(axis=1)
            out["stage_next_code"] = [float(STAGES.index(classes[i])) for i in best]
    return add_segment_names(out)


def normalise_log(frame: pd.DataFrame) -> pd.DataFrame:
    """Prediction-log or batch rows in monitoring's shape (features without `f_`)."""
    out = frame.rename(columns={c: c[2:] for c in frame.columns if c.startswith("f_")})
    if "stage_next" in out.columns:
        lookup = {s: float(i) for i, s in enumerate(STAGES)}
        out["stage_next_code"] = out["stage_next"].map(lookup).astype(float)
    if "stage_current" in out.columns:
        out["stage"] = out["stage_current"].fillna(UNKNOWN).astype(str)
    return add_segment_names(out)


# --- the prediction log ---


@dataclass(frozen=True)
class Window:
    start: pd.Timestamp  # inclusive
    end: pd.Timestamp  # exclusive
    label: str


_DAYS = re.compile(r"^(\d+)d$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")


def parse_window(text: str | None, latest: pd.Timestamp, default_days: int) -> Window:
    """`30d` (ending at the latest logged prediction), `YYYY-MM`, or `START:END` dates (END inclusive)."""
    if not text:
        text = f"{default_days}d"
    text = text.strip()
    end_of_latest = latest.floor("D") + pd.Timedelta(days=1)
    if m := _DAYS.match(text):
        days = int(m.group(1))
        return Window(end_of_latest - pd.Timedelta(days=days), end_of_latest, f"last {days} days")
    if _MONTH.match(text) and 1 <= int(text[5:]) <= 12:
        start = pd.Timestamp(f"{text}-01", tz="UTC")
        return Window(start, start + pd.offsets.MonthBegin(1), text)
    if ":" in text:
        a, b = text.split(":", 1)
        try:
            start = pd.Timestamp(a, tz="UTC")
            end = pd.Timestamp(b, tz="UTC") + pd.Timedelta(days=1)
        except ValueError:
            start = end = None  # type: ignore[assignment]
        if start is not None and end > start:
            return Window(start, end, f"{start.date()} to {(end - pd.Timedelta(days=1)).date()}")
    raise MonitoringInputError(
        f"window {text!r} not understood; use e.g. 30d, 2024-05 or 2024-05-01:2024-05-31"
    )


def log_files(settings: Settings) -> list[Path]:
    return sorted(settings.predictions_dir.glob("date=*/*.parquet"))


# Which log rows a verdict judges. Production traffic is what the bank acts on: `/score`
# and batch scoring by the champions. `/score_features` rows carry feature values any API
# key chose (docs/contracts.md) and shadow rows are the challenger's: both are shown apart.
TRAFFIC = ("production", "score_features", "shadow", "all")


def traffic_filter(traffic: str, available: set[str]) -> str:
    """SQL condition selecting one kind of traffic (columns absent in old segments allowed)."""
    if traffic not in TRAFFIC:
        raise MonitoringInputError(f"traffic {traffic!r}: use one of {', '.join(TRAFFIC)}")
    endpoint = "coalesce(endpoint, 'score')" if "endpoint" in available else "'score'"
    role = "coalesce(role, 'champion')" if "role" in available else "'champion'"
    if traffic == "production":
        return f"{endpoint} in ('score', 'batch') and {role} = 'champion'"
    if traffic == "score_features":
        return f"{endpoint} = 'score_features' and {role} = 'champion'"
    if traffic == "shadow":
        return f"{role} = 'shadow'"
    return "true"


def read_prediction_log(
    settings: Settings,
    *,
    window: str | None = None,
    columns: list[str] | None = None,
    before: pd.Timestamp | None = None,
    traffic: str = "production",
) -> tuple[pd.DataFrame, Window]:
    """Scored prediction-log rows in a window (DuckDB over the closed parquet segments).

    `before` instead selects every row logged before that instant (performance).
    `traffic` (TRAFFIC): by default production rows only (`/score` and batch, champions).
    Files written by different model versions may differ in columns: missing
    ones come back as null (union by name). Rows of customers the service did not
    know (`status = 'unknown_customer'`) carry no scores: `unknown_customers` counts them.
    """
    import duckdb

    files = log_files(settings)
    if not files:
        raise MonitoringInputError(
            f"the prediction log {settings.predictions_dir} is empty: score customers with the service "
            "(`clm serve`) or compare a batch-scored file with `--current FILE`"
        )
    con = duckdb.connect()
    try:
        source = f"read_parquet({[str(f) for f in files]!r}, union_by_name=true, hive_partitioning=false)"
        first = con.execute(f"select max(cast(ts as timestamptz)) from {source}").fetchone()
        latest = first[0] if first else None
        if latest is None:
            raise MonitoringInputError(
                f"the prediction log {settings.predictions_dir} holds no rows"
            )
        latest_ts = pd.Timestamp(latest)
        latest_ts = (
            latest_ts.tz_localize("UTC")
            if latest_ts.tzinfo is None
            else latest_ts.tz_convert("UTC")
        )
        if before is not None:
            win = Window(pd.Timestamp("1970-01-01", tz="UTC"), before, f"before {before.date()}")
        else:
            win = parse_window(window, latest_ts, settings.monitoring.default_window_days)
        available = {r[0] for r in con.execute(f"describe select * from {source}").fetchall()}
        wanted = [c for c in columns if c in available] if columns else sorted(available)
        select = ", ".join(f'"{c}"' for c in wanted)
        scored = "and coalesce(status, 'scored') = 'scored'" if "status" in available else ""
        scored += f" and {traffic_filter(traffic, available)}"
        frame = con.execute(
            f"select {select} from {source} where cast(ts as timestamptz) >= ? and cast(ts as timestamptz) < ? {scored}",
            [win.start.to_pydatetime(), win.end.to_pydatetime()],
        ).df()
    finally:
        con.close()
    if "ts" in frame.columns:
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame, win


def read_batch(path: Path) -> pd.DataFrame:
    """A batch-scored parquet (same columns as the prediction log)."""
    if not path.is_file():
        raise MonitoringInputError(
            f"batch-scored file {path} not found; write one with `clm score-batch --out FILE`"
        )
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow errors
        raise MonitoringInputError(f"{path}: not a readable parquet file ({exc})") from None
    if not any(c.startswith("f_") for c in frame.columns):
        raise MonitoringInputError(
            f"{path}: no feature columns (f_<name>); expected the prediction-log columns of docs/contracts.md"
        )
    return frame


def traffic_counts(settings: Settings, window: Window) -> dict[str, int]:
    """Scored rows per kind of traffic in the window (production is what verdicts judge)."""
    import duckdb

    files = log_files(settings)
    if not files:
        return {}
    con = duckdb.connect()
    try:
        source = f"read_parquet({[str(f) for f in files]!r}, union_by_name=true, hive_partitioning=false)"
        available = {r[0] for r in con.execute(f"describe select * from {source}").fetchall()}
        scored = "coalesce(status, 'scored') = 'scored'" if "status" in available else "true"
        counts = {}
        for kind in TRAFFIC[:-1]:
            row = con.execute(
                f"select count(*) from {source} where {scored} and {traffic_filter(kind, available)} "
                "and cast(ts as timestamptz) >= ? and cast(ts as timestamptz) < ?",
                [window.start.to_pydatetime(), window.end.to_pydatetime()],
            ).fetchone()
            counts[kind] = int(row[0]) if row else 0
    finally:
        con.close()
    return counts


def unknown_customers(settings: Settings, window: Window) -> tuple[int, int] | None:
    """(requested, unknown) customers of /score in the window, or None when the log
    does not record unknown customers (segments written before its `status` column).

    Serving logs a row per requested customer: `status` "scored", or
    "unknown_customer" for an id the online store did not know (docs/contracts.md).
    """
    import duckdb

    files = log_files(settings)
    if not files:
        return None
    con = duckdb.connect()
    try:
        source = f"read_parquet({[str(f) for f in files]!r}, union_by_name=true, hive_partitioning=false)"
        available = {r[0] for r in con.execute(f"describe select * from {source}").fetchall()}
        if "status" not in available:
            return None
        row = con.execute(
            f"select count(*) filter (where status is not null), "
            f"count(*) filter (where status = 'unknown_customer') from {source} "
            f"where endpoint = 'score' and {traffic_filter('production', available)} and cast(ts as timestamptz) >= ? and cast(ts as timestamptz) < ?",
            [window.start.to_pydatetime(), window.end.to_pydatetime()],
        ).fetchone()
    finally:
        con.close()
    requested, unknown = (int(row[0]), int(row[1])) if row else (0, 0)
    return (requested, unknown) if requested else None


def served_versions(frame: pd.DataFrame, family: str) -> list[dict[str, Any]]:
    """Which versions of a family answered in the log: first/last time and predictions."""
    column = f"version_{family}"
    if column not in frame.columns or frame.empty:
        return []
    grouped = frame.groupby(frame[column].astype(str))["ts"].agg(["min", "max", "count"])
    return [
        {
            "version": str(v),
            "first": str(row["min"]),
            "last": str(row["max"]),
            "predictions": int(row["count"]),
        }
        for v, row in grouped.sort_values("min").iterrows()
    ]


def registry_history(settings: Settings, family: str, client: Any = None) -> list[dict[str, Any]]:
    """Every registered version of a family: created, aliases, promotion evidence."""
    client = client or mlflow_access.client(settings)
    name = settings.models.family(family).registered_name
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except Exception:  # no such registered model
        return []
    try:
        aliases_by_version: dict[str, list[str]] = {}
        for alias, number in (client.get_registered_model(name).aliases or {}).items():
            aliases_by_version.setdefault(str(number), []).append(alias)
    except Exception:  # an older server without aliases
        aliases_by_version = {}
    out = []
    for v in sorted(versions, key=lambda v: int(v.version)):
        tags = dict(v.tags or {})
        evidence = {k: val for k, val in tags.items() if "promot" in k or "rollback" in k}
        out.append(
            {
                "version": str(v.version),
                "created": dt.datetime.fromtimestamp(
                    v.creation_timestamp / 1000, tz=dt.UTC
                ).isoformat(timespec="seconds"),
                "aliases": sorted(aliases_by_version.get(str(v.version), [])),
                "run_id": v.run_id,
                "evidence": evidence,
            }
        )
    return out
