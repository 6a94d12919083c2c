"""`clm serve` as a process tree: the worker dies with the supervisor (defect 5).

`clm serve` becomes BentoML's supervisor, which starts the worker that serves
requests and holds the listening socket. Killed with SIGKILL, the supervisor
cannot stop it: the worker must notice by itself, or it keeps the port and the
next `clm serve` fails with "Address already in use". The service needs no
models for this, so it runs on an empty workspace (it answers /livez; /readyz
stays 503 without champions).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from clm.process import stop_process, wait_for_http
from clm.settings import REPO_ROOT
from tests.fixtures.service import API_KEY, free_port


def children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def serve(home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLM_", "MLFLOW_"))}
    env.update(CLM_HOME=str(home), CLM_API_KEYS=API_KEY, CLM_CONFIG=str(REPO_ROOT / "mlflow.yaml"))
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("clm")), "serve", "--port", str(port)],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


@pytest.mark.integration
def test_kill_9_of_clm_serve_frees_the_port_for_the_next_one(tmp_path: Path) -> None:
    home, port, log = tmp_path / "workspace", free_port(), tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    first = serve(home, port, log)
    workers: list[int] = []
    try:
        problem = wait_for_http(first, f"{url}/livez", 180)
        assert problem is None, f"clm serve {problem}:\n{log.read_text()[-3000:]}"
        # Without champions the service is alive but not ready, and says so in the one shape.
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "NO_MODELS", ready.text
        workers = children(first.pid)
        assert workers, "the supervisor has no worker process"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (port_open(port) or any(alive(w) for w in workers)):
            time.sleep(0.25)
        assert not port_open(port), "an orphaned worker still holds the port"
        assert not any(alive(w) for w in workers)

        # The next clm serve binds the port (its supervisor listens before its worker
        # is up; "Address already in use" would end it at once).
        second = serve(home, port, log)
        try:
            deadline = time.monotonic() + 120
            while second.poll() is None and not port_open(port) and time.monotonic() < deadline:
                time.sleep(0.25)
            time.sleep(1.0)
            assert second.poll() is None and port_open(port), log.read_text()[-3000:]
        finally:
            stop_process(second)
    finally:
        for pid in workers:  # never leave an orphan behind, even when the test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stop_process(first)
