"""A real kubelet on crishim's socket: its configuration, its process and its HTTPS API.

Everything it keeps is under the test's folder (--root-dir, --cert-dir, podLogsDir, volumePluginDir, static
pod manifests); see tests/support/kube_host.py for how it is kept off the host's tunables, iptables and cgroups.
Its API listens on the node IP — the gateway address of the test's own bridge — and the tests reach it
there with anonymous access, which the configuration allows and nothing outside the machine can reach.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.kube_host import CONTAINER_LOGS, SysctlShadow, remove_log_links, shared_root_dir
from tests.support.procs import free_port, spawn, stop_process, tail, wait_until

__all__ = ["Kubelet", "KubeletSettings", "kubelet_config", "running_kubelet"]

START_TIMEOUT = 90.0
_UNLABELLED_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*) (\S+)$", re.MULTILINE)
# What the README tells an operator to merge into a node's kubelet configuration.
OPERATOR_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "kubelet-config.yaml"


@dataclass(frozen=True, slots=True)
class KubeletSettings:
    binary: Path
    node_name: str
    node_ip: str
    socket: Path  # crishim's
    cgroup_root: str
    kubeconfig: Path | None = None  # None: standalone, static pods only
    overrides: dict[str, Any] = field(default_factory=dict)  # KubeletConfiguration fields for one test
    verbosity: int = 2  # --v: some of kubelet's lines a test looks for are logged at 4 and above


@dataclass
class Kubelet:
    settings: KubeletSettings
    workdir: Path
    shadow: SysctlShadow
    port: int = field(default_factory=free_port)
    healthz_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    # --- where things are --------------------------------------------------------------------------------

    @property
    def root_dir(self) -> Path:
        return self.workdir / "root"

    @property
    def manifests(self) -> Path:
        return self.workdir / "manifests"

    @property
    def pod_logs(self) -> Path:
        return self.workdir / "pod-logs"

    @property
    def log_path(self) -> Path:
        return self.workdir / "kubelet.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / "kubelet.json"

    @property
    def url(self) -> str:
        return f"https://{self.settings.node_ip}:{self.port}"

    # --- lifecycle ---------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        s = self.settings
        args = [str(s.binary), f"--config={self.config_path}", f"--root-dir={self.root_dir}",
                f"--cert-dir={self.workdir / 'pki'}", f"--hostname-override={s.node_name}",
                f"--node-ip={s.node_ip}", f"--v={s.verbosity}"]
        if s.kubeconfig is not None:
            args.append(f"--kubeconfig={s.kubeconfig}")
        return self.shadow.wrap(args)

    def start(self) -> None:
        for folder in (self.manifests, self.pod_logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(kubelet_config(self), indent=1))  # JSON is YAML
        self.process = spawn(list(self.command()), self.log_path)
        try:
            wait_until(self._healthy, timeout=START_TIMEOUT, what="kubelet's /healthz", interval=0.5)
        except (TimeoutError, RuntimeError) as error:
            self.stop()
            raise RuntimeError(f"kubelet did not start ({error}); log tail:\n{self.log_tail()}") from None

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, sig=signal.SIGTERM, timeout=30)
            self.process = None

    def check_alive(self) -> None:
        """Fails when kubelet exited by itself (a panic, say), which a test may not have noticed."""
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"kubelet exited with code {self.process.returncode}; log tail:\n{self.log_tail()}")

    def restart(self, overrides: dict[str, Any] | None = None) -> None:
        """Restart, with these KubeletConfiguration fields instead of the previous overrides if given."""
        self.check_alive()
        self.stop()
        if overrides is not None:
            self.settings = dataclasses.replace(self.settings, overrides=overrides)
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"kubelet exited with code {self.process.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.healthz_port}/healthz", timeout=2).text == "ok"
        except httpx.HTTPError:
            return False

    # --- static pods -------------------------------------------------------------------------------------

    def add_static_pod(self, manifest: dict[str, Any]) -> str:
        """Write a manifest; returns the pod's name as kubelet runs it (``<name>-<node name>``)."""
        name = manifest["metadata"]["name"]
        # Written aside and renamed: kubelet reads whatever it finds, and ignores names starting with a dot.
        partial = self.manifests / f".{name}.json"
        partial.write_text(json.dumps(manifest))
        partial.rename(self.manifests / f"{name}.json")
        return f"{name}-{self.settings.node_name}"

    def remove_static_pod(self, name: str) -> None:
        (self.manifests / f"{name}.json").unlink()

    # --- HTTPS API ---------------------------------------------------------------------------------------

    def get(self, path: str, timeout: float = 10) -> httpx.Response:
        # kubelet serves a self-signed certificate it made in --cert-dir.
        return httpx.get(self.url + path, verify=False, timeout=timeout)

    def json(self, path: str) -> Any:
        response = self.get(path)
        response.raise_for_status()
        return json.loads(response.text)

    def metrics(self) -> dict[str, float]:
        """kubelet's /metrics samples that have no labels, by the names kubelet gives them (prometheus_client's
        parser would add _total to a counter's)."""
        response = self.get("/metrics")
        response.raise_for_status()
        return {match[1]: float(match[2]) for match in _UNLABELLED_SAMPLE.finditer(response.text)}

    def pods(self) -> list[dict[str, Any]]:
        """kubelet's own view (/pods): the pods it runs, with their statuses."""
        items: list[dict[str, Any]] = self.json("/pods")["items"] or []  # null when there are none
        return items

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        for pod in self.pods():
            if pod["metadata"]["name"] == name and pod["metadata"]["namespace"] == namespace:
                return pod
        return None

    def container_status(self, pod: str, container: str) -> dict[str, Any] | None:
        found = self.pod(pod)
        for status in (found or {}).get("status", {}).get("containerStatuses", []):
            if status["name"] == container:
                return dict(status)
        return None

    def wait_for(self, what: str, check: Any, timeout: float = 60) -> Any:
        """Poll check() until it returns something truthy; returns that."""
        result: Any = None

        def done() -> bool:
            nonlocal result
            result = check()
            return bool(result)

        wait_until(done, timeout=timeout, what=what, interval=0.5)
        return result


