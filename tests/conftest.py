"""Shared fixtures: one small simulated bank per session, built up step by step.

bank_settings (raw tables) -> feature_settings (features built, applied, materialized)
-> trained_settings (three model families registered) -> running service.
Each step lives in tests/fixtures/ and is built at most once per session.
"""

pytest_plugins = [
    "tests.fixtures.bank",
    "tests.fixtures.feature_store",
    "tests.fixtures.trained",
    "tests.fixtures.service",
]
