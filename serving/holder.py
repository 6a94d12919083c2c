"""The model holder: polls the champion aliases and hot-swaps atomically.

The served `ModelSet` is one immutable value behind one reference: a request
reads it once and keeps it, a swap replaces the reference. Loading, checking
and warming a new version happen in the background thread, never on the request
path. A version that fails is refused (the old keeps serving, `/models` shows
why); a registry that cannot be reached changes nothing but a warning and
`/models`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from clm import mlflow_access
from clm.settings import FAMILIES
from serving.models import (
    LoadedModel,
    ModelRefused,
    RegistryUnavailable,
    challenger_version,
    champion_version,
    load_version,
    warm_up,
)
from serving.scoring import ModelSet

if TYPE_CHECKING:
    from clm.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class FamilyStatus:
    champion_seen: str | None = None
    last_registry_check: datetime | None = None
    last_registry_error: str | None = None
    last_load_error: str | None = None
    refused_version: str | None = None
    # The challenger scored in the background on /score traffic (serving/shadow.py).
    shadow_version: str | None = None
    shadow_error: str | None = None


class ModelHolder:
    """Holds the served models; `current` is safe to read from any thread."""

    def __init__(
        self,
        settings: Settings,
        *,
        expected_features: Callable[[str], Sequence[str]],
        champion: Callable[[Settings, str], str | None] = champion_version,
        loader: Callable[..., LoadedModel] = load_version,
        challenger: Callable[[Settings, str], str | None] | None = challenger_version,
    ) -> None:
        self.settings = settings
        self._expected_features = expected_features
        self._champion = champion
        self._loader = loader
        self._models: dict[str, LoadedModel] = {}
        self.current: ModelSet | None = None
        # Challengers (a family's `challenger` that is not its champion), and the champions
        # with them swapped in: what shadow scoring uses. None when there is no challenger.
        self._challenger = challenger
        self._shadows: dict[str, LoadedModel] = {}
        self.shadow: ModelSet | None = None
        self.status = {family: FamilyStatus() for family in FAMILIES}
        self._check_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---
    def start(self) -> None:
        """Load the champions now (blocking), then poll in the background."""
        self.check(retry_refused=True)
        self._thread = threading.Thread(target=self._run, name="model-holder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.serving.poll_seconds)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.check()
            except Exception:  # the poller must survive anything
                log.exception("model check failed")

    # --- checking the registry ---
    def check(self, *, retry_refused: bool = False) -> None:
        """Ask the registry for each champion; load, check, warm and swap what changed.

        A refused version is retried only when asked (`/admin/reload`), not on every poll.
        """
        with self._check_lock:
            self._reopen_registry(force=False)
            for family in FAMILIES:
                self._check_family(family, retry_refused=retry_refused)
            if any(s.last_registry_error for s in self.status.values()):
                # Start the next check on fresh connections (e.g. the file was restored).
                self._reopen_registry(force=True)
            if self._challenger is not None:
                for family in FAMILIES:
                    self._check_shadow(family)
                self._rebuild_shadow()

    def _reopen_registry(self, *, force: bool) -> None:
        try:
            if mlflow_access.reopen_registry(self.settings, force=force):
                log.info("registry database re-opened (replaced, or after an error)")
        except Exception as exc:  # never stop the poller over this
            log.warning("could not re-open the registry database: %s", exc)

    def _check_shadow(self, family: str) -> None:
        """Load the family's challenger for shadow scoring (safe loading, as a champion's)."""
        status = self.status[family]
        assert self._challenger is not None
        try:
            version = self._challenger(self.settings, family)
        except RegistryUnavailable:
            return  # keep whatever shadows; the champion check recorded the error
        served = self._models.get(family)
        if version is None or (served is not None and served.version == version):
            self._shadows.pop(family, None)
            status.shadow_version, status.shadow_error = None, None
            return
        current = self._shadows.get(family)
        if current is not None and current.version == version:
            return
        if status.shadow_error and status.shadow_version == version:
            return  # refused before: not retried on every poll
        status.shadow_version = version
        try:
            self._shadows[family] = self._loader(
                self.settings, family, version, expected_features=self._expected_features
            )
            status.shadow_error = None
        except Exception as exc:
            self._shadows.pop(family, None)
            status.shadow_error = f"version {version} refused: {exc}"
            log.warning("challenger %s/%s not shadowed: %s", family, version, exc)

    def _rebuild_shadow(self) -> None:
        current = self.current
        if current is None or not self._shadows:
            self.shadow = None
            return
        shadow = current
        for model in self._shadows.values():
            shadow = shadow.replace(model)
        self.shadow = shadow

    def _check_family(self, family: str, *, retry_refused: bool) -> None:
        status = self.status[family]
        name = self.settings.models.family(family).registered_name
        now = datetime.now(UTC)
        try:
            version = self._champion(self.settings, family)
        except RegistryUnavailable as exc:
            status.last_registry_check = now
            status.last_registry_error = str(exc)
            log.warning("registry unreachable, keeping the served models: %s", exc)
            return
        status.last_registry_check = now
        status.last_registry_error = None
        status.champion_seen = version
        served = self._models.get(family)
        if version is None:
            status.last_load_error = (
                f"{name} has no version with alias {self.settings.aliases.champion!r}"
            )
            status.refused_version = None
            if served is not None:
                # The alias was removed: the family is no longer served (the others are).
                self._drop(family)
                log.warning("%s has no champion any more: no longer served", name)
            return
        if served is not None and served.version == version:
            status.last_load_error = None
            status.refused_version = None
            return
        if version == status.refused_version and not retry_refused:
            return
        try:
            model = self._loader(
                self.settings, family, version, expected_features=self._expected_features
            )
            warm_up(model)
        except ModelRefused as exc:
            status.refused_version = version
            status.last_load_error = f"version {version} refused: {exc}"
            log.warning(
                "%s version %s refused, keeping %s: %s",
                name,
                version,
                served.version if served else "nothing",
                exc,
            )
            return
        except Exception as exc:
            status.refused_version = version
            status.last_load_error = f"version {version} refused: {type(exc).__name__}: {exc}"
            log.exception("%s version %s failed to load", name, version)
            return
        self._swap(model)
        status.last_load_error = None
        status.refused_version = None
        log.info("%s version %s is now served", name, version)

    def _swap(self, model: LoadedModel) -> None:
        # Any non-empty subset serves: a family without a servable champion is absent.
        self._models[model.family] = model
        self.current = ModelSet.of(self._models.values())

    def _drop(self, family: str) -> None:
        self._models.pop(family, None)
        self.current = ModelSet.of(self._models.values()) if self._models else None

    def request_check(self) -> None:
        """Wake the poller now (non-blocking)."""
        self._wake.set()

    # --- reporting ---
    def describe(self) -> dict[str, dict[str, Any]]:
        """`GET /models`: per family what is served and what the registry said."""
        out: dict[str, dict[str, Any]] = {}
        for family in FAMILIES:
            model = self._models.get(family)
            status = self.status[family]
            cfg = self.settings.models.family(family)
            out[family] = {
                "family": family,
                "registered_name": cfg.registered_name,
                "alias": self.settings.aliases.champion,
                "version": model.version if model else None,
                "loaded_at": _iso(model.loaded_at) if model else None,
                "feature_service": model.feature_service if model else cfg.feature_service,
                "last_registry_check": _iso(status.last_registry_check),
                "last_registry_error": status.last_registry_error,
                "last_load_error": status.last_load_error,
                "served": model is not None,
                "reason": None if model is not None else _why_not_served_text(status),
                "shadow": {
                    "alias": self.settings.aliases.challenger,
                    "version": self._shadows[family].version if family in self._shadows else None,
                    "loaded_at": _iso(self._shadows[family].loaded_at)
                    if family in self._shadows
                    else None,
                    "last_load_error": status.shadow_error,
                },
            }
        return out


def _why_not_served_text(status: FamilyStatus) -> str:
    return (
        status.last_load_error
        or (
            f"registry unreachable: {status.last_registry_error}"
            if status.last_registry_error
            else None
        )
        or "not checked yet"
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") if moment else None
