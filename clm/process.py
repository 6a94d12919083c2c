"""Small process helpers: crash recovery (is a pid alive) and servers run as child processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (another user's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for_http(process: subprocess.Popen[bytes], url: str, timeout: float) -> str | None:
    """Poll `url` until it answers 200 while `process` (the server) runs.

    Returns None once it answers, or why it never will: the process exited, or
    `timeout` seconds passed. Callers add where the server's log is.
    """
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            return f"exited with code {process.returncode}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return None
        if time.monotonic() > deadline:
            return f"did not answer {url} within {timeout:g} s"
        time.sleep(0.5)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it is still running after `timeout` s: to
    its whole process group when it leads one (started with `start_new_session=True`), so
    that a server's workers cannot outlive it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            leads_group = os.getpgid(process.pid) == process.pid
        except ProcessLookupError:
            leads_group = False
        if leads_group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()


def run_child(argv: list[str], *, timeout: float) -> tuple[int, str]:
    """Run `argv` to completion where a crash cannot hurt this process.

    Returns its exit code (negative: killed by that signal) and the tail of what it
    wrote (stdout then stderr, at most 2,000 characters); a run longer than `timeout`
    seconds is killed and reported as `-signal.SIGKILL`.
    """
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr)
        return -signal.SIGKILL, f"{output[-1800:]}\n(killed after {timeout:g} s)"
    return done.returncode, (done.stdout + done.stderr)[-2000:]


def describe_exit(returncode: int) -> str:
    """`exit code 3` or `killed by SIGABRT` (for messages)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
