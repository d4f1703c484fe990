"""Per-pod files containers bind in: /etc/hostname, /etc/hosts, /etc/resolv.conf and /dev/shm.

As containerd's CRI: hosts is a copy of the node's, resolv.conf is built from
the pod's DNSConfig (or copied from the node), and /dev/shm is a 64 MiB tmpfs
of the pod's own unless the pod shares the node's IPC namespace.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cri.api.runtime.v1 import api_pb2
from errdefs import Unavailable

__all__ = ["PodFiles", "remove_pod_files", "write_pod_files"]

_HOST_HOSTS = Path("/etc/hosts")
_HOST_RESOLV = Path("/etc/resolv.conf")
_SHM_OPTIONS = "mode=1777,size=65536k"


@dataclass(frozen=True, slots=True)
class PodFiles:
    hostname: Path
    hosts: Path
    resolv_conf: Path
    shm: Path


def files_of(folder: Path) -> PodFiles:
    return PodFiles(folder / "hostname", folder / "hosts", folder / "resolv.conf", folder / "shm")


def write_pod_files(folder: Path, config: api_pb2.PodSandboxConfig, hostname: str, host_ipc: bool) -> PodFiles:
    folder.mkdir(parents=True, exist_ok=True)
    files = files_of(folder)
    files.hostname.write_text(f"{hostname}\n")
    _copy_or_empty(_HOST_HOSTS, files.hosts)
    if config.HasField("dns_config"):
        files.resolv_conf.write_text(resolv_conf(config.dns_config))
    else:
        _copy_or_empty(_HOST_RESOLV, files.resolv_conf)
    if not host_ipc:
        files.shm.mkdir(exist_ok=True)
        _run("mount", "-t", "tmpfs", "-o", _SHM_OPTIONS, "shm", str(files.shm))
    return files


def remove_pod_files(folder: Path) -> None:
    """Idempotent: unmounts the shm tmpfs if it is still there, then deletes the folder."""
    shm = files_of(folder).shm
    if shm.is_mount():
        _run("umount", str(shm))
    shutil.rmtree(folder, ignore_errors=True)


def resolv_conf(dns: api_pb2.DNSConfig) -> str:
    lines = []
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    lines += [f"nameserver {server}" for server in dns.servers]
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "".join(f"{line}\n" for line in lines)


def _copy_or_empty(source: Path, target: Path) -> None:
    try:
        shutil.copyfile(source, target)
    except FileNotFoundError:
        target.write_text("")
    target.chmod(0o644)


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise Unavailable(f"{' '.join(args)}: {result.stderr.strip()}")
