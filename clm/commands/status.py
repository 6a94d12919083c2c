"""`clm status`: the workspace at a glance.

Data range, feature snapshots, each family's champion and challenger with their test
metrics, the last drift and performance verdicts, and the service's health when it
runs. Reads only: files under $CLM_HOME, the MLflow registry, one HTTP GET.
`collect` returns the facts; the command renders them (or prints them as JSON).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clm.context import State, user_errors

if TYPE_CHECKING:
    from clm.settings import Settings

# The test metrics shown per family (when logged), the primary one first.
SHOWN_METRICS = {
    "churn": ("test_auc", "oracle_auc", "test_top_decile_lift", "test_calibration_ece"),
    "propensity": ("test_mean_auc", "oracle_mean_auc"),
    "stage": ("test_macro_f1", "test_baseline_macro_f1", "test_log_loss"),
}
MONITOR_KINDS = ("drift", "performance")


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def status(
    ctx: typer.Context,
    url: Annotated[
        str,
        typer.Option("--url", metavar="URL", help="Where to look for the scoring service."),
    ] = "http://127.0.0.1:3000",
    as_json: Annotated[bool, typer.Option("--json", help="The same facts as JSON.")] = False,
) -> None:
    """The workspace at a glance: data, features, models, monitoring verdicts, service."""
    state: State = ctx.obj
    with user_errors():
        facts = collect(state.settings, url=url)
    if as_json:
        typer.echo(json.dumps(facts, indent=2, default=str))
    else:
        render(facts)


def collect(settings: Settings, *, url: str, progress: bool = True) -> dict[str, Any]:
    from clm.progress import step_progress

    # Importing MLflow and opening its registry takes ~10 s: say so while it happens.
    with step_progress("reading the MLflow registry", None, progress, transient=True):
        registered = models(settings)
    return {
        "home": str(settings.home),
        "config": str(settings.config_path) if settings.config_path else None,
        "data": data_range(settings),
        "features": feature_snapshots(settings),
        "models": registered,
        "monitoring": last_verdicts(settings),
        "service": service_health(url),
    }


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def month_end(snapshot_ts: str) -> str:
    """A snapshot's timestamp is the first instant after its month end: name the month end."""
    return (datetime.fromisoformat(snapshot_ts) - timedelta(microseconds=1)).date().isoformat()


def data_range(settings: Settings) -> dict[str, Any] | None:
    meta = _read_json(settings.raw_dir / "meta.json")
    if meta is None:
        return None
    return {
        "source": meta.get("source"),
        "first_month": meta.get("start_month") or meta.get("first_month"),
        "last_month": meta.get("end_month") or meta.get("last_month"),
        "customers": meta.get("customers_total") or meta.get("customers"),
        "scenario": meta.get("scenario"),
    }


def feature_snapshots(settings: Settings) -> dict[str, Any] | None:
    build = _read_json(settings.feature_dir / "build.json")
    if build is None:
        return None
    snapshots = sorted(build.get("snapshots") or [])
    return {
        "rows": build.get("rows"),
        "customers": build.get("customers"),
        "snapshots": len(snapshots),
        "first_month_end": month_end(snapshots[0]) if snapshots else None,
        "last_month_end": month_end(snapshots[-1]) if snapshots else None,
        "features": len(build.get("features") or []),
        "feast_applied": (settings.feast_dir / "registry.db").exists(),
    }


def models(settings: Settings) -> dict[str, Any]:
    """Per family: the champion and the challenger (version, date, feature service, metrics)."""
    from clm.settings import FAMILIES

    if not _has_registry(settings):
        return {family: None for family in FAMILIES}
    from clm import mlflow_access

    client = mlflow_access.client(settings)
    found: dict[str, Any] = {}
    for family in FAMILIES:
        spec = settings.models.family(family)
        roles = {}
        for role, alias in (
            ("champion", settings.aliases.champion),
            ("challenger", settings.aliases.challenger),
        ):
            roles[role] = _version(client, spec.registered_name, alias, family)
        found[family] = {"registered_name": spec.registered_name, **roles}
    return found


def _has_registry(settings: Settings) -> bool:
    uri = settings.registry_uri
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).exists()


