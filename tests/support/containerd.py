"""containerd 1.6 as the oracle: its own root, state and socket, CRI pulling from the loopback registries."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.content import ContentRecord, blob_digests, blob_dir, parse_ctr_content_ls
from tests.support.crictl import Crictl, empty_config
from tests.support.hosts import write_plain_http_host
from tests.support.mounts import overlay_capable_dir, unmount_under
from tests.support.procs import run, spawn, stop_process, tail, wait_until
from tests.support.tools import binary, require_root

NAMESPACE = "k8s.io"
# Snapshotters needing setup (or a filesystem) the tests lack; disabling them keeps the log readable.
DISABLED_PLUGINS = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
)


@dataclass
class Containerd:
    workdir: Path
    process: subprocess.Popen[bytes]
    crictl_client: Crictl

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def state(self) -> Path:
        return self.workdir / "state"

    @property
    def socket(self) -> Path:
        return self.state / "containerd.sock"

    @property
    def certs_dir(self) -> Path:
        return self.workdir / "certs.d"

    @property
    def log_path(self) -> Path:
        return self.workdir / "containerd.log"

    def ctr(self, *args: str, check: bool = True) -> str:
        return run(binary("ctr"), "-a", self.socket, "-n", NAMESPACE, *args, check=check).stdout

    def crictl(self, *args: str) -> str:
        return self.crictl_client.run(*args).stdout

    def crictl_json(self, command: str, *args: str) -> Any:
        return self.crictl_client.json(command, *args)

    def trust(self, host: str) -> None:
        write_plain_http_host(self.certs_dir, host)

    def content(self) -> dict[str, ContentRecord]:
        return parse_ctr_content_ls(self.ctr("content", "ls"))

    def blob_path(self, digest: str) -> Path:
        return blob_dir(self.root) / digest.split(":", 1)[1]

    def blobs(self) -> set[str]:
        return blob_digests(self.root)

    def reset(self) -> None:
        """Forget every image; containerd's garbage collector then drops their content and snapshots."""
        self.crictl_client.run("rmi", "--all", check=False)
        names = self.ctr("images", "ls", "-q").split()
        if names:
            self.ctr("images", "rm", "--sync", *names)
        wait_until(lambda: not self.content(), timeout=10, what="containerd to collect all content")

    def stop(self) -> None:
        stop_process(self.process)
        unmount_under(self.root)
        unmount_under(self.state)


@contextmanager
def containerd_under(basetemp: Path, trusted_hosts: list[str]) -> Iterator[Containerd]:
    """containerd 1.6 as an oracle, in a folder of its own under ``basetemp`` (kept short: containerd's socket
    paths must stay under 104 characters) where overlay mounts work; skipped with the reason where none do."""
    require_root("containerd (the oracle)")
    base = overlay_capable_dir([basetemp, Path("/var/tmp")])
    if base is None:
        pytest.skip("no directory where an overlay mount works, so containerd's overlayfs snapshotter cannot")
    workdir = Path(tempfile.mkdtemp(prefix="containerd-", dir=base))
    oracle = start_containerd(workdir, trusted_hosts)
    try:
        yield oracle
    finally:
        oracle.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def start_containerd(
    workdir: Path,
    trusted_hosts: list[str],
    *,
    extra_config: str = "",
    disabled_plugins: tuple[str, ...] = DISABLED_PLUGINS,
    sandbox_image: str = "",
    cni_conf_dir: Path | None = None,
    log_level: str = "debug",
) -> Containerd:
    """Start containerd in workdir; ``extra_config`` is TOML appended to its config file."""
    exe = binary("containerd")
    binary("ctr")
    workdir.mkdir(parents=True, exist_ok=True)
    config = _write_config(workdir, extra_config, disabled_plugins, sandbox_image,
                           cni_conf_dir or workdir / "cni" / "net.d", log_level)
    proc = spawn([exe, "--config", config], workdir / "containerd.log")
    oracle = Containerd(workdir, proc, Crictl(workdir / "state" / "containerd.sock", empty_config(workdir)))
    for host in trusted_hosts:
        oracle.trust(host)
    try:
        wait_until(lambda: _answers(oracle), timeout=30, what="containerd's socket")
    except TimeoutError:
        oracle.stop()
        raise RuntimeError(f"containerd did not start; log:\n{tail(oracle.log_path)}") from None
    return oracle


def _answers(oracle: Containerd) -> bool:
    if oracle.process.poll() is not None:
        raise RuntimeError(f"containerd exited with {oracle.process.returncode}:\n{tail(oracle.log_path)}")
    if not oracle.socket.exists():
        return False
    # The CRI plugin comes up after the socket; crictl answering means image pulls can start.
    return oracle.crictl_client.run("version", check=False).returncode == 0


def _write_config(workdir: Path, extra_config: str, disabled_plugins: tuple[str, ...], sandbox_image: str,
                  cni_conf_dir: Path, log_level: str) -> Path:
    q = json.dumps  # TOML basic strings accept JSON string escapes
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    text = f"""version = 2
root = {q(str(workdir / "root"))}
state = {q(str(workdir / "state"))}
disabled_plugins = {json.dumps(list(disabled_plugins))}

[grpc]
  address = {q(str(workdir / "state" / "containerd.sock"))}

[ttrpc]
  address = {q(str(workdir / "state" / "containerd.sock.ttrpc"))}

[debug]
  level = {q(log_level)}

[plugins."io.containerd.internal.v1.opt"]
  path = {q(str(workdir / "opt"))}

{cri}
  sandbox_image = {q(sandbox_image or "registry.k8s.io/pause:3.6")}
  # Root here may lack CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj (crishim restricts it likewise).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = {q(str(cni_conf_dir))}
    bin_dir = "/usr/lib/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = {q(str(workdir / "certs.d"))}
{extra_config}"""
    path = workdir / "config.toml"
    path.write_text(text)
    return path
