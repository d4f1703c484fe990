"""The crishim daemon under test, run as `python -m cri serve` with a config file written here."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.content import blob_digests, blob_dir
from tests.support.crictl import Crictl, empty_config
from tests.support.hosts import write_plain_http_host
from tests.support.mounts import unmount_under
from tests.support.procs import free_port, spawn, stop_process, tail, wait_until

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0


def python_executable() -> Path:
    venv = REPO / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


@dataclass
class CrishimOptions:
    trusted_hosts: list[str] = field(default_factory=list)  # get a plain-HTTP hosts.toml each
    auths: dict[str, tuple[str, str]] = field(default_factory=dict)  # host -> (username, password)
    auth_fields: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> any [registry.auths] keys
    extra_args: list[str] = field(default_factory=list)
    extra_config: str = ""  # TOML that opens the config file: top-level keys, or tables such as [image]
    wrapper: list[str] = field(default_factory=list)  # runs the daemon, e.g. setpriv dropping a capability


class Crishim:
    def __init__(self, workdir: Path, options: CrishimOptions) -> None:
        self.workdir = workdir
        self.options = options
        workdir.mkdir(parents=True, exist_ok=True)
        self.root = workdir / "root"
        # Unix socket paths are limited to 108 bytes; pytest's tmp paths can get close, so keep state short.
        self.state = Path(tempfile.mkdtemp(prefix="crishim-", dir="/tmp"))
        self.socket = self.state / "crishim.sock"
        self.certs_dir = workdir / "certs.d"
        self.config_path = workdir / "crishim.toml"
        self.log_path = workdir / "crishim.log"
        self.metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.process: subprocess.Popen[bytes] | None = None
        self.crictl_client = Crictl(self.socket, empty_config(workdir))
        self._write_config()

    # --- lifecycle -------------------------------------------------------------------------------------

    def command(self) -> list[str | Path]:
        return [
            *self.options.wrapper, python_executable(), "-m", "cri", "serve",
            "--config", self.config_path, "--root", self.root, "--state", self.state,
            "--address", self.socket, "--metrics-address", f"127.0.0.1:{self.metrics_port}",
            "--log-level", "debug", *self.options.extra_args,
        ]

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = spawn(self.command(), self.log_path)
        try:
            wait_until(self._answers, timeout=START_TIMEOUT, what="crishim's socket to answer crictl version")
        except (TimeoutError, _Exited) as error:
            self.kill()
            raise RuntimeError(f"crishim did not start ({error}); log tail:\n{self.log_tail()}") from None

    def stop(self) -> int | None:
        """SIGTERM and wait: the graceful path that must flush and close the store."""
        return None if self.process is None else stop_process(self.process, sig=signal.SIGTERM, timeout=30)

    def kill(self) -> int | None:
        return None if self.process is None else stop_process(self.process, sig=signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cleanup(self) -> None:
        self.kill()
        unmount_under(self.state)
        unmount_under(self.root)
        shutil.rmtree(self.state, ignore_errors=True)

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)

    # --- clients ---------------------------------------------------------------------------------------

    def crictl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.crictl_client.run(*args, check=check)

    def crictl_json(self, command: str, *args: str) -> Any:
        return self.crictl_client.json(command, *args)

    def images(self) -> list[dict[str, Any]]:
        return self.crictl_client.images()

    def blobs(self) -> set[str]:
        return blob_digests(self.root)

    def blob_path(self, digest: str) -> Path:
        return blob_dir(self.root) / digest.split(":", 1)[1]

    # --- internals -------------------------------------------------------------------------------------

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise _Exited(f"exited with code {self.process.returncode}")
        if not self.socket.exists():
            return False
        return self.crictl_client.run("version", check=False).returncode == 0

    def _write_config(self) -> None:
        self.certs_dir.mkdir(exist_ok=True)
        for host in self.options.trusted_hosts:
            write_plain_http_host(self.certs_dir, host)
        q = json.dumps  # TOML basic strings accept JSON string escapes
        lines = ["[registry]", f"config_path = {q(str(self.certs_dir))}"]
        for host, (username, password) in self.options.auths.items():
            lines += ["", f"[registry.auths.{q(host)}]"]
            lines += [f"username = {q(username)}", f"password = {q(password)}"]
        for host, fields in self.options.auth_fields.items():
            lines += ["", f"[registry.auths.{q(host)}]"]
            lines += [f"{key} = {q(value)}" for key, value in fields.items()]
        self.config_path.write_text(self.options.extra_config + "\n" + "\n".join(lines) + "\n")


class _Exited(Exception):
    pass


def launch(
    workdir: Path, trusted_hosts: list[str], auths: dict[str, tuple[str, str]] | None = None
) -> Crishim:
    daemon = Crishim(workdir, CrishimOptions(trusted_hosts, auths or {}))
    try:
        daemon.start()
    except BaseException:
        daemon.cleanup()
        raise
    return daemon