def _version(client: Any, name: str, alias: str, family: str) -> dict[str, Any] | None:
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    metrics: dict[str, float] = {}
    if version.run_id:
        try:
            logged = client.get_run(version.run_id).data.metrics
        except MlflowException:
            logged = {}
        metrics = {k: round(logged[k], 4) for k in SHOWN_METRICS[family] if k in logged}
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC)
    return {
        "version": str(version.version),
        "registered": created.strftime("%Y-%m-%d %H:%M UTC"),
        "feature_service": (version.tags or {}).get("clm.feature_service"),
        "metrics": metrics,
    }


def last_verdicts(settings: Settings) -> dict[str, dict[str, Any]]:
    """The newest drift and performance summary of each family (reports/<kind>/<stamp>/)."""
    found: dict[str, dict[str, Any]] = {}
    for kind in MONITOR_KINDS:
        folder = settings.reports_dir / kind
        runs = (
            sorted((p for p in folder.iterdir() if p.is_dir()), reverse=True)
            if folder.is_dir()
            else []
        )
        latest: dict[str, Any] = {}
        for run in runs:
            for path in sorted(run.glob(f"*-{kind}.json")):
                family = path.name.removesuffix(f"-{kind}.json")
                summary = _read_json(path)
                if family in latest or summary is None:
                    continue
                latest[family] = {
                    "verdict": summary.get("verdict"),
                    "version": summary.get("version"),
                    "created": summary.get("created"),
                    "red_reasons": summary.get("red_reasons") or [],
                    "path": str(path),
                }
        found[kind] = latest
    return found


def service_health(url: str) -> dict[str, Any]:
    """BentoML's health route (no key needed); the service is "not running" if nothing answers."""
    import urllib.error
    import urllib.request

    health = url.rstrip("/") + "/readyz"
    try:
        with urllib.request.urlopen(health, timeout=2) as response:  # noqa: S310 (our own URL)
            return {"url": url, "state": "ready", "status": response.status}
    except urllib.error.HTTPError as exc:
        return {"url": url, "state": "not ready", "status": exc.code}
    except (urllib.error.URLError, OSError):
        return {"url": url, "state": "not running", "status": None}


def render(facts: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    out = console.print
    out(f"[bold]workspace[/] {facts['home']}")
    data = facts["data"]
    if data is None:
        out("[bold]data[/]      none yet: run `clm simulate` or `clm ingest`")
    else:
        out(
            f"[bold]data[/]      {data['source']}, {data['first_month']} to {data['last_month']}, "
            f"{data['customers']:,} customers"
            + (f", scenario {data['scenario']}" if data.get("scenario") else "")
        )
    features = facts["features"]
    if features is None:
        out("[bold]features[/]  not built: run `clm features build`")
    else:
        out(
            f"[bold]features[/]  {features['snapshots']} snapshots, month ends "
            f"{features['first_month_end']} to {features['last_month_end']}, "
            f"{features['rows']:,} rows, {features['features']} features; Feast "
            + ("applied" if features["feast_applied"] else "not applied (`clm features apply`)")
        )
    out("[bold]models[/]")
    for family, entry in facts["models"].items():
        if entry is None or (entry["champion"] is None and entry["challenger"] is None):
            out(f"  {family:<11} no version: run `clm train {family}`")
            continue
        for role in ("champion", "challenger"):
            version = entry[role]
            if version is None:
                out(f"  {family:<11} {role:<10} none")
                continue
            if (
                role == "challenger"
                and entry["champion"]
                and (version["version"] == entry["champion"]["version"])
            ):
                out(f"  {family:<11} {role:<10} the champion itself")
                continue
            metrics = ", ".join(f"{k} {v:.3f}" for k, v in version["metrics"].items())
            out(
                f"  {family:<11} {role:<10} v{version['version']} ({version['registered']}, "
                f"{version['feature_service']}) {metrics}"
            )
    out("[bold]monitoring[/]")
    colours = {"green": "green", "amber": "yellow", "red": "red"}
    any_verdict = False
    for kind, families in facts["monitoring"].items():
        for family, verdict in families.items():
            any_verdict = True
            colour = colours.get(str(verdict["verdict"]), "white")
            created = str(verdict["created"] or "")[:10]
            out(
                f"  {kind:<11} {family:<10} [{colour}]{str(verdict['verdict']).upper()}[/] "
                f"v{verdict['version']} on {created}  {verdict['path']}"
            )
    if not any_verdict:
        out("  no verdicts yet: `clm monitor drift` / `clm monitor performance`")
    service = facts["service"]
    out(
        f"[bold]service[/]   {service['url']}: {service['state']}"
        + ("" if service["state"] != "not running" else " (start it with `clm serve`)")
    )
