"""crishim running pods for real: the daemon on a throw-away CNI network, a busybox image pulled, crictl to
drive it, and an inventory of everything a pod or container may leave on the host.

``CriEnv`` wraps the crictl commands the runtime tests use. ``inventory()`` lists what pods and containers
have on the host: mounts under the daemon's state and root, namespace pins and PID holders, CNI IP
allocations, cache entries, veths and nat rules, OCI bundles, runc state, conmon processes, exec folders, pod
files, cgroups and snapshots other than the image's committed layers. The ``cri`` fixture removes every pod
(``crictl rmp -af``) after each test and fails the test when anything is left; whatever happens, the network,
the daemon and its mounts are torn down.

The fixtures are imported into tests/integration/conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri.api.runtime.v1 import api_pb2_grpc
from tests.conftest import phase_failed
from tests.support.cni_network import PLUGIN_DIR, Network, temporary_network
from tests.support.cri_configs import container_config, pod_config, write_json
from tests.support.ctr_client import Ctr
from tests.support.daemon import Crishim, CrishimOptions
from tests.support.images import PushedImage
from tests.support.mounts import mounts_under
from tests.support.procs import CommandError, wait_until
from tests.support.registry import Registry
from tests.support.tools import binary, require_root

__all__ = ["CriEnv", "cri", "cri_environment", "cri_factory", "process_alive", "processes"]

NAMESPACE = "k8s.io"
TASK_DIR = "io.containerd.runtime.v2.task"
CNI_CACHE = Path("io.containerd.grpc.v1.cri") / "cni-results"
PIN_DIRS = ("netns", "ipcns", "utsns", "userns")  # private bind mounts of themselves: they stay, the pins in them go
CGROUP_ROOT = Path("/sys/fs/cgroup")
# A long-running container that goes quietly when asked to: sh waits on a background sleep, so a trapped
# signal runs its handler at once instead of after the sleep.
SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; echo started; while true; do busybox sleep 1000 & wait $!; done"]


class CriEnv:
    def __init__(self, daemon: Crishim, network: Network, image: PushedImage, workdir: Path) -> None:
        self.daemon = daemon
        self.network = network
        self.image = image
        self.workdir = workdir
        self.logs = workdir / "pod-logs"
        self.configs = workdir / "configs"
        self.pod_configs: dict[str, Path] = {}
        self.container_ids: set[str] = set()
        self.pid_holders: set[int] = set()
        self.ctr = Ctr(daemon.socket)

    # --- crictl ------------------------------------------------------------------------------------------

    def crictl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.daemon.crictl(*args, check=check)

    def json(self, *args: str) -> Any:
        return self.daemon.crictl_json(*args)

    def rpc(self, method: str, request: Any) -> Any:
        """One RuntimeService call over gRPC, for the fields crictl does not print."""
        with grpc.insecure_channel(f"unix://{self.daemon.socket}") as channel:
            return getattr(api_pb2_grpc.RuntimeServiceStub(channel), method)(request, timeout=60)

    def pull(self) -> None:
        self.crictl("pull", self.image.ref)

    def runp(self, config: dict[str, Any] | None = None, check: bool = True, runtime: str = "") -> str:
        """Run a pod (a fresh one with a log directory unless a config is given) with the runtime handler
        named (the default when ""); returns its id."""
        config = config if config is not None else self.pod(None)
        path = write_json(self.configs, config, f"pod-{config['metadata']['name']}")
        handler = ["--runtime", runtime] if runtime else []
        proc = self.crictl("runp", *handler, str(path), check=check)
        if proc.returncode:
            return ""
        pod_id = proc.stdout.strip()
        self.pod_configs[pod_id] = path
        with contextlib.suppress(CommandError, KeyError, ValueError):
            holder = int(self.inspectp(pod_id)["info"]["pid"])
            if holder:
                self.pid_holders.add(holder)
        return pod_id

    def pod(self, name: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """A pod config whose containers log under this environment's log folder."""
        config = pod_config(name, **kwargs)
        if "log_directory" not in kwargs:
            config["log_directory"] = str(self.logs / config["metadata"]["name"])
        return config

    def container(self, name: str, **kwargs: Any) -> dict[str, Any]:
        """A container config of the busybox test image; a sleeper unless a command is given."""
        if "command" not in kwargs and "args" not in kwargs:
            kwargs["command"] = SLEEPER
        return container_config(name, self.image.ref, **kwargs)

    def create(self, pod_id: str, config: dict[str, Any], check: bool = True,
               pod_config: Path | None = None) -> subprocess.CompletedProcess[str]:
        path = write_json(self.configs, config, f"ctr-{config['metadata']['name']}-{secrets.token_hex(3)}")
        pod_path = pod_config or self.pod_configs[pod_id]
        proc = self.crictl("create", "--no-pull", pod_id, str(path), str(pod_path), check=check)
        if proc.returncode == 0:
            self.container_ids.add(proc.stdout.strip())
        return proc

    def start(self, container_id: str) -> None:
        self.crictl("start", container_id)

    def run(self, pod_id: str, config: dict[str, Any]) -> str:
        """Create and start a container; returns its id."""
        container_id = self.create(pod_id, config).stdout.strip()
        self.start(container_id)
        return container_id

    def inspectp(self, pod_id: str) -> Any:
        return self.json("inspectp", pod_id)

    def inspect(self, container_id: str) -> Any:
        return self.json("inspect", container_id)

    def status(self, container_id: str) -> Any:
        return self.inspect(container_id)["status"]

    def state(self, container_id: str) -> str:
        return str(self.status(container_id)["state"])

    def exec(self, container_id: str, *command: str, check: bool = True,
             timeout: int | None = None) -> subprocess.CompletedProcess[str]:
        extra = ["--timeout", str(timeout)] if timeout is not None else []
        return self.crictl("exec", "-s", *extra, container_id, *command, check=check)

    def wait_state(self, container_id: str, state: str, timeout: float = 20) -> Any:
        wait_until(lambda: self.state(container_id) == state, timeout=timeout,
                   what=f"container {container_id[:12]} to be {state}", interval=0.1)
        return self.status(container_id)

    def wait_log(self, container_id: str, text: str, timeout: float = 10) -> str:
        found = ""

        def has() -> bool:
            nonlocal found
            found = self.crictl("logs", container_id, check=False).stdout
            return text in found

        wait_until(has, timeout=timeout, what=f"{text!r} in the log of {container_id[:12]}", interval=0.1)
        return found

    def pod_ip(self, pod_id: str) -> str:
        return str(self.inspectp(pod_id)["status"]["network"]["ip"])

    def container_pid(self, container_id: str) -> int:
        return int(self.inspect(container_id)["info"]["pid"])

    # --- what is left ------------------------------------------------------------------------------------

    def remove_everything(self) -> None:
        self.crictl("rmp", "-af", check=False)
        # Containers outside any pod the daemon knows cannot exist, but a half-removed one might linger.
        for container_id in self.crictl("ps", "-aq", check=False).stdout.split():
            self.crictl("rm", "-f", container_id, check=False)

    def inventory(self) -> list[str]:
        """Everything pods and containers have on the host now; empty when there are none."""
        state, root = self.daemon.state, self.daemon.root
        found: list[str] = []
        pods = self.crictl("pods", "-q", check=False).stdout.split()
        containers = self.crictl("ps", "-aq", check=False).stdout.split()
        found += [f"pod {p}" for p in pods] + [f"container {c}" for c in containers]
        pin_dirs = {(state / name).resolve() for name in PIN_DIRS}
        found += [f"mount {m}" for m in mounts_under(state) if m.resolve() not in pin_dirs]
        found += [f"mount {m}" for m in mounts_under(root)]
        for folder in (*PIN_DIRS, "pidns", "sandboxes", "runc", "crun", "conmon", "exits", "attach", "exec",
                       f"{TASK_DIR}/{NAMESPACE}"):
            found += [f"{folder}/{p.name}" for p in _entries(state / folder)]
        found += [f"CNI cache {p.name}" for p in _entries(root / CNI_CACHE)]
        found += [f"CNI IP allocation {ip}" for ip in self.network.allocations()]
        found += [f"veth {v} on {self.network.bridge}" for v in self.network.veths()]
        found += [f"nat rule {r}" for r in self.network.nat_rules()]
        found += [f"conmon process {pid}" for pid in processes(lambda cmd: cmd[0].endswith("conmon")
                                                                 and str(state) in " ".join(cmd))]
        found += [f"PID holder {pid}" for pid in self.pid_holders if process_alive(pid)]
        found += [f"cgroup {g}" for g in _cgroups(self.container_ids)]
        found += [f"snapshot {row.key} ({row.kind})" for row in self.ctr.snapshots() if row.kind != "Committed"]
        return sorted(found)


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def processes(match: Callable[[list[str]], bool]) -> list[int]:
    """The pids of processes whose command line ``match`` accepts."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if cmdline and match(cmdline):
            pids.append(int(entry.name))
    return pids


def process_alive(pid: int) -> bool:
    """Whether pid is a process that has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _cgroups(container_ids: set[str]) -> list[Path]:
    if not CGROUP_ROOT.is_dir():
        return []
    hierarchies = [CGROUP_ROOT] + [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()]
    return [h / NAMESPACE / c for h in hierarchies for c in sorted(container_ids) if (h / NAMESPACE / c).exists()]


