"""CDI spec files turned into spec options: what each edit writes into config.json, and how malformed files
and names are refused (the container side is in tests/integration/test_cdi.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from errdefs import InvalidArgument, NotFound
from runtime.cdi import CDIRegistry
from runtime.spec import options as o
from runtime.spec.model import Mount


def _write(folder: Path, name: str, document: Any) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(json.dumps(document))


def _spec(registry: CDIRegistry, *names: str) -> dict[str, Any]:
    base = [o.with_env(["PATH=/bin"]), o.with_mounts([Mount("/proc", "proc", "proc")])]
    return o.build([*base, *registry.options(names)]).to_json()


def _gpu(edits: dict[str, Any], common: dict[str, Any] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {"cdiVersion": "0.6.0", "kind": "vendor.test/gpu",
                                "devices": [{"name": "0", "containerEdits": edits}]}
    if common is not None:
        document["containerEdits"] = common
    return document


def test_edits_are_added_after_the_containers_own(tmp_path: Path) -> None:
    null = os.stat("/dev/null")
    _write(tmp_path, "gpu.json", _gpu({
        "env": ["GPU=0"],
        "deviceNodes": [{"path": "/dev/gpu0", "hostPath": "/dev/null", "permissions": "rw"},
                        {"path": "/dev/fake", "type": "b", "major": 250, "minor": 3, "uid": 7}],
        "mounts": [{"hostPath": "/opt/lib", "containerPath": "/usr/lib/gpu", "options": ["ro", "rbind"]},
                   {"hostPath": "/opt/bin", "containerPath": "/usr/bin/gpu"}],
        "hooks": [{"hookName": "createRuntime", "path": "/bin/ldconfig", "args": ["ldconfig"], "timeout": 5}],
    }, common={"env": ["VENDOR=test"]}))
    spec = _spec(CDIRegistry([tmp_path]), "vendor.test/gpu=0")
    assert spec["process"]["env"] == ["PATH=/bin", "VENDOR=test", "GPU=0"]  # the kind's edits, then the device's
    assert spec["linux"]["devices"] == [
        {"path": "/dev/gpu0", "type": "c", "major": os.major(null.st_rdev), "minor": os.minor(null.st_rdev),
         "fileMode": 0o666},
        {"path": "/dev/fake", "type": "b", "major": 250, "minor": 3, "uid": 7}]
    assert spec["linux"]["resources"]["devices"][1:] == [
        {"allow": True, "type": "c", "major": os.major(null.st_rdev), "minor": os.minor(null.st_rdev),
         "access": "rw"},
        {"allow": True, "type": "b", "major": 250, "minor": 3, "access": "rwm"}]
    assert spec["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}  # the default deny stays
    assert spec["mounts"] == [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": []},
        {"destination": "/usr/lib/gpu", "type": "bind", "source": "/opt/lib", "options": ["ro", "rbind"]},
        {"destination": "/usr/bin/gpu", "type": "bind", "source": "/opt/bin", "options": ["rbind", "rprivate"]}]
    assert spec["hooks"] == {"createRuntime": [{"path": "/bin/ldconfig", "args": ["ldconfig"], "timeout": 5}]}


def test_no_devices_no_edits(tmp_path: Path) -> None:
    assert CDIRegistry([tmp_path / "missing"]).options([]) == []
    assert "hooks" not in _spec(CDIRegistry([tmp_path]))


def test_a_later_file_wins_for_a_device_declared_twice(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    _write(first, "gpu.json", _gpu({"env": ["FROM=a"]}))
    _write(second, "gpu.json", _gpu({"env": ["FROM=b"]}))
    (second / "other.yaml").write_text("kind: vendor.test/nic\ndevices:\n  - name: eth\n    containerEdits:\n"
                                       "      env: [NIC=eth]\n")
    spec = _spec(CDIRegistry([first, second]), "vendor.test/gpu=0", "vendor.test/nic=eth")
    assert spec["process"]["env"] == ["PATH=/bin", "FROM=b", "NIC=eth"]


@pytest.mark.parametrize("name", ["gpu", "vendor.test/gpu", "gpu=0"])
def test_a_malformed_device_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidArgument, match="vendor/class=name"):
        CDIRegistry([tmp_path]).options([name])


def test_an_unknown_device_names_the_folders(tmp_path: Path) -> None:
    _write(tmp_path, "gpu.json", _gpu({}))
    with pytest.raises(NotFound, match=f"no CDI spec in {tmp_path} declares it"):
        CDIRegistry([tmp_path]).options(["vendor.test/gpu=1"])


@pytest.mark.parametrize("edits, error", [
    ({"env": "GPU=0"}, "env is not a list"),
    ({"env": [1]}, "env is not a list of strings"),
    ({"deviceNodes": [{"hostPath": "/dev/null"}]}, "a device node without a path"),
    ({"deviceNodes": [{"path": "/dev/x", "type": "p"}]}, "neither b nor c"),
    ({"deviceNodes": [{"path": "/dev/x", "permissions": "rwx"}]}, "permissions"),
    ({"deviceNodes": [{"path": "/dev/x", "type": "c", "major": "1"}]}, "major '1' is not a number"),
    ({"mounts": [{"containerPath": "/x"}]}, "hostPath is not a string"),
    ({"mounts": ["/x"]}, "a mount that is not an object"),
    ({"hooks": [{"hookName": "beforeAll", "path": "/bin/true"}]}, "hookName 'beforeAll'"),
    ("not edits", "containerEdits is not an object"),
])
def test_a_malformed_spec_hides_only_its_own_devices(tmp_path: Path, edits: Any, error: str) -> None:
    _write(tmp_path, "bad.json", _gpu(edits))
    _write(tmp_path, "good.json", {"kind": "vendor.test/nic", "devices": [
        {"name": "eth", "containerEdits": {"env": ["NIC=eth"]}}]})
    registry = CDIRegistry([tmp_path])
    assert _spec(registry, "vendor.test/nic=eth")["process"]["env"] == ["PATH=/bin", "NIC=eth"]
    with pytest.raises(NotFound) as refused:
        registry.options(["vendor.test/gpu=0"])
    assert f"{tmp_path / 'bad.json'}: " in str(refused.value) and error in str(refused.value)


def test_a_spec_that_does_not_parse_is_named(tmp_path: Path) -> None:
    tmp_path.joinpath("broken.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(NotFound, match="broken.yaml: unreadable"):
        CDIRegistry([tmp_path]).options(["vendor.test/gpu=0"])


@pytest.mark.parametrize("host_path, error", [("/nonexistent/dev", "No such file"),
                                              ("/etc/hostname", "is not a device node")])
def test_a_device_node_without_a_host_device_is_refused(tmp_path: Path, host_path: str, error: str) -> None:
    _write(tmp_path, "gpu.json", _gpu({"deviceNodes": [{"path": "/dev/gpu0", "hostPath": host_path}]}))
    with pytest.raises(InvalidArgument, match=error):
        CDIRegistry([tmp_path]).options(["vendor.test/gpu=0"])
