"""A one-node cluster's control plane: Debian's etcd and a real kube-apiserver, both on 127.0.0.1, and
kubectl pointed at them.

No scheduler or controller manager: the tests' Pods carry ``nodeName``. Without the controller manager nobody
creates service accounts or the kube-root-ca.crt config map, so the ServiceAccount admission plugin is off
(Pods get no token volume). kubelet and kubectl authenticate with one static token; authorization is
AlwaysAllow. The API server's serving certificate is self-signed in its --cert-dir.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.procs import CommandError, free_port, spawn, stop_process, tail, wait_until
from tests.support.tools import binary

__all__ = ["ControlPlane", "Kubectl", "control_plane"]

START_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class Kubectl:
    binary: Path
    kubeconfig: Path

    def run(self, *args: str, check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise CommandError(proc)
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    @staticmethod
    def decode(text: str) -> Any:
        return json.loads(text)

    def apply(self, manifest: dict[str, Any]) -> None:
        self.run("apply", "-f", "-", input=json.dumps(manifest))


@dataclass
class ControlPlane:
    workdir: Path
    etcd: subprocess.Popen[bytes]
    apiserver: subprocess.Popen[bytes]
    url: str
    token: str
    kubeconfig: Path
    kubectl: Kubectl

    def log_tails(self) -> str:
        return "\n".join(f"--- {name} log tail ---\n{tail(self.workdir / f'{name}.log', 30)}"
                         for name in ("etcd", "kube-apiserver"))


def _write_kubeconfig(path: Path, url: str, token: str) -> None:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
        "clusters": [{"name": "e2e", "cluster": {"server": url, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
    }
    path.write_text(json.dumps(config))


def _service_account_keys(folder: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = folder / "sa.key", folder / "sa.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _start_etcd(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    process = spawn([binary("etcd"), "--name", "e2e", "--data-dir", workdir / "etcd",
                     "--listen-client-urls", client, "--advertise-client-urls", client,
                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                     "--initial-cluster", f"e2e={peer}", "--log-level", "warn"], workdir / "etcd.log")
    wait_until(lambda: _answers(f"{client}/health"), timeout=START_TIMEOUT, what="etcd's /health")
    return process, client


def _answers(url: str, token: str | None = None) -> bool:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return httpx.get(url, headers=headers, verify=False, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _apiserver_command(apiserver: Path, workdir: Path, etcd: str, bind: str, port: int,
                       advertise: str) -> list[str | Path]:
    token_file = workdir / "tokens.csv"
    sa_key, sa_pub = _service_account_keys(workdir)
    return [
        apiserver, f"--etcd-servers={etcd}", f"--bind-address={bind}", f"--secure-port={port}",
        f"--advertise-address={advertise}", f"--cert-dir={workdir / 'apiserver-pki'}",
        f"--token-auth-file={token_file}", "--authorization-mode=AlwaysAllow",
        f"--service-account-key-file={sa_pub}", f"--service-account-signing-key-file={sa_key}",
        "--service-account-issuer=https://kubernetes.default.svc", "--service-cluster-ip-range=10.254.0.0/24",
        "--disable-admission-plugins=ServiceAccount", "--endpoint-reconciler-type=none",
        "--enable-priority-and-fairness=false", "--profiling=false", "--allow-privileged=true",
        "--kubelet-preferred-address-types=InternalIP", "--v=1",
    ]


@contextlib.contextmanager
def control_plane(workdir: Path, apiserver: Path, kubectl: Path, advertise: str,
                  bind: str = "127.0.0.1") -> Iterator[ControlPlane]:
    """etcd and kube-apiserver, answering /readyz; advertise is the node's IP (never loopback). The API server
    listens on ``bind``; its self-signed certificate (``apiserver-pki/apiserver.crt``) names the advertised
    address."""
    workdir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    (workdir / "tokens.csv").write_text(f"{token},admin,admin,system:masters\n")
    etcd, etcd_url = _start_etcd(workdir)
    port = free_port()
    url = f"https://{bind}:{port}"
    process = spawn(_apiserver_command(apiserver, workdir, etcd_url, bind, port, advertise),
                    workdir / "kube-apiserver.log")
    kubeconfig = workdir / "kubeconfig"
    _write_kubeconfig(kubeconfig, url, token)
    plane = ControlPlane(workdir, etcd, process, url, token, kubeconfig, Kubectl(kubectl, kubeconfig))
    try:
        wait_until(lambda: _ready(process, f"{url}/readyz", token), timeout=START_TIMEOUT,
                   what="kube-apiserver's /readyz", interval=0.5)
        yield plane
    except BaseException:
        print(plane.log_tails())
        raise
    finally:
        stop_process(process, timeout=30)
        stop_process(etcd, timeout=30)


def _ready(process: subprocess.Popen[bytes], url: str, token: str) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"kube-apiserver exited with code {process.returncode}")
    return _answers(url, token)

