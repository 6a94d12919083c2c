"""`clm serve`: run the BentoML service with this workspace's settings.

The service process reads its settings itself (`Settings.load()` in the service's
`__init__`), so the resolved workspace, config file and secrets are handed over
through its environment. The command replaces itself with `bentoml serve`, so
signals (Ctrl-C, SIGTERM from a supervisor) reach BentoML directly and it stops
gracefully (flushing the prediction log).

BentoML's supervisor (the process `clm serve` became) starts the worker that
serves requests; the listening socket is inherited by it. If the supervisor is
killed outright (`kill -9`, the OOM killer), nothing would stop the worker: it
kept the port, and the next `clm serve` failed with "Address already in use".
So the worker asks the kernel for SIGTERM when its parent dies (`die_with_parent`,
called first thing in the service's start-up) and stops gracefully.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

from clm.errors import ClmError
from clm.settings import REPO_ROOT

if TYPE_CHECKING:
    from clm.settings import Settings

SERVICE = "serving.service:ScoringService"
# Set by `clm serve` for the service: the pid of the supervisor it becomes (exec keeps the pid).
SUPERVISOR_PID = "CLM_SERVE_PID"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h

log = logging.getLogger(__name__)


class ServeError(ClmError):
    """The service cannot start with this configuration."""


def service_environment(settings: Settings, base: dict[str, str]) -> dict[str, str]:
    """The environment of the service process: settings location and secrets."""
    env = dict(base)
    env["CLM_HOME"] = str(settings.home)
    if settings.config_path is not None:
        env["CLM_CONFIG"] = str(settings.config_path)
    env["CLM_API_KEYS"] = ",".join(settings.api_keys)
    if settings.admin_token:
        env["CLM_ADMIN_TOKEN"] = settings.admin_token
    else:
        env.pop("CLM_ADMIN_TOKEN", None)
    # The resolved URIs, so the service sees the same registry as this command.
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    env["MLFLOW_REGISTRY_URI"] = settings.registry_uri
    # A registry that hangs must not stall the poller for minutes.
    env.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    env.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    env[SUPERVISOR_PID] = str(os.getpid())
    pythonpath = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + pythonpath if pythonpath else "")
    return env


def serve_command(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "bentoml", "serve", SERVICE,
        "--host", host, "--port", str(port), "--working-dir", str(REPO_ROOT),
    ]  # fmt: skip


def run_serve(settings: Settings, *, host: str, port: int) -> None:
    """Start the scoring service in the foreground (replaces this process)."""
    if not settings.api_keys:
        raise ServeError(
            "set CLM_API_KEYS (comma-separated bearer keys) before starting the service"
        )
    if not 0 < port < 65536:
        raise ServeError(f"--port {port}: expected 1-65535")
    env = service_environment(settings, dict(os.environ))
    command = serve_command(host, port)
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(REPO_ROOT)
    os.execvpe(command[0], command, env)


def die_with_parent(supervisor: int | None) -> bool:
    """Have the kernel send this process SIGTERM when its parent dies (Linux).

    `supervisor` is the pid the parent had (`CLM_SERVE_PID`, when started by `clm
    serve`): if the parent is already gone, reparenting has happened before the
    request could be made, so SIGTERM is sent now. Returns whether the request
    was made (False on systems without prctl: nothing else changes).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    except (OSError, AttributeError) as exc:
        log.warning("cannot ask to stop with the parent process: %s", exc)
        return False
    if supervisor is not None and os.getppid() != supervisor:
        log.warning("the clm serve supervisor (pid %s) is gone; stopping", supervisor)
        os.kill(os.getpid(), signal.SIGTERM)
    return True
