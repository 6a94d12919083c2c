"""The MLflow model registry: register, gated promotion and rollback.

A new version gets alias `challenger`, and `champion` when there is none.
`run_promote` scores challenger and champion on the same most recent
out-of-time holdout and moves `champion` only if every gate of mlflow.yaml's
`promotion` section passes; the report (JSON + markdown) goes to the
challenger's run and its verdict into tags on the version. The champion history
is a JSON list in the registered model's tag `clm.champion_history` (oldest
first, last = current champion), so `run_rollback` knows where to go back to.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clm import atomic, mlflow_access
from clm.errors import ClmError
from clm.segments import SEGMENTS
from clm.settings import FAMILIES
from training import baselines
from training.booster_model import BoosterModel
from training.evaluate import lower_is_better, primary_value

if TYPE_CHECKING:
    import pandas as pd

    from clm.settings import Settings

HISTORY_TAG = "clm.champion_history"
ROLLBACKS_TAG = "clm.rollbacks"
# Segments smaller than this are reported but not gated: their metric is noise.
MIN_SEGMENT_ROWS = 100


class RegistryError(ClmError):
    """The registry lacks what the command needs (no challenger, no previous champion)."""


class PromotionGateFailed(ClmError):
    """A promotion gate failed; the champion stays where it was."""

    exit_code = 1


def _families(model: str) -> tuple[str, ...]:
    if model == "all":
        return FAMILIES
    if model not in FAMILIES:
        raise RegistryError(
            f"unknown model {model!r}; expected one of {', '.join(FAMILIES)} or all"
        )
    return (model,)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def champion_history(client: Any, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags
    return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]


def _set_champion(
    client: Any, settings: Settings, name: str, version: str, history: list[str]
) -> None:
    client.set_registered_model_alias(name, settings.aliases.champion, version)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))


def register_version(
    settings: Settings,
    family: str,
    model_uri: str,
    run_id: str,
    *,
    features: list[str],
    feature_service: str,
    extra_tags: dict[str, str] | None = None,
    may_be_champion: bool = True,
) -> str:
    """Register the logged model as a new version; alias challenger, and champion if there
    is none and the version passed its baseline gates (`may_be_champion`)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow_access.client(settings)
    name = settings.models.family(family).registered_name
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description=f"Customer lifecycle {family} model (clm train {family})."
        )
    tags = {
        "clm.family": family,
        "clm.feature_service": feature_service,
        "clm.features": json.dumps(features),
        "clm.run_id": run_id,
        **(extra_tags or {}),
    }
    # Registering a logged model (`models:/<model id>`) resolves it through the global URIs.
    with mlflow_access.fluent_tracking(settings):
        version = str(mlflow.register_model(model_uri, name, tags=tags).version)
    client.set_registered_model_alias(name, settings.aliases.challenger, version)
    if may_be_champion and _alias_version(client, name, settings.aliases.champion) is None:
        _set_champion(client, settings, name, version, [*champion_history(client, name), version])
        client.set_model_version_tag(name, version, "clm.champion_since", _now())
    return version


def is_champion(settings: Settings, family: str, version: str) -> bool:
    """Whether `version` holds the champion alias now."""
    client = mlflow_access.client(settings)
    name = settings.models.family(family).registered_name
    return _alias_version(client, name, settings.aliases.champion) == version


def load_version(settings: Settings, family: str, version: str) -> BoosterModel:
    """Download a version's model directory and load its boosters (text, never pickles)."""
    name = settings.models.family(family).registered_name
    with tempfile.TemporaryDirectory(prefix="clm-version-") as tmp:
        return BoosterModel.load(mlflow_access.download_version(settings, name, version, tmp))


def scores_usable(model: BoosterModel, rows: pd.DataFrame) -> bool:
    return all(f in rows.columns for f in model.features)


def _gate(name: str, passed: bool, reason: str, **details: Any) -> dict[str, Any]:
    return {"gate": name, "passed": bool(passed), "reason": reason, "details": details}


def _improvement(metric: str, challenger: float, champion: float) -> float:
    """How much better the challenger is (positive = better), whatever the metric's direction."""
    return champion - challenger if lower_is_better(metric) else challenger - champion


