"""One typed settings object, read once at the entry point and passed down.

`Settings.load()` reads `mlflow.yaml` (or `$CLM_CONFIG`), resolves the workspace
(`$CLM_HOME`, default `./workspace`) and lets each tool's own environment
variables win (`MLFLOW_TRACKING_URI`, `MLFLOW_REGISTRY_URI`). No other module
reads the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clm.families import FAMILIES, SPECS

REPO_ROOT = Path(__file__).resolve().parents[1]


class SettingsError(ValueError):
    """The configuration file is missing, malformed or has unknown keys."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MlflowSettings(_Section):
    tracking_uri: str = "sqlite:///{home}/mlflow/mlflow.db"
    registry_uri: str | None = None
    artifact_location: str = "{home}/mlflow/artifacts"
    training_experiment: str = "clm-training"
    monitoring_experiment: str = "clm-monitoring"


class ModelSettings(_Section):
    registered_name: str
    feature_service: str


class ModelsSettings(_Section):
    # Defaults from the family specs (clm/families.py); mlflow.yaml may rename them.
    churn: ModelSettings = ModelSettings(
        registered_name=SPECS["churn"].registered_name,
        feature_service=SPECS["churn"].feature_service,
    )
    propensity: ModelSettings = ModelSettings(
        registered_name=SPECS["propensity"].registered_name,
        feature_service=SPECS["propensity"].feature_service,
    )
    stage: ModelSettings = ModelSettings(
        registered_name=SPECS["stage"].registered_name,
        feature_service=SPECS["stage"].feature_service,
    )

    def family(self, name: str) -> ModelSettings:
        if name not in FAMILIES:
            raise SettingsError(
                f"unknown model family {name!r}; expected one of {', '.join(FAMILIES)}"
            )
        return getattr(self, name)


class AliasSettings(_Section):
    champion: str = "champion"
    challenger: str = "challenger"


class TrainingSettings(_Section):
    trials: int = Field(20, ge=1)
    seed: int = 42
    optuna_storage: str | None = None
    validation_months: int = Field(3, ge=1)
    test_months: int = Field(1, ge=1)
    # LightGBM threads per booster; 0 = every core of the machine. One thread per booster
    # and `workers` boosters at once: OpenMP threads that wait on each other at every
    # split stall on a box busier than its cores (a 348k-row fit: 47 s with 1 thread,
    # 238 s with 2, at load 15; bench/results-training.md).
    threads: int = Field(1, ge=0)
    # Boosters trained at the same time (families, products, tuning boosters); 0 = cores.
    workers: int = Field(0, ge=0)
    # Rows a final booster trains and stops on, at most: a stratified sample (every class
    # kept up to an equal quota, the largest classes sampled) weighted by 1/rate, so
    # probabilities stay calibrated; 0 = every row.
    final_max_rows: int = Field(200_000, ge=0)


class PromotionSettings(_Section):
    margin: float = 0.002
    segment_tolerance: float = 0.02
    primary_metric: dict[str, str] = {"churn": "auc", "propensity": "mean_auc", "stage": "macro_f1"}


class ServingSettings(_Section):
    poll_seconds: float = Field(10, gt=0)
    max_ids: int = Field(1000, ge=1)
    # 1,000 rows of the 66 features at full float precision are ~3 MB of JSON.
    max_body_bytes: int = Field(8_388_608, ge=1024)
    # A client that sends no complete body within this many seconds gets 408.
    body_timeout_seconds: float = Field(10.0, gt=0)
    # Explanations cost ~100x a plain score: at most this many ids or rows per
    # request with explain, this many such requests in flight per API key, and
    # this many in the whole service (more: 429 with Retry-After).
    max_explain_ids: int = Field(100, ge=1)
    explain_per_key: int = Field(1, ge=1)
    explain_queue: int = Field(4, ge=1)
    # Who answers for the API (shown on the API page, `/`).
    contact_name: str = "clm maintainers"
    contact_email: str | None = None
    prediction_log_flush_seconds: float = Field(1.0, gt=0, le=1.0)
    # Churn risk_band on the 90-day churn probability: low below medium, medium
    # below high, high from it.
    risk_band_medium: float = Field(0.10, gt=0, lt=1)
    risk_band_high: float = Field(0.30, gt=0, le=1)

    def model_post_init(self, context: Any, /) -> None:
        if self.risk_band_medium >= self.risk_band_high:
            raise SettingsError(
                f"serving.risk_band_medium ({self.risk_band_medium}) must be below "
                f"serving.risk_band_high ({self.risk_band_high})"
            )


