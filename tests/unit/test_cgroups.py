"""The cgroup drivers' names and paths: what runc is told and where a pod's usage is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from errdefs import FailedPrecondition, InvalidArgument
from runtime import cgroups
from runtime.cgroups import CgroupDriver, cgroups_path, expand_slice, parent_folder, validate_parent
from runtime.runc import Runc

SYSTEMD, CGROUPFS = CgroupDriver.SYSTEMD, CgroupDriver.CGROUPFS
POD_SLICE = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice"


def test_a_slice_is_nested_in_the_slices_its_name_implies() -> None:
    assert expand_slice("kubepods-burstable-pod1234_5678.slice") == POD_SLICE
    assert expand_slice("system.slice") == "/system.slice"
    assert expand_slice("-.slice") == "/"


@pytest.mark.parametrize("name", ["kubepods", ".slice", "a--b.slice", "-a.slice", "a/b.slice", "a-.slice"])
def test_what_is_no_slice_is_refused(name: str) -> None:
    with pytest.raises(InvalidArgument, match="slice"):
        expand_slice(name)


def test_the_oci_cgroups_path_of_each_driver() -> None:
    assert cgroups_path(SYSTEMD, POD_SLICE, "c1", "k8s.io") == "kubepods-burstable-pod1234_5678.slice:cri-containerd:c1"
    assert cgroups_path(SYSTEMD, "", "c1", "k8s.io") == "system.slice:cri-containerd:c1"
    assert cgroups_path(CGROUPFS, "/kubepods/burstable/pod1", "c1", "k8s.io") == "/kubepods/burstable/pod1/c1"
    assert cgroups_path(CGROUPFS, "", "c1", "k8s.io") == "/k8s.io/c1"


def test_a_pods_cgroup_is_read_where_the_driver_put_it() -> None:
    assert parent_folder(SYSTEMD, POD_SLICE) == POD_SLICE
    assert parent_folder(SYSTEMD, "kubepods-besteffort-pod1.slice") == "/kubepods.slice/kubepods-besteffort.slice/" \
                                                                     "kubepods-besteffort-pod1.slice"
    assert parent_folder(SYSTEMD, "/kubepods/pod1") == "/kubepods/pod1"  # made under cgroupfs before
    assert parent_folder(CGROUPFS, "/kubepods/pod1") == "/kubepods/pod1"


def test_a_parent_must_fit_the_driver() -> None:
    validate_parent(SYSTEMD, POD_SLICE)
    validate_parent(SYSTEMD, "")
    validate_parent(CGROUPFS, "/kubepods/burstable/pod1")
    with pytest.raises(InvalidArgument, match="not a systemd slice"):
        validate_parent(SYSTEMD, "/kubepods/burstable/pod1")
    with pytest.raises(InvalidArgument, match="climb out"):
        validate_parent(CGROUPFS, "/kubepods/../../etc")


def test_the_systemd_driver_needs_systemd_as_init(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cgroups, "_SYSTEMD_RUNNING", tmp_path / "missing")
    with pytest.raises(FailedPrecondition, match="needs systemd as the init system"):
        cgroups.require(SYSTEMD)
    cgroups.require(CGROUPFS)
    monkeypatch.setattr(cgroups, "_SYSTEMD_RUNNING", tmp_path)
    cgroups.require(SYSTEMD)


def test_runc_is_told_the_driver_on_every_call() -> None:
    assert "--systemd-cgroup" in Runc("runc", Path("/r"), systemd_cgroup=True).command("state", "c1")
    assert "--systemd-cgroup" not in Runc("runc", Path("/r")).command("state", "c1")
    args = Runc("runc", Path("/r"), systemd_cgroup=True).global_args(Path("/log"))
    assert args == ["--root", "/r", "--systemd-cgroup", "--log", "/log", "--log-format", "json"]