def _kill_strays(env: CriEnv) -> None:
    """After a failed cleanup: the processes a broken daemon may have left, so the host stays usable."""
    state = str(env.daemon.state)
    for pid in processes(lambda cmd: cmd[0].endswith("conmon") and state in " ".join(cmd)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    runc_root = env.daemon.state / "runc"
    for entry in _entries(runc_root):
        subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", entry.name], capture_output=True)
    for pid in env.pid_holders:
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for cgroup in _cgroups(env.container_ids):
        with contextlib.suppress(OSError):
            cgroup.rmdir()


@contextlib.contextmanager
def cri_environment(workdir: Path, registry: Registry, image: PushedImage,
                    *, check_leftovers: bool = True, config: str = "") -> Iterator[CriEnv]:
    """crishim on a fresh network with the image pulled (``config``: TOML added to its config file); on exit
    every pod is removed and, with check_leftovers, an AssertionError names whatever is left."""
    require_root("pods (namespaces, mounts, CNI, runc)")
    for tool in ("crictl", "ctr", "runc", "conmon"):
        binary(tool)
    with temporary_network(workdir / "cni") as network:
        extra = ["--cni-conf-dir", str(network.conf_dir), "--cni-bin-dir", str(PLUGIN_DIR)]
        daemon = Crishim(workdir / "crishim", CrishimOptions([registry.host], extra_args=extra, extra_config=config))
        env = CriEnv(daemon, network, image, workdir)
        try:
            daemon.start()
            env.pull()
            yield env
            if not daemon.running:
                daemon.start()
            env.remove_everything()
            left = env.inventory()
            if check_leftovers and left:
                raise AssertionError("left behind after crictl rmp -af:\n  " + "\n  ".join(left))
        finally:
            if daemon.running:
                env.remove_everything()
            _kill_strays(env)
            daemon.cleanup()


@pytest.fixture
def cri_factory(request: pytest.FixtureRequest, tmp_path: Path, registry: Registry,
                test_images: dict[str, PushedImage]) -> Iterator[Callable[..., CriEnv]]:
    """Start environments (most tests need one: ``cri``); each is checked for leftovers and torn down."""
    with contextlib.ExitStack() as stack:
        envs: list[CriEnv] = []

        def start(image: PushedImage | None = None, check_leftovers: bool = True, config: str = "") -> CriEnv:
            workdir = tmp_path / f"cri-{len(envs)}"
            env = stack.enter_context(cri_environment(workdir, registry, image or test_images["oci"],
                                                      check_leftovers=check_leftovers, config=config))
            envs.append(env)
            return env

        try:
            yield start
        finally:
            if phase_failed(request):
                for env in envs:
                    print(f"\n--- crishim log ({env.daemon.log_path}), without debug lines ---")
                    print(_log_without_debug(env.daemon.log_path))


@pytest.fixture
def cri(cri_factory: Callable[..., CriEnv]) -> CriEnv:
    started = time.monotonic()
    env = cri_factory()
    print(f"crishim environment ready in {time.monotonic() - started:.1f} s")
    return env


def _log_without_debug(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join([line for line in text if '"level": "debug"' not in line][-lines:])
