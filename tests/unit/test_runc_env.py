"""runc's subcommands get the environment runc needs, not the daemon's (which holds systemd's NOTIFY_SOCKET
under a unit, among others)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.runc import Runc


def test_a_subcommand_sees_only_what_runc_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "runc"
    fake.write_text("#!/bin/sh\nenv\n")
    fake.chmod(0o755)
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("CRISHIM_SECRET", "not for runc")
    env = Runc(str(fake), tmp_path / "root").run("c1", ["state", "c1"]).decode()
    assert "NOTIFY_SOCKET" not in env and "CRISHIM_SECRET" not in env
    assert "PATH=" in env
