"""Servers run as child processes: waiting until they answer, and stopping them."""

from __future__ import annotations

import subprocess
import sys

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
