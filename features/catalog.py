"""The feature catalogue: every feature, its group and its definition.

The pipeline's SQL produces exactly these columns (checked at build time), the
Feast definitions declare one feature view per group from this list, and
docs/features.md describes the same list. Windows `_1m/_3m/_6m` are the last 1, 3
and 6 calendar months before the snapshot (the 30/90/180-day windows aligned on
month ends, so every snapshot sees whole months).
"""

from __future__ import annotations

from dataclasses import dataclass

from clm.domain import PRODUCTS


@dataclass(frozen=True)
class Feature:
    name: str
    group: str
    definition: str
    dtype: str = "float"  # "float" or "int" (codes and flags; -1 / NULL when unknown)


def _features() -> tuple[Feature, ...]:
    f: list[Feature] = []

    def add(group: str, name: str, definition: str, dtype: str = "float") -> None:
        f.append(Feature(name, group, definition, dtype))

    # profile
    add("profile", "age", "Age in years at the snapshot (snapshot year - birth year).")
    add(
        "profile",
        "tenure_months",
        "Months since the relationship started (signup date, else first transaction).",
    )
    add(
        "profile",
        "value_tier_code",
        "Value tier code (clm.domain.VALUE_TIERS): tier at signup, else by AUM thresholds.",
        "int",
    )
    add(
        "profile",
        "acquisition_channel_code",
        "Acquisition channel code (ACQUISITION_CHANNELS), -1 unknown.",
        "int",
    )
    add("profile", "segment_code", "Life-situation group code (SEGMENTS), -1 unknown.", "int")
    add("profile", "region_code", "Region code (REGIONS), -1 unknown.", "int")
    add("profile", "is_payroll", "1 when salary is paid through the bank (payroll customer).")
    add(
        "profile",
        "honeymoon_flag",
        "1 within the honeymoon period (lifecycle_rules.yaml) after the start.",
    )
    # activity
    for w in ("1m", "3m", "6m"):
        add("activity", f"txn_count_{w}", f"Number of transactions in the last {w[0]} month(s).")
        add("activity", f"inflow_{w}", f"Sum of incoming amounts in the last {w[0]} month(s).")
        add(
            "activity",
            f"outflow_{w}",
            f"Sum of outgoing amounts (positive) in the last {w[0]} month(s).",
        )
        add("activity", f"net_flow_{w}", f"Inflow - outflow in the last {w[0]} month(s).")
    add("activity", "days_since_last_txn", "Days from the last transaction to the snapshot.")
    add(
        "activity",
        "activity_change_3m",
        "Transactions in the last 3 months vs the 3 before, relative change.",
    )
    add("activity", "avg_txn_amount_3m", "Mean absolute transaction amount over the last 3 months.")
    add("activity", "max_outflow_1m", "Largest single outgoing amount in the last month.")
    add(
        "activity",
        "digital_share_3m",
        "Share of transactions through app or online in the last 3 months.",
    )
    add("activity", "branch_share_3m", "Share of transactions at a branch in the last 3 months.")
    add("activity", "atm_share_3m", "Share of ATM transactions in the last 3 months.")
    add("activity", "pos_share_3m", "Share of card (POS) transactions in the last 3 months.")
    add("activity", "card_spend_3m", "Card spending over the last 3 months (positive).")
    add("activity", "salary_amount_3m", "Salary received over the last 3 months.")
    add("activity", "salary_regularity_6m", "Share of the last 6 months with a salary credit.")
    add("activity", "investment_outflow_3m", "Money moved into investments over the last 3 months.")
    # balances
    add(
        "balances",
        "aum",
        "Assets under management at the last month end (all non-credit products).",
    )
    add("balances", "debt_balance", "Outstanding credit card, consumer loan and mortgage balances.")
    for w in ("1m", "3m", "6m"):
        add(
            "balances",
            f"aum_change_{w}",
            f"Relative AUM change over {w[0]} month(s): (aum - aum then) / max(|aum then|, 1).",
        )
    add(
        "balances",
        "aum_trend_6m",
        "Slope of month-end AUM over the last 6 months, divided by its mean.",
    )
    add("balances", "aum_drawdown_6m", "1 - AUM / highest month-end AUM of the last 6 months.")
    add("balances", "deposit_share", "Share of AUM in current account and time deposits.")
    add(
        "balances",
        "investment_share",
        "Share of AUM in wealth management, mutual funds, insurance, pension.",
    )
    add("balances", "current_account_balance", "Current account balance at the last month end.")
    add("balances", "time_deposit_balance", "Time deposit balance at the last month end.")
    # holdings
    add("holdings", "n_products", "Number of products held (open) at the snapshot.")
    for p in PRODUCTS:
        add("holdings", f"holds_{p}", f"1 when a {p.replace('_', ' ')} is open at the snapshot.")
    add("holdings", "months_since_last_opening", "Months since the latest product opening.")
    add("holdings", "openings_3m", "Products opened in the last 3 months.")
    add("holdings", "closures_3m", "Products closed in the last 3 months.")
    # digital
    add("digital", "logins_1m", "App sessions in the last month.")
    add("digital", "logins_3m", "App sessions in the last 3 months.")
    add("digital", "days_since_last_login", "Days from the last app session to the snapshot.")
    add(
        "digital",
        "login_trend",
        "App sessions last month vs the monthly mean of the 2 months before (relative).",
    )
    add("digital", "avg_session_seconds_3m", "Mean app session duration over the last 3 months.")
    # moments of truth (also the push source's view: real-time events overwrite them)
    add(
        "moments",
        "salary_stopped_flag",
        "1 when salary came regularly before but not in the last month.",
    )
    add(
        "moments", "large_outflow_flag", "1 when a single outflow last month was large against AUM."
    )
    add(
        "moments",
        "deposit_maturing_flag",
        "1 when a time deposit reaches its yearly term within 30 days.",
    )
    add(
        "moments",
        "app_quiet_flag",
        "1 when the app was used in the 2 months before the last but not in the last.",
    )
    # history: the whole purchase history on transaction days (BG/NBD's x, t_x, T and more)
    add(
        "history",
        "history_frequency",
        "Repeat transaction days over the whole history (distinct transaction days - 1).",
    )
    add(
        "history",
        "history_recency_days",
        "Days from the first to the last transaction day (0 for a single day).",
    )
    add("history", "history_age_days", "Days from the first transaction day to the snapshot.")
    add(
        "history",
        "history_txn_days_per_30d",
        "Repeat transaction days per 30 days since the first transaction.",
    )
    add(
        "history",
        "history_recency_share",
        "Recency / age: where in the relationship the last transaction fell (1 = just now).",
    )
    add("history", "gap_mean_days", "Mean days between consecutive transaction days.")
    add("history", "gap_std_days", "Standard deviation of the days between transaction days.")
    add(
        "history",
        "days_since_last_over_gap",
        "Days since the last transaction day over the customer's usual (mean) gap.",
    )
    add("history", "monetary_mean", "Mean absolute amount per transaction over the whole history.")
    add("history", "txn_per_txn_day", "Transactions per transaction day over the whole history.")
    add(
        "history",
        "bgnbd_p_alive",
        "BG/NBD probability the customer is still active (model fitted per snapshot).",
    )
    add(
        "history",
        "bgnbd_p_quiet_90d",
        "BG/NBD probability of no transaction in the next 90 days (fitted per snapshot).",
    )
    # stage
    add(
        "stage",
        "stage_code",
        "Current lifecycle stage code (STAGES) from lifecycle_rules.yaml.",
        "int",
    )
    return tuple(f)


