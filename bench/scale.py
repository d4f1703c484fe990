"""Scale: many containers in many pods, then what kubelet's frequent calls cost and how fast a restart serves.

    .venv/bin/python -m bench.scale [--pods 100] [--per-pod 10] [--calls 300] [--restarts 3]
                                    [--containerd-pods N] [--only crishim|containerd]

crishim and containerd 1.6's CRI plugin each get ``--pods`` host-network pods (so CNI plays no part) of
``--per-pod`` busybox ``sleep`` containers, from a local registry; containerd's sandboxes run a busybox
``sleep`` image from the same registry as their pause image. Both daemons hold their containers at once.
With every container running:

- the read calls kubelet makes on a node are timed, ``--calls`` of each, alternating between the daemons call
  by call, the disk flushed before each method: ListContainers, ListPodSandbox, ContainerStatus (a random
  container), ImageFsInfo, ContainerStats (a random container), ListContainerStats;
- each daemon's resident memory (and its supervisors': crishim's conmons, containerd's shims) and its CPU use
  while nobody calls it;
- start-up: the daemon is stopped with every container in place and started again, timed until it answers
  Version and until ListContainers lists every container running; the daemons take turns, the disk flushed
  (and the page cache dropped where allowed) before each start. crishim keeps its compiled bytecode, as an
  installed crishim has it (in the benchmark's folder: a shell that sets PYTHONDONTWRITEBYTECODE would
  otherwise have every start compile all of crishim).

Everything is removed afterwards (pods stopped and removed through the CRI) and what is left is reported:
pods, containers, mounts, namespace pins, supervisors and container processes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.container_start import push_images
from bench.disk import can_drop_caches, flush
from bench.proc_stat import cpu_seconds
from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
from tests.support.containerd import Containerd, start_containerd
from tests.support.cri_env import processes
from tests.support.daemon import Crishim, launch, python_executable
from tests.support.mounts import mounts_under
from tests.support.procs import spawn, stop_process
from tests.support.registry import start_registry
from tests.support.tools import binary

# Distinctive, so the container processes left behind can be told from anyone else's.
SLEEP = ["/bin/busybox", "sleep", "86413"]
# Pods brought up (and torn down) at once: enough to keep a daemon busy on two cores, few enough to leave
# it room for its own threads.
PARALLEL = 4
CALL_TIMEOUT = 120.0
PIN_DIRS = ("netns", "ipcns", "utsns", "userns")  # crishim's bind mounts of themselves, kept while it runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--per-pod", type=int, default=10)
    parser.add_argument("--containerd-pods", type=int, default=None, help="fewer pods for containerd")
    parser.add_argument("--calls", type=int, default=300, help="timed calls of each method per daemon")
    parser.add_argument("--restarts", type=int, default=3, help="timed start-ups per daemon")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--only", choices=("crishim", "containerd"), default=None)
    args = parser.parse_args()
    plan = Plan(args.pods, args.per_pod, args.pods if args.containerd_pods is None else args.containerd_pods,
                args.calls, args.restarts, args.idle_seconds, args.only)
    with tempfile.TemporaryDirectory(prefix="crishim-scale-", dir="/var/tmp") as tmp:
        try:
            print(json.dumps(run_all(Path(tmp), plan), indent=2))
        except BaseException:
            _keep_logs(Path(tmp))
            raise


def _keep_logs(work: Path) -> None:
    """The daemons' logs, kept when the benchmark fails (its folder is removed)."""
    kept = Path(tempfile.mkdtemp(prefix="crishim-scale-logs-", dir="/var/tmp"))
    for log in (work / "crishim" / "crishim.log", work / "containerd" / "containerd.log"):
        if log.exists():
            shutil.copy(log, kept / log.name)
    print(f"daemon logs kept in {kept}", file=sys.stderr)


@dataclass(frozen=True, slots=True)
class Plan:
    pods: int
    per_pod: int
    containerd_pods: int
    calls: int
    restarts: int
    idle_seconds: float
    only: str | None = None


@dataclass
class Side:
    """One daemon under test and what the benchmark made on it."""

    name: str
    socket: Path
    stop: Callable[[], object]  # the daemon only: its containers stay
    spawn: Callable[[], None]
    pid: Callable[[], int]
    supervisors: Callable[[], list[int]]
    state: Path
    root: Path
    pods: int
    per_pod: int
    pod_ids: list[str] = field(default_factory=list)
    container_ids: list[str] = field(default_factory=list)

    @property
    def containers(self) -> int:
        return self.pods * self.per_pod

    @contextmanager
    def stubs(self) -> Iterator[Stubs]:
        with grpc.insecure_channel(f"unix://{self.socket}") as channel:
            yield Stubs(api_pb2_grpc.RuntimeServiceStub(channel), api_pb2_grpc.ImageServiceStub(channel))


