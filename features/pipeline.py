"""`clm features build`: feature tables and labels from the raw tables (DuckDB SQL).

One row per customer per monthly snapshot. A snapshot's timestamp is the first
instant of the next month (UTC) and every feature at that timestamp is computed
from data strictly before it: monthly aggregates of month m carry the snapshot
timestamp of m+1, and windows only look backwards. Labels go to their own table.

Optional raw columns and tables may be absent (ingested data): the features that
need them are NULL (NaN to pandas) but keep their column so feature lists are stable.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clm import atomic
from clm.domain import (
    ACQUISITION_CHANNELS,
    PRODUCTS,
    PROPENSITY_PRODUCTS,
    REGIONS,
    SEGMENTS,
    STAGES,
    VALUE_TIERS,
)
from clm.errors import ClmError
from clm.progress import step_progress
from clm.settings import Settings
from features.catalog import BUILD_INFO_FILE, FEATURE_FILE, FEATURE_NAMES, LABEL_FILE

RULES_FILE = Path(__file__).with_name("lifecycle_rules.yaml")
ASSET_PRODUCTS = (
    "current_account",
    "time_deposit",
    "wealth_management",
    "mutual_fund",
    "insurance",
    "pension",
)
DEBT_PRODUCTS = ("credit_card", "consumer_loan", "mortgage")
LABEL_HORIZON_DAYS = 90


class FeatureBuildError(ClmError):
    """The raw tables or the lifecycle rules cannot produce features."""


@dataclass(frozen=True)
class RawTables:
    """What the raw directory holds: paths (None when absent) and columns present."""

    customers: str | None
    transactions: str | None
    holdings: str | None
    balances: str | None
    app_sessions: str | None
    columns: dict[str, set[str]]

    def has(self, table: str, column: str) -> bool:
        return column in self.columns.get(table, set())


def load_rules(path: Path | None = None) -> dict[str, Any]:
    """The stage rules and thresholds, checked (stage names, keys)."""
    path = path or RULES_FILE
    try:
        rules = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FeatureBuildError(f"{path}: cannot read the lifecycle rules: {exc}") from exc
    if not isinstance(rules, dict) or not isinstance(rules.get("stages"), list):
        raise FeatureBuildError(f"{path}: expected a mapping with a 'stages' list")
    for i, rule in enumerate(rules["stages"]):
        if not isinstance(rule, dict) or set(rule) != {"stage", "when"}:
            raise FeatureBuildError(f"{path}: stages[{i}] must have exactly 'stage' and 'when'")
        if rule["stage"] not in STAGES:
            raise FeatureBuildError(
                f"{path}: stages[{i}]: unknown stage {rule['stage']!r}; use one of {', '.join(STAGES)}"
            )
    if rules.get("default") not in STAGES:
        raise FeatureBuildError(f"{path}: 'default' must be one of {', '.join(STAGES)}")
    for key in ("moments", "value_tiers"):
        if not isinstance(rules.get(key), dict):
            raise FeatureBuildError(f"{path}: missing the '{key}' section")
    rules["_path"] = str(path)
    return rules


def _discover(con: Any, raw: Path) -> RawTables:
    def single(name: str) -> str | None:
        p = raw / f"{name}.parquet"
        return p.as_posix() if p.is_file() else None

    def partitioned(name: str) -> str | None:
        d = raw / name
        if d.is_dir() and any(d.rglob("*.parquet")):
            return (d / "**" / "*.parquet").as_posix()
        return single(name)

    paths = {
        "customers": single("customers"),
        "transactions": partitioned("transactions"),
        "holdings": single("holdings"),
        "balances": partitioned("balances"),
        "app_sessions": partitioned("app_sessions"),
    }
    columns: dict[str, set[str]] = {}
    for table, path in paths.items():
        if path is None:
            continue
        rows = con.execute(
            f"DESCRIBE SELECT * FROM read_parquet('{path}', hive_partitioning=false) LIMIT 0"
        ).fetchall()
        columns[table] = {r[0] for r in rows}
    return RawTables(columns=columns, **paths)


def _require(raw: RawTables, table: str, cols: tuple[str, ...]) -> None:
    path = getattr(raw, table)
    missing = [c for c in cols if not raw.has(table, c)]
    if missing:
        raise FeatureBuildError(
            f"{path}: table {table} lacks the required column(s) {', '.join(missing)} "
            "(see docs/contracts.md, raw tables); re-run `clm ingest` or `clm simulate`"
        )


def _period(raw_dir: Path, con: Any, raw: RawTables) -> tuple[str, str]:
    """First and last month (YYYY-MM) of the data: meta.json, else the transactions."""
    meta_path = raw_dir / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("start_month") and meta.get("end_month"):
                return str(meta["start_month"]), str(meta["end_month"])
        except (OSError, json.JSONDecodeError) as exc:
            raise FeatureBuildError(f"{meta_path}: not valid JSON: {exc}") from exc
    lo, hi = con.execute(
        f"SELECT strftime(min(timestamp), '%Y-%m'), strftime(max(timestamp), '%Y-%m') "
        f"FROM read_parquet('{raw.transactions}', hive_partitioning=false)"
    ).fetchone()
    if lo is None:
        raise FeatureBuildError(
            f"{raw.transactions}: no transactions; nothing to build features from"
        )
    return lo, hi


def _case_code(expr: str, vocabulary: tuple[str, ...]) -> str:
    whens = " ".join(f"WHEN '{v}' THEN {i}" for i, v in enumerate(vocabulary))
    return f"(CASE {expr} {whens} ELSE -1 END)"


def _col(raw: RawTables, table: str, column: str, sql_type: str) -> str:
    return column if raw.has(table, column) else f"CAST(NULL AS {sql_type}) AS {column}"


def _views(con: Any, raw: RawTables) -> None:
    """Uniform views over the raw tables with NULL for absent optional columns."""
    t = raw.transactions
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW txn AS SELECT customer_id::VARCHAR AS customer_id, timestamp,
        amount::DOUBLE AS amount, {_col(raw, "transactions", "channel", "VARCHAR")},
        {_col(raw, "transactions", "category", "VARCHAR")}
        FROM read_parquet('{t}', hive_partitioning=false)"""
    )
    if raw.customers:
        c = raw.customers
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW cust_raw AS SELECT customer_id::VARCHAR AS customer_id,
            {_col(raw, "customers", "signup_date", "DATE")}, {_col(raw, "customers", "birth_year", "INTEGER")},
            {_col(raw, "customers", "region", "VARCHAR")}, {_col(raw, "customers", "value_tier", "VARCHAR")},
            {_col(raw, "customers", "segment", "VARCHAR")},
            {_col(raw, "customers", "acquisition_channel", "VARCHAR")},
            {_col(raw, "customers", "is_payroll", "BOOLEAN")}
            FROM read_parquet('{c}')"""
        )
    else:
        con.execute(
            """CREATE OR REPLACE TEMP VIEW cust_raw AS SELECT NULL::VARCHAR AS customer_id,
            NULL::DATE AS signup_date, NULL::INTEGER AS birth_year, NULL::VARCHAR AS region,
            NULL::VARCHAR AS value_tier, NULL::VARCHAR AS segment,
            NULL::VARCHAR AS acquisition_channel, NULL::BOOLEAN AS is_payroll WHERE false"""
        )
    if raw.holdings:
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW hold AS SELECT customer_id::VARCHAR AS customer_id,
            product::VARCHAR AS product, opened_date::DATE AS opened_date,
            {"closed_date::DATE AS closed_date" if raw.has("holdings", "closed_date") else "NULL::DATE AS closed_date"}
            FROM read_parquet('{raw.holdings}')"""
        )
    if raw.balances:
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW bal AS SELECT customer_id::VARCHAR AS customer_id,
            month_end::DATE AS month_end, product::VARCHAR AS product, balance::DOUBLE AS balance
            FROM read_parquet('{raw.balances}', hive_partitioning=false)"""
        )
    if raw.app_sessions:
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW app AS SELECT customer_id::VARCHAR AS customer_id, timestamp,
            {_col(raw, "app_sessions", "duration_s", "DOUBLE")}
            FROM read_parquet('{raw.app_sessions}', hive_partitioning=false)"""
        )


