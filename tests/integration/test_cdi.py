"""CDI devices from spec files of the test's own (in a folder the daemon is configured to read, never the
host's /etc/cdi): a copy of /dev/null as a device node, environment, a bind mount and a hook."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.integration.test_bad_requests import refused
from tests.support.cri_env import CriEnv


def _write_specs(folder: Path, host_file: Path, marker: Path) -> None:
    folder.mkdir()
    (folder / "null.json").write_text(json.dumps({
        "cdiVersion": "0.6.0", "kind": "crishim.test/null",
        "containerEdits": {"env": ["CDI_KIND=null"]},
        "devices": [{"name": "zero", "containerEdits": {
            "deviceNodes": [{"path": "/dev/crishim-null", "hostPath": "/dev/null"}],
            "env": ["CDI_DEVICE=zero"],
            "mounts": [{"hostPath": str(host_file), "containerPath": "/cdi-file", "options": ["ro", "rbind"]}],
            "hooks": [{"hookName": "createRuntime", "path": "/bin/sh", "args": ["sh", "-c", f"echo ran > {marker}"]}],
        }}],
    }))
    (folder / "other.yaml").write_text(
        "cdiVersion: 0.6.0\nkind: crishim.test/other\ndevices:\n"
        "  - name: one\n    containerEdits:\n      env: [OTHER=one]\n")


def test_cdi_devices_are_resolved_from_the_configured_specs(
        cri_factory: Callable[..., CriEnv], tmp_path: Path) -> None:
    specs, host_file, marker = tmp_path / "cdi", tmp_path / "shared.txt", tmp_path / "hook-ran"
    host_file.write_text("from the host\n")
    _write_specs(specs, host_file, marker)
    cri = cri_factory(config=f'[cdi]\nspec_dirs = "{tmp_path / "missing"}:{specs}"\n')
    pod_id = cri.runp()
    devices = [{"name": "crishim.test/null=zero"}, {"name": "crishim.test/other=one"}]
    container_id = cri.run(pod_id, {**cri.container("gpu"), "CDI_devices": devices})
    env = cri.exec(container_id, "busybox", "env").stdout.split()
    assert {"CDI_KIND=null", "CDI_DEVICE=zero", "OTHER=one"} <= set(env)
    node = cri.exec(container_id, "busybox", "stat", "-c", "%F %t:%T", "/dev/crishim-null").stdout.strip()
    assert node == "character special file 1:3"
    # The device cgroup lets the container use it.
    cri.exec(container_id, "busybox", "sh", "-c", "echo gone > /dev/crishim-null")
    assert cri.exec(container_id, "busybox", "cat", "/cdi-file").stdout.split() == ["from", "the", "host"]
    assert marker.read_text() == "ran\n"  # the hook ran on the host when the container was created
    before = cri.inventory()
    unknown = {**cri.container("unknown"), "CDI_devices": [{"name": "crishim.test/null=nope"}]}
    assert "no CDI spec" in refused(cri.create(pod_id, unknown, check=False), "NotFound")
    assert cri.inventory() == before
