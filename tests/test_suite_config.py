"""The suite's own configuration: a hung test fails instead of stalling CI."""

from __future__ import annotations

import pytest


def test_every_test_has_a_timeout(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.has_plugin("timeout")
    assert float(request.config.getini("timeout")) == 900
    assert request.node.get_closest_marker("timeout") is None  # the default applies here