def evaluate_gates(
    settings: Settings,
    family: str,
    challenger: BoosterModel,
    champion: BoosterModel | None,
    holdout: pd.DataFrame,
    service_features: list[str],
) -> list[dict[str, Any]]:
    """The promotion gates, each with a verdict and the reason for it."""
    promo = settings.promotion
    metric = promo.primary_metric[family]
    gates = []

    same = challenger.features == list(service_features)
    missing = [f for f in service_features if f not in challenger.features]
    extra = [f for f in challenger.features if f not in service_features]
    gates.append(
        _gate(
            "features_match_service",
            same,
            "the challenger's feature list equals the feature service's"
            if same
            else f"feature list differs from service {challenger.manifest['feature_service']!r}: "
            f"missing {missing}, extra {extra}"
            + (", order differs" if not (missing or extra) else ""),
            missing=missing,
            extra=extra,
        )
    )
    usable = all(f in holdout.columns for f in challenger.features)
    scores = challenger.score(holdout) if usable else None
    finite = scores is not None and bool(np.isfinite(scores.to_numpy()).all())
    in_range = scores is not None and bool(
        ((scores.to_numpy() >= 0) & (scores.to_numpy() <= 1)).all()
    )
    gates.append(
        _gate(
            "predictions_finite",
            finite and in_range,
            f"all {0 if scores is None else scores.size} holdout scores are finite probabilities"
            if finite and in_range
            else "the challenger cannot be scored on the holdout"
            if scores is None
            else "some holdout scores are NaN/inf or outside [0, 1]",
        )
    )
    if scores is None:
        gates.append(_gate(f"{metric}_improves", False, "challenger not scorable"))
        gates.append(_gate("segments_within_tolerance", False, "challenger not scorable"))
        return gates

    challenger_value = primary_value(family, metric, scores, holdout)
    champion_scores = None
    if champion is not None and all(f in holdout.columns for f in champion.features):
        champion_scores = champion.score(holdout)
    if champion is None or champion_scores is None:
        why = (
            "there is no champion"
            if champion is None
            else "the champion's features are no longer served"
        )
        gates.append(
            _gate(
                f"{metric}_improves",
                bool(np.isfinite(challenger_value)),
                f"{why}; challenger {metric}={challenger_value:.4f}",
                challenger=challenger_value,
            )
        )
        gates.append(_gate("segments_within_tolerance", True, f"{why}: nothing to regress from"))
        return gates

    champion_value = primary_value(family, metric, champion_scores, holdout)
    gain = _improvement(metric, challenger_value, champion_value)
    gates.append(
        _gate(
            f"{metric}_improves",
            bool(np.isfinite(gain) and gain >= promo.margin),
            f"challenger {metric}={challenger_value:.4f} vs champion {champion_value:.4f}: "
            f"improvement {gain:+.4f} {'>=' if gain >= promo.margin else '<'} margin {promo.margin}",
            challenger=challenger_value,
            champion=champion_value,
            improvement=gain,
            margin=promo.margin,
        )
    )

    segments = []
    for column in SEGMENTS:
        for value in sorted(holdout[column].dropna().unique()):
            mask = (holdout[column] == value).to_numpy()
            rows = holdout[mask]
            entry: dict[str, Any] = {"segment": f"{column}={value}", "rows": int(mask.sum())}
            if mask.sum() < MIN_SEGMENT_ROWS:
                entry.update(gated=False, note=f"fewer than {MIN_SEGMENT_ROWS} rows")
                segments.append(entry)
                continue
            ch = primary_value(family, metric, scores[mask], rows)
            cp = primary_value(family, metric, champion_scores[mask], rows)
            change = _improvement(metric, ch, cp)
            if not (np.isfinite(ch) and np.isfinite(cp)):
                entry.update(gated=False, note=f"{metric} undefined (one class only)")
            else:
                entry.update(
                    gated=True,
                    challenger=ch,
                    champion=cp,
                    change=change,
                    regressed=bool(change < -promo.segment_tolerance),
                )
            segments.append(entry)
    regressed = [s for s in segments if s.get("regressed")]
    gates.append(
        _gate(
            "segments_within_tolerance",
            not regressed,
            f"no segment regresses more than {promo.segment_tolerance}"
            if not regressed
            else "regressed beyond tolerance "
            f"{promo.segment_tolerance}: "
            + ", ".join(f"{s['segment']} ({s['change']:+.4f})" for s in regressed),
            segments=segments,
            tolerance=promo.segment_tolerance,
        )
    )
    return gates


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Promotion of {report['registered_model']} version {report['challenger_version']}",
        "",
        f"- at: {report['at']}",
        f"- champion before: {report['champion_version'] or 'none'}",
        f"- holdout: snapshots {', '.join(report['holdout']['snapshots'])}, {report['holdout']['rows']} rows",
        f"- verdict: **{'PROMOTED' if report['passed'] else 'REJECTED (champion unchanged)'}**",
        "",
        "| gate | passed | why |",
        "|---|---|---|",
    ]
    for gate in report["gates"]:
        lines.append(f"| {gate['gate']} | {'yes' if gate['passed'] else 'NO'} | {gate['reason']} |")
    if report.get("baselines"):
        lines += ["", "| challenger and baselines on the holdout | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in report["baselines"].items()]
    for gate in report["gates"]:
        if gate["gate"] == "segments_within_tolerance" and gate.get("details", {}).get("segments"):
            lines += [
                "",
                "| segment | rows | challenger | champion | change |",
                "|---|---|---|---|---|",
            ]
            for s in gate["details"]["segments"]:
                if s.get("gated"):
                    lines.append(
                        f"| {s['segment']} | {s['rows']} | {s['challenger']:.4f} | {s['champion']:.4f} | {s['change']:+.4f} |"
                    )
                else:
                    lines.append(f"| {s['segment']} | {s['rows']} | | | not gated: {s['note']} |")
    return "\n".join(lines) + "\n"


def promote_family(settings: Settings, family: str, *, progress: bool = False) -> dict[str, Any]:
    """Run the gates for one family, record the report, move champion if all pass."""
    from features import store
    from training.data import load_training_set

    client = mlflow_access.client(settings)
    name = settings.models.family(family).registered_name
    challenger_version = _alias_version(client, name, settings.aliases.challenger)
    if challenger_version is None:
        raise RegistryError(
            f"{name} has no {settings.aliases.challenger!r} version to promote; run `clm train {family}` first"
        )
    champion_version = _alias_version(client, name, settings.aliases.champion)
    if champion_version == challenger_version:
        return {
            "family": family,
            "passed": True,
            "noop": True,
            "challenger_version": challenger_version,
            "message": f"{name} version {challenger_version} is already {settings.aliases.champion}",
        }

    challenger = load_version(settings, family, challenger_version)
    champion = load_version(settings, family, champion_version) if champion_version else None
    training_set = load_training_set(settings, family, progress=progress)
    holdout = training_set.part("test").reset_index(drop=True)
    service = settings.models.family(family).feature_service
    gates = evaluate_gates(
        settings,
        family,
        challenger,
        champion,
        holdout,
        list(store.feature_names(settings, service)),
    )
    # Every champion, the first included, beats its trivial baselines on this holdout.
    if scores_usable(challenger, holdout):
        compared = baselines.compare(training_set, holdout, challenger.score(holdout))
        gates += baselines.baseline_gates(family, compared)
        report_baselines = {k: float(v) for k, v in compared.items()}
    else:
        report_baselines = {}
    passed = all(g["passed"] for g in gates)
    report = {
        "family": family,
        "registered_model": name,
        "challenger_version": challenger_version,
        "champion_version": champion_version,
        "primary_metric": settings.promotion.primary_metric[family],
        "holdout": {
            "snapshots": [str(s.date()) for s in training_set.split.test],
            "rows": int(len(holdout)),
        },
        "gates": gates,
        "baselines": report_baselines,
        "passed": passed,
        "at": _now(),
    }
    _record(settings, client, name, challenger_version, report)
    if passed:
        history = champion_history(client, name)
        if champion_version and (not history or history[-1] != champion_version):
            history.append(champion_version)
        _set_champion(client, settings, name, challenger_version, [*history, challenger_version])
        client.delete_registered_model_alias(name, settings.aliases.challenger)
        client.set_model_version_tag(name, challenger_version, "clm.champion_since", report["at"])
    return report


def _record(
    settings: Settings, client: Any, name: str, version: str, report: dict[str, Any]
) -> None:
    stamp = report["at"].replace(":", "").replace("-", "")
    text = _markdown(report)
    payload = json.dumps(report, indent=2, default=float)
    run_id = client.get_model_version(name, version).run_id
    artifact_dir = f"promotion/{stamp}"
    with tempfile.TemporaryDirectory(prefix="clm-promotion-") as tmp:
        (Path(tmp) / "report.json").write_text(payload)
        (Path(tmp) / "report.md").write_text(text)
        if run_id:
            client.log_artifacts(run_id, tmp, artifact_dir)
    # A copy beside the other reports, for people who do not open MLflow.
    base = settings.reports_dir / "promotion" / f"{report['family']}-v{version}-{stamp}"
    for suffix, content in ((".json", payload), (".md", text)):
        atomic.write_text(base.with_suffix(suffix), content)
    tags = {
        "clm.promotion.status": "passed" if report["passed"] else "failed",
        "clm.promotion.at": report["at"],
        "clm.promotion.gates": json.dumps({g["gate"]: g["passed"] for g in report["gates"]}),
        "clm.promotion.failed_reasons": json.dumps(
            [g["reason"] for g in report["gates"] if not g["passed"]]
        )[:5000],
        "clm.promotion.report": f"runs:/{run_id}/{artifact_dir}/report.md",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def run_promote(settings: Settings, *, model: str) -> None:
    """`clm promote MODEL`: raise PromotionGateFailed (exit 1) when a gate fails."""
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    failures = []
    for family in _families(model):
        report = promote_family(settings, family, progress=True)
        if report.get("noop"):
            console.print(report["message"], highlight=False)
            continue
        for gate in report["gates"]:
            mark = "[green]pass[/]" if gate["passed"] else "[red]FAIL[/]"
            console.print(f"{family} {mark} {gate['gate']}: {gate['reason']}", highlight=False)
        if report["passed"]:
            console.print(
                f"{report['registered_model']} version {report['challenger_version']} is now champion"
            )
        else:
            failures.append(
                f"{report['registered_model']} version {report['challenger_version']} not promoted "
                f"(champion stays {report['champion_version']}): "
                + "; ".join(g["reason"] for g in report["gates"] if not g["passed"])
            )
    if failures:
        raise PromotionGateFailed("\n".join(failures))


def rollback_family(settings: Settings, family: str) -> tuple[str, str]:
    """Move champion back to the previous champion; returns (from_version, to_version)."""
    client = mlflow_access.client(settings)
    name = settings.models.family(family).registered_name
    current = _alias_version(client, name, settings.aliases.champion)
    history = champion_history(client, name)
    if current is not None and (not history or history[-1] != current):
        history.append(current)  # the alias was moved by hand: honour it
    if current is None or len(history) < 2:
        raise RegistryError(
            f"{name} has no previous champion to roll back to (champion history: {history or 'empty'})"
        )
    previous = history[-2]
    _set_champion(client, settings, name, previous, history[:-1])
    at = _now()
    rollbacks = json.loads(client.get_registered_model(name).tags.get(ROLLBACKS_TAG, "[]"))
    rollbacks.append({"from": current, "to": previous, "at": at})
    client.set_registered_model_tag(name, ROLLBACKS_TAG, json.dumps(rollbacks))
    client.set_model_version_tag(name, current, "clm.rolled_back_at", at)
    client.set_model_version_tag(name, previous, "clm.champion_since", at)
    return current, previous


def run_rollback(settings: Settings, *, model: str) -> None:
    """`clm rollback MODEL`."""
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    for family in _families(model):
        current, previous = rollback_family(settings, family)
        name = settings.models.family(family).registered_name
        console.print(f"{name}: champion moved back from version {current} to version {previous}")
