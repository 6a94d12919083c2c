"""The explain lanes and admission limits (serving.limits), without a server.

Work functions block on events, so what runs while what is decided by the test,
not by timing.
"""

from __future__ import annotations

import threading

import anyio
import pytest

from clm.settings import ServingSettings
from serving.limits import Lanes, Refused


def blocked(release: threading.Event, started: threading.Event, value: str) -> object:
    def work() -> str:
        started.set()
        assert release.wait(10), "the test never released this work"
        return value

    return work


def test_plain_requests_run_while_explanations_are_stuck() -> None:
    """Defect 4: an explanation in progress does not hold up a plain request."""

    async def main() -> list[str]:
        lanes = Lanes(ServingSettings(explain_per_key=1, explain_queue=4))
        release, started = threading.Event(), threading.Event()
        done: list[str] = []
        async with anyio.create_task_group() as tg:

            async def explain(key: str) -> None:
                done.append(await lanes.run(key, True, blocked(release, started, key)))

            for key in ("key0", "key1", "key2"):
                tg.start_soon(explain, key)
            await anyio.to_thread.run_sync(started.wait, 10)
            # Three explanations are admitted (one running, two queued); plain work is not behind them.
            with anyio.fail_after(10):
                done.append(await lanes.run("key0", False, lambda: "plain"))
            assert done == ["plain"]
            release.set()
        return done

    done = anyio.run(main)
    assert done[0] == "plain" and sorted(done[1:]) == ["key0", "key1", "key2"]


def test_one_explanation_per_key_and_a_bounded_queue() -> None:
    async def main() -> None:
        lanes = Lanes(ServingSettings(explain_per_key=1, explain_queue=2))
        release, started = threading.Event(), threading.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lanes.run, "key0", True, blocked(release, started, "a"))
            await anyio.to_thread.run_sync(started.wait, 10)
            with pytest.raises(Refused, match="per API key") as same_key:
                await lanes.run("key0", True, lambda: "b")
            assert same_key.value.retry_after >= 1
            tg.start_soon(lanes.run, "key1", True, blocked(release, threading.Event(), "c"))
            await anyio.sleep(0.05)  # key1's request is admitted (queued behind key0's)
            with pytest.raises(Refused, match="busy"):
                await lanes.run("key2", True, lambda: "d")
            release.set()
        # Slots are given back: the same key may explain again.
        assert await lanes.run("key0", True, lambda: "again") == "again"

    anyio.run(main)
