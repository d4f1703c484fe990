"""The cgroup driver on this host: cgroupfs is what RuntimeConfig reports by default, and the systemd driver is
refused at start, naming why, where systemd is not the init system (tests/kind/test_systemd_cgroups.py runs it
under a real systemd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri.api.runtime.v1 import api_pb2
from tests.support.cri_env import CriEnv
from tests.support.daemon import Crishim, CrishimOptions
from tests.support.tools import require_root


def test_runtime_config_reports_cgroupfs_by_default(cri: CriEnv) -> None:
    reported = cri.rpc("RuntimeConfig", api_pb2.RuntimeConfigRequest()).linux.cgroup_driver
    assert reported == api_pb2.CgroupDriver.CGROUPFS


def test_the_systemd_driver_is_refused_without_systemd_as_init(tmp_path: Path) -> None:
    require_root("the daemon")
    if Path("/run/systemd/system").is_dir():
        pytest.skip("this host runs systemd as init: the refusal cannot happen here")
    daemon = Crishim(tmp_path / "crishim", CrishimOptions(extra_config='cgroup_driver = "systemd"\n'))
    try:
        with pytest.raises(RuntimeError, match=r"needs systemd as the init system \(/run/systemd/system is missing\)"):
            daemon.start()
        assert not daemon.socket.exists()
    finally:
        daemon.cleanup()
