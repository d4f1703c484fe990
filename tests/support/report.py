"""Lines for the terminal during a session, printed past pytest's output capturing."""

from __future__ import annotations

import pytest


def say(config: pytest.Config, line: str) -> None:
    """Straight to the terminal: a fixture that builds for minutes should not look like a hang."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)
