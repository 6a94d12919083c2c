"""Why a customer is on a list, in words a front-line employee can say on the phone.

The reasons are the features that pushed the campaign's score up the most for this
customer (LightGBM's own per-feature contributions, as `/score?explain` gives them):
churn for a retention list, the campaign product's propensity for a product list.
Each feature has a phrase; one without a phrase falls back to its catalogue definition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from clm.domain import ACQUISITION_CHANNELS, REGIONS, SEGMENTS, STAGES, VALUE_TIERS

if TYPE_CHECKING:
    from campaigns.lists import CampaignSpec
    from serving.scoring import ModelSet

__all__ = ["member_reasons", "phrase"]


def _pct(v: float) -> str:
    return f"{abs(v) * 100:.0f}%"


def _few(v: float, thing: str, when: str) -> str:
    if v < 0.5:
        return f"no {thing}s {when}"
    return f"only {v:.0f} {thing}{'' if round(v) == 1 else 's'} {when}"


def _money(v: float) -> str:
    return f"{abs(v):,.0f}"


# feature -> (phrase when its value is high/true, phrase when low/false); the value is
# "high" above the threshold. Phrases take the value.
_PHRASES: dict[str, tuple[float, Callable[[float], str], Callable[[float], str]]] = {
    "days_since_last_txn": (
        30,
        lambda v: f"no transaction for {v:.0f} days",
        lambda v: f"last transaction {v:.0f} days ago",
    ),
    "salary_stopped_flag": (
        0.5,
        lambda v: "salary has stopped arriving",
        lambda v: "salary still arrives",
    ),
    "large_outflow_flag": (
        0.5,
        lambda v: "a large sum left the account last month",
        lambda v: "no large outflow",
    ),
    "deposit_maturing_flag": (
        0.5,
        lambda v: "a time deposit matures within 30 days",
        lambda v: "no deposit maturing soon",
    ),
    "app_quiet_flag": (0.5, lambda v: "has stopped using the app", lambda v: "still uses the app"),
    "honeymoon_flag": (
        0.5,
        lambda v: "new to the bank (first months)",
        lambda v: "past the first months",
    ),
    "is_payroll": (0.5, lambda v: "salary paid through us", lambda v: "salary not paid through us"),
    "tenure_months": (
        12,
        lambda v: f"customer for {v:.0f} months",
        lambda v: f"customer for only {v:.0f} months",
    ),
    "n_products": (
        2.5,
        lambda v: f"holds {v:.0f} products",
        lambda v: "holds only the current account" if v < 1.5 else f"holds only {v:.0f} products",
    ),
    "activity_change_3m": (
        0,
        lambda v: f"activity up {_pct(v)} in 3 months",
        lambda v: f"activity down {_pct(v)} in 3 months",
    ),
    "aum_change_1m": (
        0,
        lambda v: f"balances up {_pct(v)} last month",
        lambda v: f"balances down {_pct(v)} last month",
    ),
    "aum_change_3m": (
        0,
        lambda v: f"balances up {_pct(v)} in 3 months",
        lambda v: f"balances down {_pct(v)} in 3 months",
    ),
    "aum_change_6m": (
        0,
        lambda v: f"balances up {_pct(v)} in 6 months",
        lambda v: f"balances down {_pct(v)} in 6 months",
    ),
    "aum_trend_6m": (0, lambda v: "balances trending up", lambda v: "balances trending down"),
    "aum_drawdown_6m": (
        0.2,
        lambda v: f"balances {_pct(v)} below their 6-month high",
        lambda v: "balances near their high",
    ),
    "aum": (
        50_000,
        lambda v: f"holds {_money(v)} with us",
        lambda v: f"holds only {_money(v)} with us",
    ),
    "txn_count_1m": (
        5,
        lambda v: f"{v:.0f} transactions last month",
        lambda v: _few(v, "transaction", "last month"),
    ),
    "txn_count_3m": (
        15,
        lambda v: f"{v:.0f} transactions in 3 months",
        lambda v: f"only {v:.0f} transactions in 3 months",
    ),
    "logins_1m": (
        2,
        lambda v: f"{v:.0f} app logins last month",
        lambda v: f"only {v:.0f} app logins last month",
    ),
    "days_since_last_login": (
        30,
        lambda v: f"no app login for {v:.0f} days",
        lambda v: "logged in recently",
    ),
    "salary_regularity_6m": (0.5, lambda v: "regular salary", lambda v: "irregular or no salary"),
    "digital_share_3m": (0.5, lambda v: "mostly banks online", lambda v: "rarely banks online"),
    "closures_3m": (
        0.5,
        lambda v: f"closed {v:.0f} product(s) in 3 months",
        lambda v: "closed nothing lately",
    ),
    "openings_3m": (
        0.5,
        lambda v: f"opened {v:.0f} product(s) in 3 months",
        lambda v: "opened nothing lately",
    ),
    "age": (60, lambda v: f"aged {v:.0f}", lambda v: f"aged {v:.0f}"),
    "txn_count_6m": (
        30,
        lambda v: f"{v:.0f} transactions in 6 months",
        lambda v: f"only {v:.0f} transactions in 6 months",
    ),
    "logins_3m": (
        6,
        lambda v: f"{v:.0f} app logins in 3 months",
        lambda v: f"only {v:.0f} app logins in 3 months",
    ),
    "login_trend": (
        0,
        lambda v: "uses the app more than before",
        lambda v: "uses the app less than before",
    ),
    "atm_share_3m": (0.3, lambda v: "mostly withdraws cash at ATMs", lambda v: "rarely uses ATMs"),
    "pos_share_3m": (0.3, lambda v: "pays by card often", lambda v: "rarely pays by card"),
    "branch_share_3m": (
        0.3,
        lambda v: "often comes to the branch",
        lambda v: "rarely comes to the branch",
    ),
    "card_spend_3m": (
        1,
        lambda v: f"spent {_money(v)} by card in 3 months",
        lambda v: "no card spending in 3 months",
    ),
    "max_outflow_1m": (
        10_000,
        lambda v: f"moved out {_money(v)} at once last month",
        lambda v: "no large payment out last month",
    ),
    "inflow_1m": (
        1,
        lambda v: f"{_money(v)} came in last month",
        lambda v: "nothing came in last month",
    ),
    "inflow_3m": (
        1,
        lambda v: f"{_money(v)} came in over 3 months",
        lambda v: "nothing came in over 3 months",
    ),
    "outflow_3m": (
        1,
        lambda v: f"{_money(v)} went out over 3 months",
        lambda v: "nothing went out over 3 months",
    ),
    "outflow_1m": (
        1,
        lambda v: f"{_money(v)} went out last month",
        lambda v: "nothing went out last month",
    ),
    "net_flow_1m": (
        0,
        lambda v: f"{_money(v)} more came in than went out last month",
        lambda v: f"{_money(v)} more went out than came in last month",
    ),
    "net_flow_3m": (
        0,
        lambda v: f"{_money(v)} more came in than went out in 3 months",
        lambda v: f"{_money(v)} more went out than came in over 3 months",
    ),
    "salary_amount_3m": (
        1,
        lambda v: f"salary of {_money(v)} in 3 months",
        lambda v: "no salary in 3 months",
    ),
    "investment_outflow_3m": (
        1,
        lambda v: f"invested {_money(v)} in 3 months",
        lambda v: "invested nothing in 3 months",
    ),
    "debt_balance": (1, lambda v: f"owes {_money(v)}", lambda v: "owes us nothing"),
    "deposit_share": (
        0.5,
        lambda v: "keeps most money in deposits",
        lambda v: "keeps little in deposits",
    ),
    "investment_share": (
        0.3,
        lambda v: "a good part of the money is invested",
        lambda v: "little or nothing invested",
    ),
    "current_account_balance": (
        5_000,
        lambda v: f"{_money(v)} on the current account",
        lambda v: f"only {_money(v)} on the current account",
    ),
    "time_deposit_balance": (
        1,
        lambda v: f"{_money(v)} in time deposits",
        lambda v: "no time deposit",
    ),
    "months_since_last_opening": (
        12,
        lambda v: f"nothing new opened for {v:.0f} months",
        lambda v: f"opened a product {v:.0f} months ago",
    ),
    "avg_txn_amount_3m": (
        1_000,
        lambda v: f"large transactions (about {_money(v)})",
        lambda v: f"small transactions (about {_money(v)})",
    ),
    "avg_session_seconds_3m": (120, lambda v: "long app sessions", lambda v: "short app sessions"),
}


_CODES: dict[str, tuple[tuple[str, ...], str]] = {
    "value_tier_code": (VALUE_TIERS, "a {} customer"),
    "segment_code": (SEGMENTS, "in the {} group"),
    "stage_code": (STAGES, "lifecycle stage: {}"),
    "acquisition_channel_code": (ACQUISITION_CHANNELS, "joined through {}"),
    "region_code": (REGIONS, "lives in the {}"),
}


def phrase(feature: str, value: float | None) -> str:
    """One feature value in words."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return f"no {feature.replace('_', ' ')} on record"
    known = _PHRASES.get(feature)
    if known is not None:
        threshold, high, low = known
        return high(value) if value > threshold else low(value)
    vocabulary = _CODES.get(feature)
    if vocabulary is not None:
        words, template = vocabulary
        k = int(value)
        return template.format(words[k].replace("_", " ")) if 0 <= k < len(words) else "unknown"
    if feature.startswith("holds_"):
        product = feature.removeprefix("holds_").replace("_", " ")
        return f"has a {product}" if value >= 0.5 else f"no {product} yet"
    from features.catalog import FEATURES

    definition = {f.name: f.definition for f in FEATURES}.get(feature, feature)
    return f"{definition.rstrip('.').lower()}: {value:,.2f}"


def member_reasons(models: ModelSet, matrix: np.ndarray, spec: CampaignSpec) -> list[str]:
    """For each row of `matrix` (the models' union features), its top reasons joined by '; '."""
    if len(matrix) == 0:
        return []
    if spec.scene == "product" and spec.product in models.propensity.boosters:
        model, key = models.propensity, str(spec.product)
    else:
        model, key = models.churn, "churn"
    x = np.ascontiguousarray(matrix[:, models.columns[model.family]])
    contributions = model.contributions(key, x)
    out = []
    for i in range(len(x)):
        order = np.argsort(-contributions[i])[:REASONS]
        words = [
            phrase(model.features[j], float(x[i, j])) for j in order if contributions[i, j] > 0
        ]
        out.append("; ".join(words) or "selected by the campaign rule")
    return out


REASONS = 3