@dataclass(frozen=True, slots=True)
class Stubs:
    runtime: Any
    images: Any


def run_all(work: Path, plan: Plan) -> dict[str, Any]:
    _cache_bytecode(work / "pycache")
    registry = start_registry(work / "registry")
    try:
        image, pause = push_images(work, registry.host)
        with ExitStack() as stack:
            sides = []
            if plan.only in (None, "crishim"):
                sides.append(_crishim_side(stack, work / "crishim", registry.host, plan))
            if plan.only in (None, "containerd"):
                sides.append(_containerd_side(stack, work / "containerd", registry.host, pause, plan))
            return _bench(sides, image, pause, plan)
    finally:
        registry.stop()


def _cache_bytecode(folder: Path) -> None:
    """The daemon keeps its compiled bytecode (in the benchmark's folder, not the sources'), as an installed
    crishim has it: the first start compiles, the timed restarts do not. A shell with PYTHONDONTWRITEBYTECODE
    would otherwise have every start compile all of crishim again."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(folder)


def _crishim_side(stack: ExitStack, workdir: Path, host: str, plan: Plan) -> Side:
    daemon = launch(workdir, [host])
    stack.callback(daemon.cleanup)

    def respawn() -> None:
        daemon.process = spawn(daemon.command(), daemon.log_path)

    def conmons() -> list[int]:
        return processes(lambda argv: argv[0].endswith("conmon") and str(daemon.state) in " ".join(argv))

    return Side("crishim", daemon.socket, daemon.stop, respawn, lambda: _pid(daemon),
                conmons, daemon.state, daemon.root, plan.pods, plan.per_pod)


def _containerd_side(stack: ExitStack, workdir: Path, host: str, pause: str, plan: Plan) -> Side:
    oracle = start_containerd(workdir, [host], sandbox_image=pause, log_level="info")
    stack.callback(lambda: oracle.stop())

    def respawn() -> None:
        oracle.process = spawn([binary("containerd"), "--config", workdir / "config.toml"], oracle.log_path)

    def shims() -> list[int]:
        return processes(lambda argv: "containerd-shim" in argv[0] and str(oracle.socket) in argv)

    return Side("containerd", oracle.socket, lambda: stop_process(oracle.process), respawn,
                lambda: _pid(oracle), shims, oracle.state, oracle.root, plan.containerd_pods, plan.per_pod)


def _pid(daemon: Crishim | Containerd) -> int:
    assert daemon.process is not None
    return daemon.process.pid


def _bench(sides: list[Side], image: str, pause: str, plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {"plan": {"pods": plan.pods, "per_pod": plan.per_pod,
                                    "containerd_pods": plan.containerd_pods, "calls": plan.calls,
                                    "restarts": plan.restarts},
                           "sides": {}}
    try:
        for side in sides:
            out["sides"][side.name] = {"populate": _populate(side, image, pause)}
        latencies = _latencies(sides, plan.calls)
        for side in sides:
            report = out["sides"][side.name]
            report["latency_ms"] = latencies[side.name]
            report["process"] = _process(side, plan.idle_seconds)
        starts = _restarts(sides, plan.restarts)
        for side in sides:
            out["sides"][side.name]["start_up"] = starts[side.name]
            out["sides"][side.name]["process_after_restart"] = _process(side, 0)
    finally:
        for side in sides:
            out["sides"].setdefault(side.name, {})["teardown"] = _teardown(side)
        out["container_processes_left"] = len(container_processes())
    if len(sides) == 2:
        out["ratios"] = _ratios(out["sides"]["crishim"], out["sides"]["containerd"])
    return out


# --- populating -----------------------------------------------------------------------------------------

def _populate(side: Side, image: str, pause: str) -> dict[str, Any]:
    start = time.perf_counter()
    with side.stubs() as stubs:
        for ref in {image, pause} if side.name == "containerd" else {image}:
            stubs.images.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref)),
                                   timeout=CALL_TIMEOUT)
        with ThreadPoolExecutor(PARALLEL) as pool:
            made = list(pool.map(lambda i: _one_pod(stubs, side.name, i, side.per_pod, image), range(side.pods)))
    for pod_id, ids in made:
        side.pod_ids.append(pod_id)
        side.container_ids.extend(ids)
    return {"pods": side.pods, "containers": len(side.container_ids),
            "seconds": round(time.perf_counter() - start, 1)}


def _one_pod(stubs: Stubs, side: str, index: int, per_pod: int, image: str) -> tuple[str, list[str]]:
    sandbox = _pod_config(side, index)
    pod_id = stubs.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=sandbox),
                                         timeout=CALL_TIMEOUT).pod_sandbox_id
    ids = []
    for i in range(per_pod):
        config = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name=f"c{i}"),
                                         image=api_pb2.ImageSpec(image=image), command=SLEEP)
        cid = stubs.runtime.CreateContainer(api_pb2.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=sandbox), timeout=CALL_TIMEOUT).container_id
        stubs.runtime.StartContainer(api_pb2.StartContainerRequest(container_id=cid), timeout=CALL_TIMEOUT)
        ids.append(cid)
    return pod_id, ids


def _pod_config(side: str, index: int) -> api_pb2.PodSandboxConfig:
    config = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(
        name=f"scale-{index}", namespace="bench", uid=f"scale-{side}-{index}"))
    config.linux.security_context.namespace_options.network = api_pb2.NamespaceMode.NODE
    return config


# --- latencies -------------------------------------------------------------------------------------------

_Call = Callable[[Stubs, Side, random.Random], Any]

CALLS: dict[str, _Call] = {
    "ListContainers": lambda s, side, rng: s.runtime.ListContainers(api_pb2.ListContainersRequest()),
    "ListPodSandbox": lambda s, side, rng: s.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()),
    "ContainerStatus": lambda s, side, rng: s.runtime.ContainerStatus(
        api_pb2.ContainerStatusRequest(container_id=rng.choice(side.container_ids))),
    "ImageFsInfo": lambda s, side, rng: s.images.ImageFsInfo(api_pb2.ImageFsInfoRequest()),
    "ContainerStats": lambda s, side, rng: s.runtime.ContainerStats(
        api_pb2.ContainerStatsRequest(container_id=rng.choice(side.container_ids))),
    "ListContainerStats": lambda s, side, rng: s.runtime.ListContainerStats(api_pb2.ListContainerStatsRequest()),
}
WARMUP = 3


def _latencies(sides: list[Side], calls: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {side.name: {} for side in sides}
    with ExitStack() as stack:
        stubs = [stack.enter_context(side.stubs()) for side in sides]
        for method, call in CALLS.items():
            flush(False)
            samples: dict[str, list[float]] = {side.name: [] for side in sides}
            for k in range(WARMUP + calls):
                # The same containers on each side, in turns that swap who goes first.
                seed = random.Random(k).random()
                order = list(zip(sides, stubs, strict=True))
                for side, stub in order if k % 2 == 0 else reversed(order):
                    begin = time.perf_counter()
                    call(stub, side, random.Random(seed))
                    if k >= WARMUP:
                        samples[side.name].append((time.perf_counter() - begin) * 1000)
            for name, values in samples.items():
                out[name][method] = _percentiles(values)
    return out


def _percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {"n": len(samples), "p50": round(statistics.median(samples), 2),
            "p99": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2)}


# --- the processes ----------------------------------------------------------------------------------------

def _process(side: Side, idle_seconds: float) -> dict[str, Any]:
    pid = side.pid()
    supervisors = side.supervisors()
    report: dict[str, Any] = {"rss_kib": _rss_kib(pid), "threads": int(_status(pid)["Threads"]),
                              "fds": len(os.listdir(f"/proc/{pid}/fd")),
                              "supervisors": len(supervisors),
                              "supervisors_rss_kib": sum(_rss_kib(p) for p in supervisors)}
    if idle_seconds:
        before = cpu_seconds(pid)
        time.sleep(idle_seconds)
        report["idle_cpu_percent"] = round((cpu_seconds(pid) - before) / idle_seconds * 100, 2)
    return report


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


def _rss_kib(pid: int) -> int:
    try:
        return int(_status(pid)["VmRSS"].split()[0])
    except (FileNotFoundError, KeyError):  # gone, or a zombie
        return 0


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False




# --- start-up ---------------------------------------------------------------------------------------------

def _restarts(sides: list[Side], rounds: int) -> dict[str, dict[str, Any]]:
    serving: dict[str, list[float]] = {side.name: [] for side in sides}
    listed: dict[str, list[float]] = {side.name: [] for side in sides}
    running: dict[str, int] = {}
    drop = can_drop_caches()
    for k in range(rounds):
        for side in sides if k % 2 == 0 else reversed(sides):
            side.stop()
            flush(drop)
            first_answer, all_listed, running[side.name] = _timed_start(side)
            serving[side.name].append(first_answer)
            listed[side.name].append(all_listed)
    return {side.name: {"samples": rounds, "page_cache_dropped": drop,
                        "until_version_s": _summary(serving[side.name]),
                        "until_all_listed_running_s": _summary(listed[side.name]),
                        "running_after": running[side.name], "expected": side.containers}
            for side in sides}


def _timed_start(side: Side, timeout: float = 300.0, expect: int | None = None) -> tuple[float, float, int]:
    """Seconds until the daemon answers Version, and until it lists every container running; how many it
    lists running at the end."""
    expect = side.containers if expect is None else expect
    begin = time.perf_counter()
    side.spawn()
    first_answer = None
    running = 0
    while time.perf_counter() - begin < timeout:
        # A channel per try: a channel that failed to connect waits out its reconnect backoff.
        with grpc.insecure_channel(f"unix://{side.socket}") as channel:
            runtime = api_pb2_grpc.RuntimeServiceStub(channel)
            try:
                if first_answer is None:
                    runtime.Version(api_pb2.VersionRequest(), timeout=5)
                    first_answer = time.perf_counter() - begin
                running = _running(runtime)
            except grpc.RpcError:
                pass
        if first_answer is not None and running >= expect:
            return first_answer or 0.0, time.perf_counter() - begin, running
        time.sleep(0.01)
    raise TimeoutError(f"{side.name} did not list {expect} containers running within {timeout:.0f} s "
                       f"({running} were)")


def _running(runtime: Any) -> int:
    wanted = api_pb2.ContainerFilter(state=api_pb2.ContainerStateValue(
        state=api_pb2.ContainerState.CONTAINER_RUNNING))
    answer = runtime.ListContainers(api_pb2.ListContainersRequest(filter=wanted), timeout=30)
    return len(answer.containers)


def _summary(samples: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(samples), 3), "min": round(min(samples), 3),
            "max": round(max(samples), 3)}


# --- teardown ---------------------------------------------------------------------------------------------

def _teardown(side: Side) -> dict[str, Any]:
    if not _alive(side.pid()):
        _timed_start(side, expect=0)  # it died on the way: its containers are still to be removed
    start = time.perf_counter()
    errors: list[str] = []
    with side.stubs() as stubs:
        pods = [p.id for p in stubs.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=60).items]

        def remove(pod_id: str) -> None:
            try:
                stubs.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id),
                                             timeout=CALL_TIMEOUT)
                stubs.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id),
                                               timeout=CALL_TIMEOUT)
            except grpc.RpcError as exc:
                errors.append(f"{pod_id}: {exc.code().name} {exc.details()}")

        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(remove, pods))
        seconds = round(time.perf_counter() - start, 1)
        left = _leftovers(side, stubs)
    if side.name == "crishim":
        left += _check(side)
    return {"pods_removed": len(pods), "seconds": seconds, "errors": errors, "leftovers": left}


def _leftovers(side: Side, stubs: Stubs) -> list[str]:
    found = [f"pod {p.id}" for p in stubs.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items]
    found += [f"container {c.id}" for c in stubs.runtime.ListContainers(api_pb2.ListContainersRequest()).containers]
    pins = {(side.state / name).resolve() for name in PIN_DIRS}
    found += [f"mount {m}" for m in mounts_under(side.state) if m.resolve() not in pins]
    found += [f"mount {m}" for m in mounts_under(side.root)]
    for name in PIN_DIRS:
        folder = side.state / name
        found += [f"{name}/{p.name}" for p in folder.iterdir()] if folder.is_dir() else []
    found += [f"supervisor {pid}" for pid in side.supervisors()]
    return found


def _check(side: Side) -> list[str]:
    result = subprocess.run([str(python_executable()), "-m", "cri", "check", "--root", str(side.root),
                             "--state", str(side.state)], capture_output=True, text=True)
    return [f"check: {line}" for line in result.stdout.splitlines() if result.returncode]


def _ratios(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    ratios: dict[str, Any] = {}
    for method, ours in mine["latency_ms"].items():
        other = theirs["latency_ms"][method]
        ratios[method] = {q: round(ours[q] / other[q], 2) if other[q] else None for q in ("p50", "p99")}
    ratios["rss"] = round(mine["process"]["rss_kib"] / theirs["process"]["rss_kib"], 2)
    ratios["rss_with_supervisors"] = round(
        (mine["process"]["rss_kib"] + mine["process"]["supervisors_rss_kib"])
        / (theirs["process"]["rss_kib"] + theirs["process"]["supervisors_rss_kib"]), 2)
    for what in ("until_version_s", "until_all_listed_running_s"):
        ratios[f"start_up_{what}"] = round(
            mine["start_up"][what]["median"] / theirs["start_up"][what]["median"], 2)
    return ratios


def container_processes() -> list[int]:
    """The benchmark's container processes still alive on the host (its distinctive sleep)."""
    return processes(lambda argv: argv == SLEEP)


if __name__ == "__main__":
    main()
