from pathlib import Path

import pytest

from clm.settings import Settings, SettingsError


def test_defaults_resolve_under_home(tmp_path: Path) -> None:
    s = Settings.load(home=tmp_path, env={})
    assert s.home == tmp_path.resolve()
    assert s.tracking_uri == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow/mlflow.db"
    assert s.models.churn.registered_name == "clm-churn"
    assert s.aliases.champion == "champion"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("serving:\n  pol_seconds: 3\n")
    with pytest.raises(SettingsError, match=r"unknown key 'serving.pol_seconds'"):
        Settings.load(config=cfg, home=tmp_path, env={})


def test_tool_environment_wins(tmp_path: Path) -> None:
    s = Settings.load(
        home=tmp_path,
        env={
            "MLFLOW_TRACKING_URI": "postgresql://u@h/db",
            "CLM_API_KEYS": "key-one, key-two,,",
            "CLM_HOME": "/nope",
        },
    )
    assert s.tracking_uri == "postgresql://u@h/db"
    assert s.registry_uri == "postgresql://u@h/db"
    assert s.api_keys == ("key-one", "key-two")
    assert "key-one" not in repr(s)


def test_secrets_cannot_come_from_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("admin_token: x\n")
    with pytest.raises(SettingsError, match="admin_token"):
        Settings.load(config=cfg, home=tmp_path, env={})


def test_public_dict_has_no_secrets(tmp_path: Path) -> None:
    s = Settings.load(home=tmp_path, env={"CLM_ADMIN_TOKEN": "sekret", "CLM_API_KEYS": "k1"})
    text = repr(s.public_dict())
    assert "sekret" not in text and "k1" not in text


def test_training_threads_default_to_one_per_booster_and_reject_negatives(tmp_path: Path) -> None:
    # One thread per booster, boosters side by side (bench/train.py measures why).
    assert Settings.load(home=tmp_path, env={}).training.threads == 1
    config = tmp_path / "c.yaml"
    config.write_text("training:\n  threads: -1\n")
    with pytest.raises(SettingsError, match="threads"):
        Settings.load(config=config, home=tmp_path, env={})
