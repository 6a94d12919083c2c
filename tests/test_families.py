"""The family spec (clm/families.py) is what the rest of the code looks up."""

from __future__ import annotations

import pytest

from clm.domain import PROPENSITY_PRODUCTS, STAGES
from clm.families import FAMILIES, FamilyError, parse_families, spec
from clm.settings import Settings


def test_parse_families_keeps_canonical_order_and_names_unknown_ones() -> None:
    assert parse_families("stage,churn") == ("churn", "stage")
    assert parse_families(" churn , churn ") == ("churn",)
    assert parse_families(None) == parse_families("all") == FAMILIES
    with pytest.raises(FamilyError, match="'churm'.*churn, propensity, stage"):
        parse_families("churn,churm")


def test_default_settings_take_their_names_from_the_spec(tmp_path: object) -> None:
    models = Settings.load(home=tmp_path).models  # type: ignore[arg-type]
    for family in FAMILIES:
        assert models.family(family).registered_name == spec(family).registered_name
        assert models.family(family).feature_service == spec(family).feature_service


@pytest.mark.parametrize("family", FAMILIES)
def test_score_columns_are_what_the_model_directory_scores(family: str) -> None:
    """The standalone pyfunc loader (training/booster_model.py, copied into each model
    directory) names its outputs as the spec does."""
    from training.booster_model import BoosterModel
    from training.model_format import manifest_for

    keys = spec(family).booster_keys({"products": ["credit_card", "mortgage"]})
    manifest = manifest_for(family, "svc", ["a"], {k: f"{k}.txt" for k in keys})
    model = BoosterModel(manifest, {})
    assert list(spec(family).score_columns(manifest)) == model.score_columns()


def test_spec_shapes() -> None:
    assert spec("churn").label_columns == ("churn_90d",)
    assert spec("stage").label_columns == ("stage_next",)
    assert spec("propensity").label_columns == tuple(f"adopt_{p}_90d" for p in PROPENSITY_PRODUCTS)
    assert spec("stage").outputs_per_booster() == len(STAGES)
    assert spec("propensity").booster_keys({"products": ["mortgage"]}) == ("mortgage",)
    assert spec("churn").booster_keys() == ("churn",)