def _build_sql(con: Any, raw: RawTables, rules: dict[str, Any], start: str, end: str) -> None:
    m = rules["moments"]
    tiers = rules["value_tiers"]
    has_channel = raw.has("transactions", "channel")
    has_category = raw.has("transactions", "category")
    has_holdings = raw.holdings is not None
    has_balances = raw.balances is not None
    has_app = raw.app_sessions is not None

    # The month grid: month m's data is visible at snapshot_ts = first instant of m+1.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE months AS
        SELECT CAST(r AS DATE) AS m, row_number() OVER (ORDER BY r) AS mi,
               CAST(r + INTERVAL 1 MONTH AS DATE) AS snap_date,
               CAST(CAST(r + INTERVAL 1 MONTH AS TIMESTAMP) AS TIMESTAMPTZ) AS snapshot_ts
        FROM range(DATE '{start}-01', DATE '{end}-01' + INTERVAL 1 MONTH, INTERVAL 1 MONTH) t(r)"""
    )
    # Monthly transaction aggregates (one pass over the biggest table).
    chan = (
        """count(*) FILTER (WHERE channel IN ('app', 'online')) AS n_digital,
           count(*) FILTER (WHERE channel = 'branch') AS n_branch,
           count(*) FILTER (WHERE channel = 'atm') AS n_atm,
           count(*) FILTER (WHERE channel = 'pos') AS n_pos"""
        if has_channel
        else "NULL::BIGINT AS n_digital, NULL::BIGINT AS n_branch, NULL::BIGINT AS n_atm, NULL::BIGINT AS n_pos"
    )
    cat = (
        """coalesce(-sum(amount) FILTER (WHERE category = 'card_spend'), 0) AS card_spend,
           coalesce(sum(amount) FILTER (WHERE category = 'salary' AND amount > 0), 0) AS salary_amount,
           count(*) FILTER (WHERE category = 'salary' AND amount > 0) AS n_salary,
           coalesce(-sum(amount) FILTER (WHERE category = 'investment' AND amount < 0), 0) AS invest_out"""
        if has_category
        else "NULL::DOUBLE AS card_spend, NULL::DOUBLE AS salary_amount, NULL::BIGINT AS n_salary, NULL::DOUBLE AS invest_out"
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE txn_m AS
        SELECT customer_id, CAST(date_trunc('month', timestamp) AS DATE) AS m,
            count(*) AS n, coalesce(sum(amount) FILTER (WHERE amount > 0), 0) AS inflow,
            coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) AS outflow,
            sum(abs(amount)) AS abs_amount, max(-amount) FILTER (WHERE amount < 0) AS max_out,
            max(timestamp) AS last_ts, min(timestamp) AS first_ts, {chan}, {cat}
        FROM txn WHERE timestamp < (SELECT max(snapshot_ts) FROM months) GROUP BY ALL"""
    )
    # Whole-history purchase pattern on transaction *days* (as the buy-till-you-die models
    # count them): per month the transaction days, the gaps between consecutive transaction
    # days (the first gap of a month reaches back into earlier months) and the amounts.
    # Cumulative sums of these give frequency, recency, T and the gap mean/spread at any
    # snapshot. Plain SQL (window + GROUP BY) so that Spark runs the same statement.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE txn_h AS
        WITH d AS (
            SELECT customer_id, CAST(timestamp AS DATE) AS day, count(*) AS n,
                sum(abs(amount)) AS abs_amount
            FROM txn WHERE timestamp < (SELECT max(snapshot_ts) FROM months)
            GROUP BY customer_id, CAST(timestamp AS DATE)),
        g AS (
            SELECT customer_id, day, n, abs_amount,
                CAST(date_diff('day', lag(day) OVER (PARTITION BY customer_id ORDER BY day), day)
                     AS DOUBLE) AS gap
            FROM d)
        SELECT customer_id, CAST(date_trunc('month', day) AS DATE) AS m,
            count(*) AS n_days, count(gap) AS n_gaps, coalesce(sum(gap), 0) AS gap_sum,
            coalesce(sum(gap * gap), 0) AS gap_sq_sum, sum(abs_amount) AS abs_amount_all,
            sum(n) AS n_all, min(day) AS first_day, max(day) AS last_day
        FROM g GROUP BY customer_id, CAST(date_trunc('month', day) AS DATE)"""
    )
    # Everyone the bank knows: the customer table plus anyone who transacted.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE cust AS
        WITH ids AS (SELECT customer_id FROM cust_raw UNION SELECT DISTINCT customer_id FROM txn_m),
        first_txn AS (SELECT customer_id, min(first_ts) AS first_ts FROM txn_m GROUP BY 1)
        SELECT i.customer_id, c.signup_date, c.birth_year, c.region, c.value_tier, c.segment,
               c.acquisition_channel, c.is_payroll, f.first_ts
        FROM ids i LEFT JOIN cust_raw c USING (customer_id) LEFT JOIN first_txn f USING (customer_id)"""
    )
    if has_app:
        con.execute(
            """CREATE OR REPLACE TEMP TABLE app_m AS
            SELECT customer_id, CAST(date_trunc('month', timestamp) AS DATE) AS m, count(*) AS n_login,
                   max(timestamp) AS last_login, sum(duration_s) AS dur
            FROM app WHERE timestamp < (SELECT max(snapshot_ts) FROM months) GROUP BY ALL"""
        )
    else:
        con.execute(
            """CREATE OR REPLACE TEMP TABLE app_m AS SELECT NULL::VARCHAR AS customer_id, NULL::DATE AS m,
            NULL::BIGINT AS n_login, NULL::TIMESTAMPTZ AS last_login, NULL::DOUBLE AS dur WHERE false"""
        )
    if has_balances:
        assets = ", ".join(f"'{p}'" for p in ASSET_PRODUCTS)
        debts = ", ".join(f"'{p}'" for p in DEBT_PRODUCTS)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE bal_m AS
            SELECT customer_id, CAST(date_trunc('month', month_end) AS DATE) AS m,
                coalesce(sum(balance) FILTER (WHERE product IN ({assets})), 0) AS aum,
                coalesce(sum(abs(balance)) FILTER (WHERE product IN ({debts})), 0) AS debt,
                coalesce(sum(balance) FILTER (WHERE product IN ('current_account', 'time_deposit')), 0) AS dep,
                coalesce(sum(balance) FILTER (WHERE product IN ('wealth_management', 'mutual_fund', 'insurance', 'pension')), 0) AS inv,
                coalesce(sum(balance) FILTER (WHERE product = 'current_account'), 0) AS ca,
                coalesce(sum(balance) FILTER (WHERE product = 'time_deposit'), 0) AS td
            FROM bal GROUP BY ALL"""
        )
    else:
        con.execute(
            """CREATE OR REPLACE TEMP TABLE bal_m AS SELECT NULL::VARCHAR AS customer_id, NULL::DATE AS m,
            NULL::DOUBLE AS aum, NULL::DOUBLE AS debt, NULL::DOUBLE AS dep, NULL::DOUBLE AS inv,
            NULL::DOUBLE AS ca, NULL::DOUBLE AS td WHERE false"""
        )
    # Dense customer x month grid so that ROWS windows are calendar windows.
    bal_null = "NULL::DOUBLE" if not has_balances else None
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE grid AS
        SELECT c.customer_id, mo.m, mo.mi, mo.snapshot_ts, mo.snap_date,
            coalesce(t.n, 0) AS n, coalesce(t.inflow, 0) AS inflow, coalesce(t.outflow, 0) AS outflow,
            coalesce(t.abs_amount, 0) AS abs_amount, t.max_out, t.last_ts,
            {"coalesce(t.n_digital, 0)" if has_channel else "NULL::BIGINT"} AS n_digital,
            {"coalesce(t.n_branch, 0)" if has_channel else "NULL::BIGINT"} AS n_branch,
            {"coalesce(t.n_atm, 0)" if has_channel else "NULL::BIGINT"} AS n_atm,
            {"coalesce(t.n_pos, 0)" if has_channel else "NULL::BIGINT"} AS n_pos,
            {"coalesce(t.card_spend, 0)" if has_category else "NULL::DOUBLE"} AS card_spend,
            {"coalesce(t.salary_amount, 0)" if has_category else "NULL::DOUBLE"} AS salary_amount,
            {"coalesce(t.n_salary, 0)" if has_category else "NULL::BIGINT"} AS n_salary,
            {"coalesce(t.invest_out, 0)" if has_category else "NULL::DOUBLE"} AS invest_out,
            {"coalesce(a.n_login, 0)" if has_app else "NULL::BIGINT"} AS n_login, a.last_login, a.dur,
            {bal_null or "b.aum"} AS aum, {bal_null or "b.debt"} AS debt, {bal_null or "b.dep"} AS dep,
            {bal_null or "b.inv"} AS inv, {bal_null or "b.ca"} AS ca, {bal_null or "b.td"} AS td,
            coalesce(th.n_days, 0) AS h_days, coalesce(th.n_gaps, 0) AS h_gaps,
            coalesce(th.gap_sum, 0) AS h_gap_sum, coalesce(th.gap_sq_sum, 0) AS h_gap_sq_sum,
            coalesce(th.abs_amount_all, 0) AS h_abs_amount, coalesce(th.n_all, 0) AS h_n,
            th.first_day AS h_first_day, th.last_day AS h_last_day
        FROM cust c CROSS JOIN months mo
        LEFT JOIN txn_m t ON t.customer_id = c.customer_id AND t.m = mo.m
        LEFT JOIN txn_h th ON th.customer_id = c.customer_id AND th.m = mo.m
        LEFT JOIN app_m a ON a.customer_id = c.customer_id AND a.m = mo.m
        LEFT JOIN bal_m b ON b.customer_id = c.customer_id AND b.m = mo.m"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE win AS
        SELECT customer_id, m, mi, snapshot_ts, snap_date,
            n AS txn_count_1m, inflow AS inflow_1m, outflow AS outflow_1m, inflow - outflow AS net_flow_1m,
            sum(n) OVER w3 AS txn_count_3m, sum(inflow) OVER w3 AS inflow_3m,
            sum(outflow) OVER w3 AS outflow_3m, sum(inflow - outflow) OVER w3 AS net_flow_3m,
            sum(n) OVER w6 AS txn_count_6m, sum(inflow) OVER w6 AS inflow_6m,
            sum(outflow) OVER w6 AS outflow_6m, sum(inflow - outflow) OVER w6 AS net_flow_6m,
            max(last_ts) OVER wall AS last_txn_ts,
            sum(n) OVER w3prev AS txn_count_prev3m,
            sum(abs_amount) OVER w3 AS abs_amount_3m, max_out AS max_outflow_1m,
            sum(n_digital) OVER w3 AS n_digital_3m, sum(n_branch) OVER w3 AS n_branch_3m,
            sum(n_atm) OVER w3 AS n_atm_3m, sum(n_pos) OVER w3 AS n_pos_3m,
            sum(card_spend) OVER w3 AS card_spend_3m, sum(salary_amount) OVER w3 AS salary_amount_3m,
            sum(CASE WHEN n_salary > 0 THEN 1 ELSE 0 END) OVER w6 AS salary_months_6m,
            sum(CASE WHEN n_salary > 0 THEN 1 ELSE 0 END) OVER w5prev AS salary_months_prev5,
            CASE WHEN n_salary IS NULL THEN NULL ELSE count(*) OVER w6 END AS months_6m,
            n_salary AS n_salary_1m,
            sum(invest_out) OVER w3 AS investment_outflow_3m,
            n_login AS logins_1m, sum(n_login) OVER w3 AS logins_3m,
            sum(n_login) OVER w2prev AS logins_prev2m,
            max(last_login) OVER wall AS last_login_ts, sum(dur) OVER w3 AS dur_3m,
            aum, debt, dep, inv, ca, td,
            lag(aum, 1) OVER wo AS aum_1m_ago, lag(aum, 3) OVER wo AS aum_3m_ago,
            lag(aum, 6) OVER wo AS aum_6m_ago,
            regr_slope(aum, mi) OVER w6 AS aum_slope_6m, avg(aum) OVER w6 AS aum_mean_6m,
            max(aum) OVER w6 AS aum_max_6m,
            sum(h_days) OVER wall AS h_days_all, sum(h_gaps) OVER wall AS h_gaps_all,
            sum(h_gap_sum) OVER wall AS h_gap_sum_all, sum(h_gap_sq_sum) OVER wall AS h_gap_sq_all,
            sum(h_abs_amount) OVER wall AS h_abs_amount_all, sum(h_n) OVER wall AS h_n_all,
            min(h_first_day) OVER wall AS h_first_day, max(h_last_day) OVER wall AS h_last_day
        FROM grid
        WINDOW wo AS (PARTITION BY customer_id ORDER BY mi),
            w3 AS (PARTITION BY customer_id ORDER BY mi ROWS BETWEEN 2 PRECEDING AND CURRENT ROW),
            w6 AS (PARTITION BY customer_id ORDER BY mi ROWS BETWEEN 5 PRECEDING AND CURRENT ROW),
            w3prev AS (PARTITION BY customer_id ORDER BY mi ROWS BETWEEN 5 PRECEDING AND 3 PRECEDING),
            w5prev AS (PARTITION BY customer_id ORDER BY mi ROWS BETWEEN 5 PRECEDING AND 1 PRECEDING),
            w2prev AS (PARTITION BY customer_id ORDER BY mi ROWS BETWEEN 2 PRECEDING AND 1 PRECEDING),
            wall AS (PARTITION BY customer_id ORDER BY mi ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"""
    )
    # Holdings as of each snapshot date: opened before it and not closed before it.
    if has_holdings:
        held = ",\n".join(
            f"max(CASE WHEN h.product = '{p}' AND h.is_open THEN 1 ELSE 0 END) AS holds_{p}"
            for p in PRODUCTS
        )
        term, within = int(m["deposit_term_days"]), int(m["deposit_maturing_within_days"])
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE hold_s AS
            WITH h AS (
                SELECT mo.mi, mo.snap_date, h.*,
                    (h.closed_date IS NULL OR h.closed_date >= mo.snap_date) AS is_open
                FROM hold h JOIN months mo ON h.opened_date < mo.snap_date)
            SELECT customer_id, mi,
                count(*) FILTER (WHERE is_open) AS n_products, {held},
                date_diff('month', max(opened_date), max(snap_date)) AS months_since_last_opening,
                count(*) FILTER (WHERE opened_date >= snap_date - INTERVAL 3 MONTH) AS openings_3m,
                count(*) FILTER (WHERE closed_date < snap_date AND closed_date >= snap_date - INTERVAL 3 MONTH) AS closures_3m,
                max(CASE WHEN is_open AND product = 'time_deposit'
                    AND (date_diff('day', opened_date, snap_date) % {term}) >= {term - within}
                    THEN 1 ELSE 0 END) AS deposit_maturing_flag
            FROM h GROUP BY ALL"""
        )
    else:
        held = ", ".join(f"NULL::INTEGER AS holds_{p}" for p in PRODUCTS)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE hold_s AS SELECT NULL::VARCHAR AS customer_id,
            NULL::BIGINT AS mi, NULL::BIGINT AS n_products, {held},
            NULL::BIGINT AS months_since_last_opening, NULL::BIGINT AS openings_3m,
            NULL::BIGINT AS closures_3m, NULL::INTEGER AS deposit_maturing_flag WHERE false"""
        )

    tier_from_aum = (
        f"CASE WHEN w.aum IS NULL THEN -1 WHEN w.aum >= {float(tiers['private_min_aum'])} THEN 2 "
        f"WHEN w.aum >= {float(tiers['affluent_min_aum'])} THEN 1 ELSE 0 END"
    )
    tier = _case_code("c.value_tier", VALUE_TIERS)
    # The relationship starts at signup, else at the first transaction.
    start_ts = "coalesce(CAST(c.signup_date AS TIMESTAMPTZ), c.first_ts)"
    days = "(epoch(w.snapshot_ts) - epoch({})) / 86400.0"
    hd = int(m["honeymoon_days"])
    # Eligible rows: the relationship has started before the snapshot and, where holdings
    # are known, at least one holding is open (churned customers have no rows after churn).
    eligible = f"{start_ts} < w.snapshot_ts" + (
        " AND coalesce(hs.n_products, 0) > 0" if has_holdings else ""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE feat AS
        SELECT w.customer_id, w.snapshot_ts AS event_timestamp,
            CAST(year(w.snapshot_ts - INTERVAL 1 DAY) - c.birth_year AS DOUBLE) AS age,
            CAST(date_diff('month', {start_ts}, w.snapshot_ts) AS DOUBLE) AS tenure_months,
            CAST(CASE WHEN c.value_tier IS NOT NULL THEN {tier} ELSE {tier_from_aum} END AS INTEGER) AS value_tier_code,
            CAST({_case_code("c.acquisition_channel", ACQUISITION_CHANNELS)} AS INTEGER) AS acquisition_channel_code,
            CAST({_case_code("c.segment", SEGMENTS)} AS INTEGER) AS segment_code,
            CAST({_case_code("c.region", REGIONS)} AS INTEGER) AS region_code,
            CAST(c.is_payroll AS DOUBLE) AS is_payroll,
            CASE WHEN {days.format(start_ts)} <= {hd} THEN 1.0 ELSE 0.0 END AS honeymoon_flag,
            txn_count_1m, inflow_1m, outflow_1m, net_flow_1m,
            txn_count_3m, inflow_3m, outflow_3m, net_flow_3m,
            txn_count_6m, inflow_6m, outflow_6m, net_flow_6m,
            {days.format("w.last_txn_ts")} AS days_since_last_txn,
            (txn_count_3m - txn_count_prev3m) / greatest(txn_count_prev3m, 1) AS activity_change_3m,
            abs_amount_3m / nullif(txn_count_3m, 0) AS avg_txn_amount_3m,
            coalesce(max_outflow_1m, 0) AS max_outflow_1m,
            n_digital_3m / nullif(txn_count_3m, 0) AS digital_share_3m,
            n_branch_3m / nullif(txn_count_3m, 0) AS branch_share_3m,
            n_atm_3m / nullif(txn_count_3m, 0) AS atm_share_3m,
            n_pos_3m / nullif(txn_count_3m, 0) AS pos_share_3m,
            card_spend_3m, salary_amount_3m,
            salary_months_6m / nullif(months_6m, 0) AS salary_regularity_6m,
            investment_outflow_3m,
            aum, debt AS debt_balance,
            (aum - aum_1m_ago) / greatest(abs(aum_1m_ago), 1) AS aum_change_1m,
            (aum - aum_3m_ago) / greatest(abs(aum_3m_ago), 1) AS aum_change_3m,
            (aum - aum_6m_ago) / greatest(abs(aum_6m_ago), 1) AS aum_change_6m,
            aum_slope_6m / greatest(abs(aum_mean_6m), 1) AS aum_trend_6m,
            CASE WHEN aum_max_6m > 0 THEN 1 - aum / aum_max_6m END AS aum_drawdown_6m,
            CASE WHEN aum > 0 THEN dep / aum END AS deposit_share,
            CASE WHEN aum > 0 THEN inv / aum END AS investment_share,
            ca AS current_account_balance, td AS time_deposit_balance,
            CAST(hs.n_products AS DOUBLE) AS n_products,
            {", ".join(f"CAST(hs.holds_{p} AS DOUBLE) AS holds_{p}" for p in PRODUCTS)},
            CAST(hs.months_since_last_opening AS DOUBLE) AS months_since_last_opening,
            CAST(hs.openings_3m AS DOUBLE) AS openings_3m, CAST(hs.closures_3m AS DOUBLE) AS closures_3m,
            CAST(logins_1m AS DOUBLE) AS logins_1m, CAST(logins_3m AS DOUBLE) AS logins_3m,
            {days.format("w.last_login_ts")} AS days_since_last_login,
            (logins_1m - logins_prev2m / 2.0) / greatest(logins_prev2m / 2.0, 1) AS login_trend,
            dur_3m / nullif(logins_3m, 0) AS avg_session_seconds_3m,
            CASE WHEN n_salary_1m IS NULL THEN NULL
                 WHEN salary_months_prev5 >= {int(m["salary_history_months"])} AND n_salary_1m = 0 THEN 1.0
                 ELSE 0.0 END AS salary_stopped_flag,
            CASE WHEN aum_1m_ago IS NULL THEN NULL
                 WHEN max_outflow_1m IS NOT NULL AND max_outflow_1m >= {float(m["large_outflow_min_amount"])}
                      AND max_outflow_1m >= {float(m["large_outflow_share_of_aum"])} * aum_1m_ago
                 THEN 1.0 ELSE 0.0 END AS large_outflow_flag,
            CAST(hs.deposit_maturing_flag AS DOUBLE) AS deposit_maturing_flag,
            {_history_columns()},
            CASE WHEN logins_1m IS NULL THEN NULL
                 WHEN logins_1m = 0 AND logins_prev2m > 0 THEN 1.0 ELSE 0.0 END AS app_quiet_flag
        FROM win w JOIN cust c USING (customer_id)
        LEFT JOIN hold_s hs ON hs.customer_id = w.customer_id AND hs.mi = w.mi
        WHERE {eligible}"""
    )
    # Where the customer table gives neither signup date nor tier, large outflow
    # without balances cannot be judged: NULL rather than a zero that pretends.
    if not has_balances:
        con.execute("UPDATE feat SET large_outflow_flag = NULL")


def _history_columns() -> str:
    """The `history` group: the whole purchase history up to the snapshot, on transaction days.

    frequency = repeat transaction days (x), recency = first to last transaction day (t_x),
    age = first transaction day to the snapshot (T), as BG/NBD and Pareto/NBD define them;
    ratios of these keep their meaning at any snapshot date, unlike fixed windows.
    """
    snap = "CAST(w.snapshot_ts AS DATE)"
    x = "(CASE WHEN w.h_days_all > 0 THEN w.h_days_all - 1 END)"
    t_x = "date_diff('day', w.h_first_day, w.h_last_day)"
    age = f"date_diff('day', w.h_first_day, {snap})"
    since = f"date_diff('day', w.h_last_day, {snap})"
    mean_gap = "w.h_gap_sum_all / nullif(w.h_gaps_all, 0)"
    return f"""CAST({x} AS DOUBLE) AS history_frequency,
            CAST({t_x} AS DOUBLE) AS history_recency_days,
            CAST({age} AS DOUBLE) AS history_age_days,
            CAST({x} AS DOUBLE) * 30.0 / greatest({age}, 1) AS history_txn_days_per_30d,
            CAST({t_x} AS DOUBLE) / greatest({age}, 1) AS history_recency_share,
            {mean_gap} AS gap_mean_days,
            CASE WHEN w.h_gaps_all >= 2 THEN sqrt(greatest(
                w.h_gap_sq_all / w.h_gaps_all - power(w.h_gap_sum_all / w.h_gaps_all, 2), 0)) END
                AS gap_std_days,
            CAST({since} AS DOUBLE) / nullif({mean_gap}, 0) AS days_since_last_over_gap,
            w.h_abs_amount_all / nullif(w.h_n_all, 0) AS monetary_mean,
            CAST(w.h_n_all AS DOUBLE) / greatest(w.h_days_all, 1) AS txn_per_txn_day"""


def _stage_case(rules: dict[str, Any]) -> str:
    whens = " ".join(
        f"WHEN coalesce(({r['when']}), false) THEN {STAGES.index(r['stage'])}"
        for r in rules["stages"]
    )
    return f"CAST(CASE {whens} ELSE {STAGES.index(rules['default'])} END AS INTEGER)"


def _add_stage(con: Any, rules: dict[str, Any]) -> None:
    # Rules are SQL over feature columns only: bind them against a table holding nothing else.
    cols = ", ".join(
        ["customer_id", "event_timestamp", *[n for n in FEATURE_NAMES if n != "stage_code"]]
    )
    con.execute(f"CREATE OR REPLACE TEMP VIEW feat_only AS SELECT {cols} FROM feat")
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE feat_s AS SELECT *, {_stage_case(rules)} AS stage_code FROM feat_only"
        )
    except Exception as exc:  # duckdb raises Binder/Parser errors: name the rule file
        raise FeatureBuildError(
            f"{rules['_path']}: a stage rule does not evaluate ({exc}); rules may only use feature "
            "names listed in docs/features.md"
        ) from exc


def _labels(con: Any, raw: RawTables) -> None:
    h = LABEL_HORIZON_DAYS
    stage_name = "(list_value(" + ", ".join(f"'{s}'" for s in STAGES) + ")[{} + 1])"
    known = f"f.event_timestamp + INTERVAL {h} DAY <= (SELECT max(snapshot_ts) FROM months)"
    if raw.holdings:
        adopt = ",\n".join(
            f"""CASE WHEN NOT ({known}) OR f.holds_{p} = 1 THEN NULL
                 WHEN EXISTS (SELECT 1 FROM hold x WHERE x.customer_id = f.customer_id AND x.product = '{p}'
                     AND x.opened_date >= CAST(f.event_timestamp AS DATE)
                     AND x.opened_date < CAST(f.event_timestamp + INTERVAL {h} DAY AS DATE)) THEN 1 ELSE 0 END
                 AS adopt_{p}_90d"""
            for p in PROPENSITY_PRODUCTS
        )
        churn = f"""CASE WHEN NOT ({known}) THEN NULL
            WHEN EXISTS (SELECT 1 FROM hold x WHERE x.customer_id = f.customer_id
                AND x.opened_date < CAST(f.event_timestamp + INTERVAL {h} DAY AS DATE)
                AND (x.closed_date IS NULL OR x.closed_date >= CAST(f.event_timestamp + INTERVAL {h} DAY AS DATE)))
            THEN 0 ELSE 1 END"""
        gone = """NOT EXISTS (SELECT 1 FROM hold x WHERE x.customer_id = f.customer_id
                AND x.opened_date < CAST(n.snapshot_ts AS DATE)
                AND (x.closed_date IS NULL OR x.closed_date >= CAST(n.snapshot_ts AS DATE)))"""
    else:
        # Without holdings, churn falls back to "no transaction at all in the next 90 days".
        adopt = ",\n".join(f"NULL::INTEGER AS adopt_{p}_90d" for p in PROPENSITY_PRODUCTS)
        churn = f"""CASE WHEN NOT ({known}) THEN NULL
            WHEN EXISTS (SELECT 1 FROM txn_m x WHERE x.customer_id = f.customer_id
                AND x.last_ts >= f.event_timestamp AND x.first_ts < f.event_timestamp + INTERVAL {h} DAY)
            THEN 0 ELSE 1 END"""
        gone = "false"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE labels AS
        WITH nxt AS (SELECT mo.snapshot_ts AS t, n.snapshot_ts FROM months mo
                     JOIN months n ON n.mi = mo.mi + 3)
        SELECT f.customer_id, f.event_timestamp AS snapshot_ts,
            CAST({churn} AS INTEGER) AS churn_90d,
            {adopt},
            {stage_name.format("f.stage_code")} AS stage,
            CASE WHEN n.snapshot_ts IS NULL THEN NULL
                 WHEN g.stage_code IS NOT NULL THEN {stage_name.format("g.stage_code")}
                 WHEN {gone} THEN 'churned' END AS stage_next
        FROM feat_s f
        LEFT JOIN nxt n ON n.t = f.event_timestamp
        LEFT JOIN feat_s g ON g.customer_id = f.customer_id AND g.event_timestamp = n.snapshot_ts"""
    )