class MonitoringSettings(_Section):
    psi_amber: float = 0.10
    psi_red: float = 0.25
    # Chance that a calm period (no change) gets any amber/red PSI, over all columns
    # and segments of one verdict: PSI is judged against its sampling noise too.
    drift_false_alarm_rate: float = Field(0.01, gt=0, lt=1)
    bins: int = Field(10, ge=2)
    performance_min_age_days: int = 90
    # Data-quality bands (shares of rows, 0..1) and the rest of the monitoring knobs.
    missing_increase_amber: float = 0.05
    missing_increase_red: float = 0.20
    out_of_range_amber: float = 0.05
    out_of_range_red: float = 0.20
    unknown_customers_amber: float = 0.01
    unknown_customers_red: float = 0.05
    min_segment_rows: int = Field(200, ge=1)
    auc_drop_amber: float = 0.03
    auc_drop_red: float = 0.07
    default_window_days: int = Field(30, ge=1)


class FeatureSettings(_Section):
    profile: Literal["embedded", "production"] = "embedded"
    redis_connection: str = "127.0.0.1:6379"
    registry_postgres: str = "postgresql+psycopg://postgres@127.0.0.1:5432/clm_feast"
    # Feast project: names the registry entries, SQLite tables and Redis keys.
    project: str = Field("clm", pattern=r"^[a-z][a-z0-9_]*$")
    # Feast's offline store (training sets, materialization): null = by profile, DuckDB
    # (embedded) or Spark (production; settings.spark says where it runs).
    offline_store: Literal["duckdb", "spark"] | None = None
    # Memory the feature build's DuckDB may use before it spills to disk.
    duckdb_memory_limit: str = Field(
        "6GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"
    )

    @property
    def offline_engine(self) -> str:
        """The offline store in use: `offline_store`, else DuckDB (embedded) or Spark (production)."""
        if self.offline_store:
            return self.offline_store
        return "spark" if self.profile == "production" else "duckdb"


class CampaignSettings(_Section):
    # SQLAlchemy URL of the campaign registry; null: SQLite under the workspace (embedded
    # profile) or `production_database_url` (production profile). "{home}" is the workspace.
    database_url: str | None = None
    production_database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/clm_campaigns"
    # A customer is put in the treatment group of at most this many campaigns per month.
    monthly_contact_cap: int = Field(2, ge=1)
    # A campaign is running (its members are suppressed from new lists for the same
    # product or measure) for this many days after its list date.
    running_days: int = Field(90, ge=1)


class SparkSettings(_Section):
    """The scale-out engine (`--engine spark`; docs/scale.md). Tests use local[2]."""

    # local[N] runs in this process's JVM; spark://host:7077, yarn, k8s://... a cluster.
    master: str = "local[2]"
    app_name: str = "clm"
    driver_memory: str = Field("2g", pattern=r"^\d+[kmgt]?$")
    executor_memory: str = Field("2g", pattern=r"^\d+[kmgt]?$")
    shuffle_partitions: int = Field(8, ge=1)
    # Scratch space for shuffles and spills; "{home}" is the workspace.
    local_dir: str = "{home}/spark/tmp"
    # Any other Spark property, passed as is (spark.executor.instances, s3a keys, ...).
    conf: dict[str, str] = {}


