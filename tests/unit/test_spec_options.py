"""The typed spec and its options: the default spec, options applied in order, and what each part writes."""

from __future__ import annotations

from runtime.spec import options as o
from runtime.spec.model import DeviceRule, Mount, Namespace, Resources, Spec, User


def test_the_default_spec_denies_every_device_and_runs_nothing_yet() -> None:
    doc = o.build([]).to_json()
    assert doc["linux"]["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert doc["linux"]["namespaces"] == []
    assert doc["process"] == {"user": {"uid": 0, "gid": 0}, "args": [], "env": [], "cwd": "/", "capabilities": {}}
    assert doc["root"] == {"path": "rootfs"}


def test_options_apply_in_order_the_later_one_winning() -> None:
    spec = o.build([o.with_env(["A=1"]), o.with_process_args(["/bin/true"]), o.with_env(["B=2"]),
                    o.with_mounts([Mount("/a", "bind", "/x", ("rbind",))]),
                    o.with_mounts([Mount("/b", "tmpfs", "tmpfs")])])
    assert spec.process.env == ["B=2"]
    assert spec.process.args == ["/bin/true"]
    assert [m.destination for m in spec.mounts] == ["/a", "/b"]  # mounts are added, in order


def test_fields_left_at_their_defaults_stay_out_of_the_document() -> None:
    spec = o.build([o.with_user(User(1000, 1000, (10,))), o.with_capabilities(["CAP_KILL"]), o.with_terminal,
                    o.with_namespaces([Namespace("pid"), Namespace("network", "/run/netns/x")])])
    doc = spec.to_json()
    assert doc["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10]}
    assert doc["process"]["capabilities"] == {key: ["CAP_KILL"] for key in ("bounding", "effective", "permitted")}
    assert doc["process"]["terminal"] is True
    assert "noNewPrivileges" not in doc["process"] and "oomScoreAdj" not in doc["process"]
    assert doc["linux"]["namespaces"] == [{"type": "pid"}, {"type": "network", "path": "/run/netns/x"}]
    assert not {"uidMappings", "devices", "sysctl", "seccomp", "rootfsPropagation"} & doc["linux"].keys()


def test_resources_without_device_rules_are_what_runc_update_takes() -> None:
    assert Resources(devices=None).to_json() == {}
    rules = [DeviceRule(True, "rw", "c", 1, 3)]
    assert Resources(devices=rules).to_json() == {
        "devices": [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}]}
    assert isinstance(Spec().linux.resources.devices, list)
