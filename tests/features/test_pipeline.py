"""Feature pipeline: contract of the tables, point-in-time correctness, labels, rules."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from clm.domain import PROPENSITY_PRODUCTS, STAGES
from clm.settings import Settings
from features.catalog import FEATURE_FILE, FEATURE_NAMES, FEATURES, GROUPS, LABEL_FILE
from features.pipeline import FeatureBuildError, load_rules, run_build
from tests.features.tiny_bank import write_tiny_bank


def _settings(home: Path) -> Settings:
    return Settings.load(home=home, env={})


def _features(settings: Settings) -> pd.DataFrame:
    return pd.read_parquet(settings.feature_dir / FEATURE_FILE)


def _labels(settings: Settings) -> pd.DataFrame:
    return pd.read_parquet(settings.feature_dir / LABEL_FILE)


def test_feature_table_follows_the_contract(feature_settings: Settings) -> None:
    f = _features(feature_settings)
    assert list(f.columns) == ["customer_id", "event_timestamp", *FEATURE_NAMES]
    assert 50 <= len(FEATURE_NAMES) <= 80
    assert str(f["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert all(str(f[n].dtype) == "float64" for n in FEATURE_NAMES)
    assert not f.duplicated(["customer_id", "event_timestamp"]).any()
    # Snapshot timestamps are first instants of months (data of the month before).
    ts = f["event_timestamp"].drop_duplicates()
    assert (ts.dt.day == 1).all() and (ts.dt.hour == 0).all()
    # Every group is populated by the simulator's full raw tables.
    for group in GROUPS:
        cols = [x.name for x in FEATURES if x.group == group]
        assert f[cols].notna().any().all(), f"group {group} has an all-missing feature"
    # Codes are indices of clm.domain vocabularies; the stage code is always known.
    assert set(f["stage_code"].unique()) <= set(range(len(STAGES)))
    assert f["value_tier_code"].between(-1, 2).all()


def test_churned_customers_have_no_rows_after_churn(feature_settings: Settings) -> None:
    f = _features(feature_settings)
    hold = pd.read_parquet(feature_settings.raw_dir / "holdings.parquet")
    hold["closed_date"] = pd.to_datetime(hold["closed_date"])
    hold["opened_date"] = pd.to_datetime(hold["opened_date"])
    f = f.sample(3000, random_state=1)
    t = f["event_timestamp"].dt.tz_localize(None)
    merged = f[["customer_id"]].assign(t=t.values).merge(hold, on="customer_id")
    merged["open"] = (merged.opened_date < merged.t) & (
        merged.closed_date.isna() | (merged.closed_date >= merged.t)
    )
    assert merged.groupby(["customer_id", "t"])["open"].any().all()


def test_labels_follow_the_contract(feature_settings: Settings) -> None:
    f = _features(feature_settings)
    lab = _labels(feature_settings)
    expected = [
        "customer_id",
        "snapshot_ts",
        "churn_90d",
        *[f"adopt_{p}_90d" for p in PROPENSITY_PRODUCTS],
        "stage",
        "stage_next",
    ]
    assert list(lab.columns) == expected
    assert len(lab) == len(f)
    # Written in a fixed order: training rows follow it, so a rebuild trains the same model.
    ordered = lab.sort_values(["snapshot_ts", "customer_id"], kind="stable")
    assert (lab.index == ordered.index).all()
    assert set(lab["stage"]) <= set(STAGES)
    assert set(lab["stage_next"].dropna()) <= set(STAGES)
    last = lab["snapshot_ts"].max()
    # The 90-day horizon past the data's end: unlabeled, not negative.
    late = lab["snapshot_ts"] + timedelta(days=90) > last
    assert lab.loc[late, "churn_90d"].isna().all()
    assert lab.loc[late, [f"adopt_{p}_90d" for p in PROPENSITY_PRODUCTS]].isna().all().all()
    assert lab.loc[~late, "churn_90d"].notna().all()
    assert lab.loc[lab["snapshot_ts"] > last - pd.DateOffset(months=3), "stage_next"].isna().all()
    # Adoption is only labelled for customers not holding the product at t.
    joined = lab.merge(
        f, left_on=["customer_id", "snapshot_ts"], right_on=["customer_id", "event_timestamp"]
    )
    for p in PROPENSITY_PRODUCTS:
        held = joined[f"holds_{p}"] == 1
        assert joined.loc[held, f"adopt_{p}_90d"].isna().all()
        assert joined.loc[~held & ~late.values, f"adopt_{p}_90d"].notna().all()
    # The current stage in the labels is the stage feature.
    assert (joined["stage"] == joined["stage_code"].astype(int).map(dict(enumerate(STAGES)))).all()


def _truncate_raw(src: Path, dst: Path, t: pd.Timestamp) -> None:
    """Copy raw tables keeping only what was known before `t` (and garble nothing before)."""
    shutil.copytree(src, dst)
    day = t.date()
    for name in ("transactions", "app_sessions"):
        table = ds.dataset(src / name, format="parquet", partitioning="hive").to_table()
        df = table.to_pandas()
        keep = df[df["timestamp"] < t]
        shutil.rmtree(dst / name)
        (dst / name / "month=all").mkdir(parents=True)
        cols = [c for c in table.schema.names if c != "month"]
        pq.write_table(
            pa_table(keep[cols], table.schema, cols), dst / name / "month=all" / "part-0.parquet"
        )
    bal = ds.dataset(src / "balances", format="parquet", partitioning="hive").to_table()
    bdf = bal.to_pandas()
    bcols = [c for c in bal.schema.names if c != "month"]
    shutil.rmtree(dst / "balances")
    (dst / "balances" / "month=all").mkdir(parents=True)
    pq.write_table(
        pa_table(bdf[bdf["month_end"] < day][bcols], bal.schema, bcols),
        dst / "balances" / "month=all" / "part-0.parquet",
    )
    hold = pq.read_table(src / "holdings.parquet")
    hdf = hold.to_pandas()
    hdf = hdf[hdf["opened_date"] < day].copy()
    # A closure after t was not known at t: the holding was still open then.
    hdf.loc[hdf["closed_date"].notna() & (hdf["closed_date"] >= day), "closed_date"] = None
    pq.write_table(pa_table(hdf, hold.schema, hold.schema.names), dst / "holdings.parquet")
    cust = pq.read_table(src / "customers.parquet")
    cdf = cust.to_pandas()
    if "signup_date" in cdf:
        cdf = cdf[cdf["signup_date"] < day]
    pq.write_table(pa_table(cdf, cust.schema, cust.schema.names), dst / "customers.parquet")
    shutil.rmtree(dst / "truth", ignore_errors=True)


def pa_table(df: pd.DataFrame, schema, cols):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    fields = [schema.field(c) for c in cols]
    return pa.Table.from_pandas(
        df.reset_index(drop=True), schema=pa.schema(fields), preserve_index=False
    )


def test_features_at_t_use_only_data_before_t(feature_settings: Settings, tmp_path: Path) -> None:
    """Delete everything at or after a snapshot t: the features at t and before do not move."""
    full = _features(feature_settings)
    snaps = sorted(full["event_timestamp"].unique())
    t = pd.Timestamp(snaps[len(snaps) // 2])
    cut = _settings(tmp_path / "cut")
    _truncate_raw(feature_settings.raw_dir, cut.raw_dir, t)
    run_build(cut, progress=False)
    before = (
        full[full["event_timestamp"] <= t]
        .sort_values(["event_timestamp", "customer_id"])
        .reset_index(drop=True)
    )
    after = _features(cut)
    after = (
        after[after["event_timestamp"] <= t]
        .sort_values(["event_timestamp", "customer_id"])
        .reset_index(drop=True)
    )
    assert len(before) > 1000
    pd.testing.assert_frame_equal(before, after, check_exact=False, rtol=1e-9)
    # The future does exist in the full data: rows after t differ (the test can fail).
    assert (full["event_timestamp"] > t).any()


def test_mandatory_columns_only(tmp_path: Path) -> None:
    """Ingested data with only customer_id/timestamp/amount: same columns, NaN where data is absent."""
    s = _settings(tmp_path)
    write_tiny_bank(s.raw_dir, mandatory_only=True)
    summary = run_build(s, progress=False)
    assert summary["rows"] > 0
    f = _features(s)
    assert list(f.columns) == ["customer_id", "event_timestamp", *FEATURE_NAMES]
    for name in ("txn_count_3m", "inflow_6m", "days_since_last_txn", "tenure_months", "stage_code"):
        assert f[name].notna().all(), name
    for name in (
        "aum",
        "holds_mortgage",
        "logins_1m",
        "digital_share_3m",
        "salary_regularity_6m",
        "age",
    ):
        assert f[name].isna().all(), name
    lab = _labels(s)
    # Without holdings, churn falls back to "no transaction in the next 90 days".
    assert lab["churn_90d"].notna().any()
    assert lab[[f"adopt_{p}_90d" for p in PROPENSITY_PRODUCTS]].isna().all().all()


def test_labels_against_a_hand_computation(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    write_tiny_bank(s.raw_dir, customers=60, seed=3)
    run_build(s, progress=False)
    lab = _labels(s)
    hold = pd.read_parquet(s.raw_dir / "holdings.parquet")
    for col in ("opened_date", "closed_date"):
        hold[col] = pd.to_datetime(hold[col])
    end = lab["snapshot_ts"].max().tz_localize(None)

    def open_at(cid: str, when: pd.Timestamp, product: str | None = None) -> bool:
        h = hold[hold.customer_id == cid]
        if product:
            h = h[h["product"] == product]
        return bool(
            ((h.opened_date < when) & (h.closed_date.isna() | (h.closed_date >= when))).any()
        )

    checked_churn = checked_adopt = 0
    for row in lab.itertuples():
        t = row.snapshot_ts.tz_localize(None)
        assert open_at(row.customer_id, t)  # a row exists only while a holding is open
        h90 = t + timedelta(days=90)
        if h90 > end:
            assert pd.isna(row.churn_90d)
            continue
        assert row.churn_90d == (0 if open_at(row.customer_id, h90) else 1)
        checked_churn += row.churn_90d
        p = "insurance"
        value = getattr(row, f"adopt_{p}_90d")
        if open_at(row.customer_id, t, p):
            assert pd.isna(value)
        else:
            h = hold[(hold.customer_id == row.customer_id) & (hold["product"] == p)]
            assert value == int(((h.opened_date >= t) & (h.opened_date < h90)).any())
            checked_adopt += int(value)
    assert checked_churn > 0 and checked_adopt > 0
    # A customer whose holdings all closed is 'churned' at the next stage.
    assert (lab["stage_next"] == "churned").any()


def test_stage_rules_are_validated_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = load_rules()
    assert [r["stage"] for r in rules["stages"]][0] == "churned"
    bad = tmp_path / "rules.yaml"
    bad.write_text(
        "stages:\n  - stage: sleepy\n    when: 'true'\ndefault: growing\nmoments: {}\nvalue_tiers: {}\n"
    )
    with pytest.raises(FeatureBuildError, match="unknown stage 'sleepy'"):
        load_rules(bad)


def test_a_failed_build_leaves_the_previous_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _settings(tmp_path)
    write_tiny_bank(s.raw_dir)
    run_build(s, progress=False)
    before = _features(s)
    rules = Path(__file__).resolve().parents[2] / "features" / "lifecycle_rules.yaml"
    broken = tmp_path / "rules.yaml"
    broken.write_text(
        rules.read_text().replace("days_since_last_txn >= 90", "no_such_feature >= 90")
    )
    monkeypatch.setattr("features.pipeline.RULES_FILE", broken)
    with pytest.raises(FeatureBuildError, match="rules.yaml: a stage rule does not evaluate"):
        run_build(s, progress=False)
    pd.testing.assert_frame_equal(before, _features(s))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_missing_raw_data_is_a_clear_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(FeatureBuildError, match="run `clm simulate` or `clm ingest`"):
        run_build(settings, progress=False)
    assert not settings.feature_dir.exists()  # nothing half-written, no staging left behind
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_catalogue_documents_every_feature() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "features.md").read_text()
    missing = [name for name in FEATURE_NAMES if f"`{name}`" not in doc]
    assert missing == []


def test_label_positives_match_the_simulators_ground_truth(feature_settings: Settings) -> None:
    """The simulator counts its own churn and adoption events per labelled snapshot; our
    labels, computed from the raw holdings only, must find exactly the same events."""
    import json

    meta = json.loads((feature_settings.raw_dir / "meta.json").read_text())
    if "oracle_positives" not in meta:
        pytest.skip("the simulator's meta.json carries no oracle_positives")
    lab = _labels(feature_settings)
    ours = {k: int(lab[k].sum()) for k in meta["oracle_positives"]}
    assert ours == meta["oracle_positives"]
    assert ours["churn_90d"] > 0


def _write_transactions(raw: Path, rows: list[tuple[str, str, float]]) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).astype("datetime64[us, UTC]")
    frame.to_parquet(raw / "transactions.parquet", index=False)


def test_history_features_and_missing_is_not_zero(tmp_path: Path) -> None:
    """A transaction-only log: whole-history features by hand, and nobody `churned` on an
    unknown balance (missing is not zero), nor flagged for a large outflow."""
    s = _settings(tmp_path)
    _write_transactions(
        s.raw_dir,
        [
            # A: transaction days Jan 5 (twice), Jan 15, Feb 4, then silence.
            ("A", "2024-01-05 09:00", 10.0),
            ("A", "2024-01-05 17:00", 30.0),
            ("A", "2024-01-15 12:00", -20.0),
            ("A", "2024-02-04 08:00", 40.0),
            # B: one purchase, then a purchase nine months later (the period's end).
            ("B", "2024-01-10 10:00", 50.0),
            ("B", "2024-10-20 10:00", 90_000.0),
        ],
    )
    run_build(s, progress=False)
    f = _features(s).set_index(["customer_id", "event_timestamp"])
    a = f.loc[("A", pd.Timestamp("2024-03-01", tz="UTC"))]
    # Days Jan 5, Jan 15, Feb 4: x = 2 repeat days, t_x = 30, T = 56, gaps 10 and 20.
    assert a["history_frequency"] == 2
    assert a["history_recency_days"] == 30
    assert a["history_age_days"] == 56
    assert a["gap_mean_days"] == 15
    assert a["gap_std_days"] == pytest.approx(5.0)
    assert a["days_since_last_over_gap"] == pytest.approx(26 / 15)
    assert a["monetary_mean"] == pytest.approx(100 / 4)
    assert a["txn_per_txn_day"] == pytest.approx(4 / 3)
    assert a["history_txn_days_per_30d"] == pytest.approx(2 * 30 / 56)
    assert a["history_recency_share"] == pytest.approx(30 / 56)
    # At the first snapshot only January is visible: one gap, no spread yet.
    a1 = f.loc[("A", pd.Timestamp("2024-02-01", tz="UTC"))]
    assert a1["history_frequency"] == 1 and a1["gap_mean_days"] == 10
    assert pd.isna(a1["gap_std_days"])
    b = f.loc[("B", pd.Timestamp("2024-10-01", tz="UTC"))]
    assert b["history_frequency"] == 0 and b["history_recency_days"] == 0
    assert pd.isna(b["gap_mean_days"]) and pd.isna(b["days_since_last_over_gap"])
    # Missing is not zero: 260 days without a transaction and no balance table is
    # dormant, never churned; the outflow flag is unknown, not 0.
    assert b["days_since_last_txn"] > 180
    assert STAGES[int(b["stage_code"])] == "dormant"
    assert "churned" not in {STAGES[int(c)] for c in f["stage_code"]}
    assert f["large_outflow_flag"].isna().all()
    assert f["deposit_maturing_flag"].isna().all() and f["app_quiet_flag"].isna().all()
