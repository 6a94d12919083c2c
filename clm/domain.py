"""The bank's vocabulary: products, lifecycle stages, tiers and groups.

The order of each tuple is part of the contract: a categorical feature's
integer code is its index here, and `STAGES` is the stage model's class order.
"""

from __future__ import annotations

PRODUCTS: tuple[str, ...] = (
    "current_account",
    "time_deposit",
    "wealth_management",
    "mutual_fund",
    "credit_card",
    "consumer_loan",
    "mortgage",
    "insurance",
    "pension",
)
# Everyone holds a current account, so propensity is for the others.
PROPENSITY_PRODUCTS: tuple[str, ...] = PRODUCTS[1:]

STAGES: tuple[str, ...] = ("honeymoon", "growing", "mature", "declining", "dormant", "churned")
VALUE_TIERS: tuple[str, ...] = ("mass", "affluent", "private")
SEGMENTS: tuple[str, ...] = ("retiree", "middle_class", "young_parents", "payroll", "young_digital")
ACQUISITION_CHANNELS: tuple[str, ...] = ("branch", "app", "referral", "payroll", "campus_merchant")
REGIONS: tuple[str, ...] = ("north", "east", "south", "west", "central")
TXN_CHANNELS: tuple[str, ...] = ("branch", "app", "atm", "pos", "online", "transfer")
TXN_CATEGORIES: tuple[str, ...] = (
    "salary",
    "transfer_in",
    "transfer_out",
    "card_spend",
    "cash",
    "bill_payment",
    "investment",
    "loan_repayment",
    "interest",
    "fee",
)
SCENARIOS: tuple[str, ...] = ("baseline", "rate_shock", "retail_purchases")


def code(vocabulary: tuple[str, ...], value: str | None) -> int:
    """The stable integer code of `value` (-1 when unknown or missing)."""
    try:
        return vocabulary.index(value) if value is not None else -1
    except ValueError:
        return -1
