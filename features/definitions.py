"""Feast definitions for `feast` commands: `CLM_HOME=... feast -c features plan|apply`.

This file is what Feast scans (everything else in features/ is in .feastignore).
It is an entry point like the CLI: it reads the settings from the environment
once and exposes the same objects `clm features apply` registers
(features/catalog.py builds them).
"""

from clm.settings import Settings
from features.catalog import FEATURE_FILE, feast_objects

_settings = Settings.load()
_objects = feast_objects(
    (_settings.feature_dir / FEATURE_FILE).as_posix(), _settings.features.offline_engine
)

customer = _objects["customer"]
customer_features_source = _objects["customer_features_source"]
customer_events_push = _objects["customer_events_push"]
customer_profile = _objects["customer_profile"]
customer_activity = _objects["customer_activity"]
customer_balances = _objects["customer_balances"]
customer_holdings = _objects["customer_holdings"]
customer_digital = _objects["customer_digital"]
customer_moments = _objects["customer_moments"]
customer_history = _objects["customer_history"]
customer_stage = _objects["customer_stage"]
churn_v1 = _objects["churn_v1"]
propensity_v1 = _objects["propensity_v1"]
stage_v1 = _objects["stage_v1"]
churn_v2 = _objects["churn_v2"]
propensity_v2 = _objects["propensity_v2"]
stage_v2 = _objects["stage_v2"]