def _write_parquet(con: Any, query: str, path: Path) -> None:
    con.execute(
        f"COPY ({query}) TO '{path.as_posix()}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"
    )


def run_build(settings: Settings, progress: bool = True) -> dict:
    """Build the feature table and the labels; returns a summary (rows, snapshots, seconds)."""
    import duckdb

    raw_dir = settings.raw_dir
    if not (raw_dir / "transactions").exists() and not (raw_dir / "transactions.parquet").exists():
        raise FeatureBuildError(
            f"{raw_dir}: no raw transactions; run `clm simulate` or `clm ingest` first"
        )
    rules = load_rules()
    started = time.monotonic()
    out = settings.feature_dir
    tmp = atomic.new_staging_dir(out)
    steps = ["read raw tables", "monthly aggregates and windows", "stages", "labels", "write"]
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        # Outputs are sorted explicitly; not preserving scan order lets DuckDB stream and spill.
        con.execute("SET preserve_insertion_order = false")
        # DuckDB takes 80% of RAM by default; a bounded limit makes it spill instead.
        con.execute(f"SET memory_limit = '{settings.features.duckdb_memory_limit}'")
        con.execute(f"SET temp_directory = '{(tmp / 'spill').as_posix()}'")
        with step_progress("features build", len(steps), progress, transient=True) as advance:
            timings: dict[str, float] = {}
            last = [time.monotonic()]

            def step(i: int) -> None:
                if i > 0:  # how long the step just finished took (for the summary)
                    timings[steps[i - 1]] = round(time.monotonic() - last[0], 2)
                    last[0] = time.monotonic()
                advance(min(i, 1), description=f"features: {steps[min(i, len(steps) - 1)]}")

            step(0)
            raw = _discover(con, raw_dir)
            _require(raw, "transactions", ("customer_id", "timestamp", "amount"))
            if raw.holdings:
                _require(raw, "holdings", ("customer_id", "product", "opened_date"))
            if raw.balances:
                _require(raw, "balances", ("customer_id", "month_end", "product", "balance"))
            if raw.app_sessions:
                _require(raw, "app_sessions", ("customer_id", "timestamp"))
            if raw.customers:
                _require(raw, "customers", ("customer_id",))
            _views(con, raw)
            start, end = _period(raw_dir, con, raw)
            step(1)
            _build_sql(con, raw, rules, start, end)
            step(2)
            _add_stage(con, rules)
            step(3)
            _labels(con, raw)
            step(4)
            # Every feature is a double (codes too): Feast declares them Float64.
            cols = ", ".join(
                ["customer_id", "event_timestamp"]
                + [f"CAST({name} AS DOUBLE) AS {name}" for name in FEATURE_NAMES]
            )
            _write_parquet(
                con,
                f"SELECT {cols} FROM feat_s ORDER BY event_timestamp, customer_id",
                tmp / FEATURE_FILE,
            )
            # Sorted where it is written: an ORDER BY on the CREATE TABLE did not survive
            # DuckDB's parallel COPY at 100k customers (40% of the rows moved between
            # two builds of the same bank), and training rows follow this order, so two
            # builds of the same data trained different models (bagging picks by position).
            _write_parquet(
                con, "SELECT * FROM labels ORDER BY snapshot_ts, customer_id", tmp / LABEL_FILE
            )
            counts = con.execute(
                "SELECT count(*), count(DISTINCT customer_id) FROM feat_s"
            ).fetchone()
            assert counts is not None
            rows, customers = counts
            snaps = [
                r[0].isoformat()
                for r in con.execute(
                    "SELECT DISTINCT event_timestamp FROM feat_s ORDER BY 1"
                ).fetchall()
            ]
            labelled = con.execute(
                "SELECT count(*) FROM labels WHERE churn_90d IS NOT NULL"
            ).fetchall()[0][0]
            step(5)
    except duckdb.Error as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FeatureBuildError(f"{raw_dir}: feature build failed in DuckDB: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        con.close()
    shutil.rmtree(tmp / "spill", ignore_errors=True)
    summary = {
        "rows": int(rows),
        "customers": int(customers),
        "snapshots": snaps,
        "labelled_rows": int(labelled),
        "features": list(FEATURE_NAMES),
        "period": [start, end],
        "seconds": round(time.monotonic() - started, 2),
        "step_seconds": timings,
    }
    (tmp / BUILD_INFO_FILE).write_text(json.dumps(summary, indent=1))
    atomic.replace_dir(tmp, out)
    return summary
