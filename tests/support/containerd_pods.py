"""containerd 1.6 running pods next to crishim, so a pod or container field can be compared on the same input.

containerd needs a sandbox image: ``pause_image`` makes one from the busybox test image (a shell that waits
and leaves on SIGTERM) and pushes it to the test registry. ``containerd_pods`` starts a containerd of the
test's own on the crishim environment's CNI network, with the same busybox image pulled; its pods are
removed and it is stopped before the crishim environment checks what is left.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.containerd import Containerd, start_containerd
from tests.support.cri_configs import container_config, pod_config, write_json
from tests.support.cri_env import SLEEPER, CriEnv
from tests.support.images import PushedImage
from tests.support.mounts import overlay_capable_dir
from tests.support.procs import run
from tests.support.registry import Registry
from tests.support.tools import binary

__all__ = ["OracleCri", "containerd_pods", "pause_image"]

PAUSE_REPOSITORY = "test/pause"
PAUSE_SCRIPT = "trap 'exit 0' TERM; while true; do busybox sleep 1000 & wait $!; done"


class OracleCri:
    """The crictl calls the comparisons need, against containerd's socket."""

    def __init__(self, containerd: Containerd, image: PushedImage, workdir: Path) -> None:
        self.containerd = containerd
        self.image = image
        self.configs = workdir / "configs"
        self.logs = workdir / "pod-logs"
        self.pod_configs: dict[str, Path] = {}

    def crictl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.containerd.crictl_client.run(*args, check=check)

    def json(self, *args: str) -> Any:
        return self.containerd.crictl_json(*args)

    def pod(self, name: str | None = None, **kwargs: Any) -> dict[str, Any]:
        config = pod_config(name, **kwargs)
        if "log_directory" not in kwargs:
            config["log_directory"] = str(self.logs / config["metadata"]["name"])
        return config

    def container(self, name: str, **kwargs: Any) -> dict[str, Any]:
        if "command" not in kwargs and "args" not in kwargs:
            kwargs["command"] = SLEEPER
        return container_config(name, self.image.ref, **kwargs)

    def runp(self, config: dict[str, Any]) -> str:
        path = write_json(self.configs, config, f"pod-{config['metadata']['name']}")
        pod_id = self.crictl("runp", str(path)).stdout.strip()
        self.pod_configs[pod_id] = path
        return pod_id

    def create(self, pod_id: str, config: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
        path = write_json(self.configs, config, f"ctr-{config['metadata']['name']}-{secrets.token_hex(3)}")
        return self.crictl("create", "--no-pull", pod_id, str(path), str(self.pod_configs[pod_id]), check=check)

    def run(self, pod_id: str, config: dict[str, Any]) -> str:
        container_id = self.create(pod_id, config).stdout.strip()
        self.crictl("start", container_id)
        return container_id

    def inspectp(self, pod_id: str) -> Any:
        return self.json("inspectp", pod_id)

    def status(self, container_id: str) -> Any:
        return self.json("inspect", container_id)["status"]

    def exec(self, container_id: str, *command: str) -> str:
        return self.crictl("exec", "-s", container_id, *command).stdout


def build_pause(workdir: Path, registry: Registry, base: PushedImage) -> str:
    """The busybox test image with a waiting shell as its entrypoint, pushed as test/pause; its reference."""
    skopeo, umoci = binary("skopeo"), binary("umoci")
    layout = workdir / "pause-layout"
    run(skopeo, "--insecure-policy", "copy", "-q", "--src-tls-verify=false", f"docker://{base.ref}",
        f"oci:{layout}:base")
    run(umoci, "config", "--image", f"{layout}:base", "--tag", "pause", "--config.entrypoint", "/bin/sh",
        "--config.cmd", "-c", "--config.cmd", PAUSE_SCRIPT)
    ref = f"{registry.host}/{PAUSE_REPOSITORY}:v1"
    run(skopeo, "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:pause", f"docker://{ref}")
    return ref


@pytest.fixture(scope="session")
def pause_image(registry: Registry, test_images: dict[str, PushedImage],
                tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_pause(tmp_path_factory.mktemp("pause"), registry, test_images["oci"])


@contextlib.contextmanager
def oracle_on(env: CriEnv, registry: Registry, sandbox_image: str, workdir: Path) -> Iterator[OracleCri]:
    # Short paths: the socket lives under it, and unix socket paths end at 108 bytes.
    base = overlay_capable_dir([Path(tempfile.gettempdir()), Path("/var/tmp")])
    if base is None:
        pytest.skip("no directory where an overlay mount works, so containerd's overlayfs snapshotter cannot")
    home = Path(tempfile.mkdtemp(prefix="containerd-pods-", dir=base))
    containerd = start_containerd(home, [registry.host], sandbox_image=sandbox_image,
                                  cni_conf_dir=env.network.conf_dir)
    try:
        containerd.crictl("pull", env.image.ref)
        yield OracleCri(containerd, env.image, home)
    finally:
        containerd.crictl_client.run("rmp", "-af", check=False)
        containerd.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def containerd_pods(cri: CriEnv, registry: Registry, pause_image: str, tmp_path: Path) -> Iterator[OracleCri]:
    """containerd with pods of its own on the crishim environment's network (stopped before that is checked)."""
    with oracle_on(cri, registry, pause_image, tmp_path) as oracle:
        yield oracle
