"""Requests crishim must refuse, with the status code containerd gives, and without leaving anything behind:
no snapshot besides the image's committed layers, no mount, no namespace pin, no bundle, no record.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from tests.support.cri_configs import write_json
from tests.support.cri_env import CriEnv


def refused(proc: subprocess.CompletedProcess[str], code: str) -> str:
    assert proc.returncode != 0, proc.stdout
    assert f"code = {code} " in proc.stderr, proc.stderr
    return proc.stderr


def test_create_in_an_unknown_pod_is_not_found(cri: CriEnv) -> None:
    pod_id = cri.runp()
    before = cri.inventory()
    proc = cri.create(secrets.token_hex(32), cri.container("orphan"), check=False,
                      pod_config=cri.pod_configs[pod_id])
    refused(proc, "NotFound")
    assert cri.inventory() == before


def test_create_in_a_stopped_pod_is_a_failed_precondition(cri: CriEnv) -> None:
    pod_id = cri.runp()
    cri.crictl("stopp", pod_id)
    before = cri.inventory()
    refused(cri.create(pod_id, cri.container("late"), check=False), "FailedPrecondition")
    assert cri.inventory() == before
    assert cri.crictl("ps", "-aq").stdout.split() == []


def test_a_pod_name_in_use_is_already_exists(cri: CriEnv) -> None:
    config = cri.pod("twin")
    pod_id = cri.runp(config)
    before = cri.inventory()
    path = write_json(cri.configs, config, "twin-again")
    message = refused(cri.crictl("runp", str(path), check=False), "AlreadyExists")
    assert "twin" in message
    assert cri.inventory() == before
    assert cri.crictl("pods", "-q").stdout.split() == [pod_id]
    # Once the first is gone the name is free again.
    cri.crictl("rmp", "-f", pod_id)
    assert cri.runp(config)


def test_a_container_name_in_use_is_already_exists(cri: CriEnv) -> None:
    pod_id = cri.runp()
    first = cri.create(pod_id, cri.container("same")).stdout.strip()
    before = cri.inventory()
    refused(cri.create(pod_id, cri.container("same"), check=False), "AlreadyExists")
    assert cri.inventory() == before
    assert cri.crictl("ps", "-aq").stdout.split() == [first]
    cri.crictl("rm", first)
    cri.create(pod_id, cri.container("same"))


def test_a_relative_host_path_is_an_invalid_argument(cri: CriEnv, tmp_path: Path) -> None:
    pod_id = cri.runp()
    before = cri.inventory()
    config = cri.container("relative", mounts=[{"container_path": "/data", "host_path": "relative/dir"}])
    refused(cri.create(pod_id, config, check=False), "InvalidArgument")
    assert cri.inventory() == before
    assert not (Path.cwd() / "relative").exists()


def test_a_missing_image_is_not_found(cri: CriEnv) -> None:
    pod_id = cri.runp()
    before = cri.inventory()
    config = cri.container("ghost")
    config["image"]["image"] = f"{cri.image.registry}/test/no-such-image:v1"
    refused(cri.create(pod_id, config, check=False), "NotFound")
    assert cri.inventory() == before


def test_an_unknown_user_name_is_an_invalid_argument(cri: CriEnv) -> None:
    pod_id = cri.runp()
    before = cri.inventory()
    config = cri.container("stranger", security_context={"run_as_username": "no-such-user"})
    message = refused(cri.create(pod_id, config, check=False), "InvalidArgument")
    assert "no-such-user" in message
    assert cri.inventory() == before
    assert cri.crictl("ps", "-aq").stdout.split() == []


def test_a_failing_runc_create_leaves_nothing(cri: CriEnv) -> None:
    # A command that is not in the image: runc create fails after the snapshot, bundle and conmon exist.
    pod_id = cri.runp()
    before = cri.inventory()
    proc = cri.create(pod_id, cri.container("no-binary", command=["/no/such/binary"]), check=False)
    if proc.returncode == 0:
        # runc 1.1 checks the executable at create; should the error come at start, the container must not run.
        container_id = proc.stdout.strip()
        assert cri.crictl("start", container_id, check=False).returncode != 0
        cri.crictl("rm", container_id)
    else:
        assert "no/such/binary" in proc.stderr
    assert cri.inventory() == before


LOCALHOST = 2  # SecurityProfile.ProfileType.Localhost


def _host_has_apparmor() -> bool:
    try:
        return Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        return False


@pytest.mark.parametrize("security", [
    {"apparmor": {"profile_type": LOCALHOST, "localhost_ref": "localhost/crishim-test"}},
    {"apparmor_profile": "localhost/crishim-test"},
    {"selinux_options": {"type": "container_t", "level": "s0:c1,c2"}},
], ids=["apparmor", "apparmor-legacy", "selinux"])
def test_a_security_option_the_node_cannot_apply_is_refused_not_dropped(
    cri: CriEnv, security: dict[str, object]
) -> None:
    if "apparmor" in str(security) and _host_has_apparmor():
        pytest.skip("this host runs AppArmor, where a localhost profile is applied instead of refused")
    pod_id = cri.runp()
    before = cri.inventory()
    message = refused(cri.create(pod_id, cri.container("confined", security_context=security), check=False),
                      "FailedPrecondition")
    assert "not enabled on this node" in message
    assert cri.inventory() == before


def test_a_pod_asking_for_selinux_labels_is_refused(cri: CriEnv) -> None:
    before = cri.inventory()
    config = cri.pod("labelled")
    config.setdefault("linux", {}).setdefault("security_context", {})["selinux_options"] = {"type": "spc_t"}
    path = write_json(cri.configs, config, "labelled")
    refused(cri.crictl("runp", str(path), check=False), "FailedPrecondition")
    assert cri.inventory() == before
    assert cri.crictl("pods", "-q").stdout.split() == []


def test_unconfined_and_the_runtime_default_run_on_a_node_without_apparmor(cri: CriEnv) -> None:
    if _host_has_apparmor():
        pytest.skip("this host runs AppArmor: crishim has no runtime default profile to load there")
    pod_id = cri.runp()
    for name, security in (("unconfined", {"apparmor": {"profile_type": 1}}),
                           ("default", {"apparmor_profile": "runtime/default"})):
        container_id = cri.run(pod_id, cri.container(name, security_context=security))
        cri.wait_state(container_id, "CONTAINER_RUNNING")
