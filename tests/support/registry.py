"""Debian's docker-registry (distribution 2.8) on 127.0.0.1, optionally behind htpasswd basic auth or TLS."""

from __future__ import annotations

import json
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.procs import free_port, run, spawn, stop_process, tail, wait_until
from tests.support.tools import binary


@dataclass(frozen=True)
class RegistryTLS:
    certificate: Path
    key: Path
    ca: Path  # signed the certificate; with ``client``, clients must present a certificate it signed
    client: tuple[Path, Path] | None = None  # a certificate and key it signed, for the readiness check


@dataclass
class Registry:
    host: str  # "127.0.0.1:PORT", the form used in image references
    storage: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    username: str | None = None
    password: str | None = None
    tls: RegistryTLS | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password)

    def stop(self) -> None:
        stop_process(self.process)


def start_registry(workdir: Path, *, username: str | None = None, password: str | None = None,
                   token: dict[str, str] | None = None, storage: Path | None = None,
                   tls: RegistryTLS | None = None) -> Registry:
    """Start one registry; retries on a new port when another process grabbed the chosen one first.

    ``token`` is distribution's ``auth.token`` section (bearer-token flow); ``storage`` lets a
    second registry serve what another one holds; ``tls`` serves HTTPS only.
    """
    exe = binary("docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    storage = storage or workdir / "storage"
    auth: dict[str, object] | None = {"token": token} if token else None
    if username and password and not token:
        auth = {"htpasswd": {"realm": "crishim-tests", "path": str(_write_htpasswd(workdir, username, password))}}
    for _attempt in range(3):
        port = free_port()
        config = _write_config(workdir, port, storage, auth, tls)
        log_path = workdir / "registry.log"
        proc = spawn([exe, "serve", config], log_path)
        registry = Registry(f"127.0.0.1:{port}", storage, log_path, proc, username, password, tls)
        if _wait_ready(registry):
            return registry
        registry.stop()
    raise RuntimeError(f"docker-registry did not start; log:\n{tail(workdir / 'registry.log')}")


def _write_htpasswd(workdir: Path, username: str, password: str) -> Path:
    # bcrypt is the only hash distribution's htpasswd backend accepts.
    line = run(binary("htpasswd"), "-Bbn", username, password).stdout.strip()
    path = workdir / "htpasswd"
    path.write_text(line + "\n")
    return path


def _write_config(workdir: Path, port: int, storage: Path, auth: dict[str, object] | None,
                  tls: RegistryTLS | None) -> Path:
    http: dict[str, object] = {"addr": f"127.0.0.1:{port}", "secret": "crishim-tests"}
    if tls is not None:
        http["tls"] = {"certificate": str(tls.certificate), "key": str(tls.key),
                       **({"clientcas": [str(tls.ca)]} if tls.client else {})}
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            # Background upload purging is irrelevant for short test sessions and only adds log noise.
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    if auth is not None:
        config["auth"] = auth
    path = workdir / "config.yml"
    path.write_text(json.dumps(config, indent=2))  # YAML is a superset of JSON
    return path


def _wait_ready(registry: Registry, timeout: float = 15) -> bool:
    """Poll /v2/: 200 when open, 401 when protected; False if the process died (e.g. port taken)."""

    def answered() -> bool:
        if registry.process.poll() is not None:
            raise _Exited
        try:
            status = httpx.get(f"{registry.url}/v2/", timeout=1, verify=_verify(registry)).status_code
        except httpx.TransportError:
            return False
        return status in (200, 401)

    try:
        wait_until(answered, timeout=timeout, what=f"registry on {registry.host}")
    except (_Exited, TimeoutError):
        return False
    return True


def _verify(registry: Registry) -> ssl.SSLContext | bool:
    if registry.tls is None:
        return True
    context = ssl.create_default_context(cafile=str(registry.tls.ca))
    if registry.tls.client is not None:
        context.load_cert_chain(*registry.tls.client)
    return context


class _Exited(Exception):
    pass
