"""Servers run as child processes: waiting until they answer, and stopping them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clm.process import stop_process, wait_for_http
from tests.fixtures.service import free_port


def test_a_server_that_answers_is_ready_and_stops() -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for_http(server, f"http://127.0.0.1:{port}/", timeout=30) is None
    finally:
        stop_process(server, timeout=10)
    assert server.poll() is not None


def test_a_server_that_exits_or_never_answers_says_so() -> None:
    crashed = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    crashed.wait()
    assert wait_for_http(crashed, "http://127.0.0.1:9/", timeout=5) == "exited with code 3"

    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        url = f"http://127.0.0.1:{free_port()}/"
        assert wait_for_http(silent, url, timeout=1) == f"did not answer {url} within 1 s"
    finally:
        stop_process(silent, timeout=5)
    assert silent.returncode is not None


def test_a_server_that_ignores_sigterm_is_killed_with_its_workers(tmp_path: Path) -> None:
    """Like `clm serve`: a leader in its own session with a worker; both ignore SIGTERM."""
    import os
    import time

    pid_file = tmp_path / "worker.pid"
    code = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "worker = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(worker.pid))\n"
        "time.sleep(600)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline and server.poll() is None
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    stop_process(server, timeout=1)
    assert server.returncode == -9
    deadline = time.monotonic() + 10
    while _running(worker):
        assert time.monotonic() < deadline, "the worker outlived its server"
        time.sleep(0.05)
    assert os.getpgid(os.getpid()) != server.pid  # only the child's group was killed


def _running(pid: int) -> bool:
    """Alive and not a zombie (the killed worker's parent is gone; init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