class Settings(_Section):
    """Everything a command needs, resolved. `home` is absolute."""

    home: Path
    config_path: Path | None = None
    mlflow: MlflowSettings = MlflowSettings()
    models: ModelsSettings = ModelsSettings()
    aliases: AliasSettings = AliasSettings()
    training: TrainingSettings = TrainingSettings()
    promotion: PromotionSettings = PromotionSettings()
    serving: ServingSettings = ServingSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    features: FeatureSettings = FeatureSettings()
    campaigns: CampaignSettings = CampaignSettings()
    spark: SparkSettings = SparkSettings()
    # Secrets come from the environment only, never from files; never logged.
    api_keys: tuple[str, ...] = Field(default=(), repr=False)
    admin_token: str | None = Field(default=None, repr=False)

    # --- workspace layout (see docs/contracts.md) ---
    @property
    def raw_dir(self) -> Path:
        return self.home / "raw"

    @property
    def feature_dir(self) -> Path:
        return self.home / "features"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def predictions_dir(self) -> Path:
        return self.home / "predictions"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri.format(home=self.home.as_posix())

    @property
    def registry_uri(self) -> str:
        if self.mlflow.registry_uri:
            return self.mlflow.registry_uri.format(home=self.home.as_posix())
        return self.tracking_uri

    @property
    def artifact_location(self) -> str:
        return self.mlflow.artifact_location.format(home=self.home.as_posix())

    @property
    def campaign_database_url(self) -> str:
        if self.campaigns.database_url:
            return self.campaigns.database_url.format(home=self.home.as_posix())
        if self.features.profile == "production":
            return self.campaigns.production_database_url
        return f"sqlite:///{(self.home / 'campaigns' / 'campaigns.db').as_posix()}"

    @property
    def spark_local_dir(self) -> str:
        return self.spark.local_dir.format(home=self.home.as_posix())

    @property
    def optuna_storage(self) -> str:
        if self.training.optuna_storage:
            return self.training.optuna_storage.format(home=self.home.as_posix())
        return f"sqlite:///{(self.home / 'optuna' / 'studies.db').as_posix()}"

    def public_dict(self) -> dict[str, Any]:
        """The resolved settings without secrets, for logging to MLflow."""
        data = self.model_dump(mode="json", exclude={"api_keys", "admin_token"})
        data["resolved"] = {
            "tracking_uri": self.tracking_uri,
            "registry_uri": self.registry_uri,
            "optuna_storage": _redact(self.optuna_storage),
            "campaign_database_url": _redact(self.campaign_database_url),
        }
        return data

    @classmethod
    def load(
        cls,
        config: str | os.PathLike[str] | None = None,
        home: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Settings:
        """Read the configuration once. `env` defaults to `os.environ` (entry points only)."""
        env = dict(os.environ if env is None else env)
        path = _config_path(config, env)
        data: dict[str, Any] = {}
        if path is not None:
            try:
                loaded = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
            if not isinstance(loaded, dict):
                raise SettingsError(f"{path}: expected a mapping at the top level")
            data.update(loaded)
        for forbidden in ("home", "config_path", "api_keys", "admin_token"):
            if forbidden in data:
                raise SettingsError(
                    f"{path}: key {forbidden!r} cannot be set in the file "
                    "(use CLM_HOME, CLM_CONFIG, CLM_API_KEYS, CLM_ADMIN_TOKEN)"
                )
        home_path = Path(home or env.get("CLM_HOME") or "workspace").expanduser().resolve()
        data["home"] = home_path
        data["config_path"] = path
        keys = [k.strip() for k in env.get("CLM_API_KEYS", "").split(",") if k.strip()]
        data["api_keys"] = tuple(keys)
        data["admin_token"] = env.get("CLM_ADMIN_TOKEN") or None
        if env.get("CLM_PROFILE"):
            data.setdefault("features", {})
            data["features"] = {**data["features"], "profile": env["CLM_PROFILE"]}
        mlflow_section = dict(data.get("mlflow") or {})
        if env.get("MLFLOW_TRACKING_URI"):
            mlflow_section["tracking_uri"] = env["MLFLOW_TRACKING_URI"]
        if env.get("MLFLOW_REGISTRY_URI"):
            mlflow_section["registry_uri"] = env["MLFLOW_REGISTRY_URI"]
        if mlflow_section:
            data["mlflow"] = mlflow_section
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SettingsError(_explain(exc, path)) from None


def _config_path(config: str | os.PathLike[str] | None, env: dict[str, str]) -> Path | None:
    if config is not None or env.get("CLM_CONFIG"):
        path = Path(config or env["CLM_CONFIG"]).expanduser()
        if not path.is_file():
            raise SettingsError(f"configuration file not found: {path}")
        return path.resolve()
    for candidate in (Path.cwd() / "mlflow.yaml", REPO_ROOT / "mlflow.yaml"):
        if candidate.is_file():
            return candidate.resolve()
    return None


def _explain(exc: ValidationError, path: Path | None) -> str:
    where = str(path) if path else "settings"
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key {key!r}")
        else:
            lines.append(f"{where}: {key}: {err['msg']}")
    return "\n".join(lines)


def _redact(uri: str) -> str:
    """Hide a password in a database URI."""
    if "://" in uri and "@" in uri:
        scheme, rest = uri.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return f"{scheme}://{creds}@{host}"
    return uri