FEATURES: tuple[Feature, ...] = _features()
GROUPS: tuple[str, ...] = (
    "profile",
    "activity",
    "balances",
    "holdings",
    "digital",
    "moments",
    "history",
    "stage",
)
FEATURE_NAMES: tuple[str, ...] = tuple(x.name for x in FEATURES)
# Where the pipeline writes the feature table and the labels (under settings.feature_dir).
FEATURE_FILE = "customer_features.parquet"
LABEL_FILE = "labels.parquet"
BUILD_INFO_FILE = "build.json"
ENTITY_KEY = "customer_id"
TIMESTAMP_FIELD = "event_timestamp"


def group_features(group: str) -> list[Feature]:
    return [x for x in FEATURES if x.group == group]


# Feature services: the only contract between training and serving.
# `_v1` are kept as they were for the versions trained on them; `_v2` add the whole-history
# purchase pattern (group `history`), which carries over to scoring dates beyond training.
_V1 = ("profile", "activity", "balances", "holdings", "digital", "moments", "stage")
SERVICES: dict[str, tuple[str, ...]] = {
    "churn_v1": _V1,
    "propensity_v1": _V1,
    "stage_v1": _V1,
    "churn_v2": GROUPS,
    "propensity_v2": GROUPS,
    "stage_v2": GROUPS,
}
PUSH_SOURCE = "customer_events_push"
# Moments of truth are also the push source's view: a real-time event overwrites them.
PUSH_GROUP = "moments"
# A feature row stays valid for a point-in-time join for a little over a month (monthly snapshots).
FEATURE_TTL_DAYS = 45


def view_name(group: str) -> str:
    return f"customer_{group}"


def feast_objects(feature_path: str, offline_store: str = "duckdb") -> dict[str, object]:
    """The Feast definitions over the feature table at `feature_path`, by object name; the
    source is a file source, or a Spark source for Feast's Spark offline store.

    Imported lazily (Feast is heavy); features/definitions.py exposes them to `feast` commands.
    """
    from datetime import timedelta

    from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
    from feast.data_source import DataSource
    from feast.types import Float64

    customer = Entity(
        name="customer",
        join_keys=[ENTITY_KEY],
        value_type=ValueType.STRING,
        description="A retail bank customer (string id, e.g. C0000042).",
    )
    description = "Monthly snapshot feature table built by `clm features build`."
    source: DataSource
    if offline_store == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
            SparkSource,
        )

        source = SparkSource(
            name="customer_features_source",
            path=feature_path,
            file_format="parquet",
            timestamp_field=TIMESTAMP_FIELD,
            description=description,
        )
    else:
        source = FileSource(
            name="customer_features_source",
            path=feature_path,
            timestamp_field=TIMESTAMP_FIELD,
            description=description,
        )
    push = PushSource(name=PUSH_SOURCE, batch_source=source)
    objects: dict[str, object] = {
        "customer": customer,
        "customer_features_source": source,
        PUSH_SOURCE: push,
    }
    views: dict[str, FeatureView] = {}
    for group in GROUPS:
        views[group] = FeatureView(
            name=view_name(group),
            entities=[customer],
            ttl=timedelta(days=FEATURE_TTL_DAYS),
            # All features are Float64: codes and flags too (NaN when missing, as models see them).
            schema=[
                Field(name=f.name, dtype=Float64, description=f.definition)
                for f in group_features(group)
            ],
            source=push if group == PUSH_GROUP else source,
            online=True,
            tags={"group": group},
        )
        objects[view_name(group)] = views[group]
    for service, groups in SERVICES.items():
        objects[service] = FeatureService(name=service, features=[views[g] for g in groups])
    return objects


def service_feature_names(service: str) -> list[str]:
    """Ordered feature names of a service (view order, then feature order within a view)."""
    if service not in SERVICES:
        raise KeyError(service)
    return [f.name for g in SERVICES[service] for f in group_features(g)]