def kubelet_config(kubelet: Kubelet) -> dict[str, Any]:
    """The settings an operator is told to give kubelet (deploy/kubelet-config.yaml), on the test's socket,
    with what a kubelet sharing this host with other work needs."""
    s = kubelet.settings
    config: dict[str, Any] = yaml.safe_load(OPERATOR_CONFIG.read_text())
    config.update({
        "cgroupRoot": s.cgroup_root,
        "makeIPTablesUtilChains": False,
        "containerRuntimeEndpoint": f"unix://{s.socket}",
        "imageServiceEndpoint": f"unix://{s.socket}",
        "staticPodPath": str(kubelet.manifests),
        "fileCheckFrequency": "1s",
        "syncFrequency": "5s",
        "address": s.node_ip,
        "port": kubelet.port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": kubelet.healthz_port,
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "podLogsDir": str(kubelet.pod_logs),
        "volumePluginDir": str(kubelet.workdir / "volume-plugins"),
        "resolvConf": "",
        "failSwapOn": False,
        "serializeImagePulls": False,
        # The host's disk and memory are shared with other work; pods must not be evicted because of it.
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,  # no image garbage collection unless a test asks for it
        "imageGCLowThresholdPercent": 99,
        "shutdownGracePeriod": "0s",
    })
    gates = {**config.get("featureGates", {}), **s.overrides.get("featureGates", {})}
    config.update(s.overrides)
    config["featureGates"] = gates  # a test's gates are added to the operator's, not put in their place
    return config


@contextlib.contextmanager
def running_kubelet(settings: KubeletSettings, workdir: Path, shadow: SysctlShadow) -> Iterator[Kubelet]:
    """kubelet started and healthy; on exit stopped, its mounts unmounted and its log links removed. The
    pods it started keep running (as they would): the caller removes them through crishim."""
    logs_existed = CONTAINER_LOGS.is_dir()
    with shared_root_dir(workdir / "root"):
        kubelet = Kubelet(settings, workdir, shadow)
        try:
            kubelet.start()
            yield kubelet
            kubelet.check_alive()
        finally:
            kubelet.stop()
            remove_log_links(kubelet.pod_logs, logs_existed)
