"""Streaming (exec, port-forward), crishim against containerd 1.6's CRI, same image, same CNI network, same run.

    .venv/bin/python -m bench.streaming [--execs 200] [--forwards 11] [--forward-mib 128] [--sessions 50]

Each daemon gets one pod on a throw-away CNI network with two containers: an idle shell and busybox
``httpd`` serving a file of zeros from the container's root filesystem (written at start, read once before
timing, so it comes from the page cache on both sides). Dirty pages are written back (``sync``) before every
sample, so neither side pays for the other's writeback (runc's state, logs); the page cache itself is kept,
as the served file must come from memory on both. containerd's sandbox image is a busybox ``sleep`` from the
same local registry.

Measured, alternating crishim and containerd sample by sample:

- ``crictl version``: crictl's own start-up plus one unary RPC, the floor under every crictl command;
- ``crictl exec ID true``: the streaming exec (the URL from the Exec RPC, then client-go's SPDY), end to end;
- direct exec: the Exec RPC on a kept-open gRPC channel, then a minimal SPDY client (bench/spdy_exec.py), so
  no process start-up is timed: the URL, the upgrade, runc exec and the exit status (the RPC's share is
  reported apart);
- port-forward: one long-lived ``crictl port-forward POD LOCAL:8080`` per daemon; each sample downloads the
  file through it and reports bytes per second up to the body's last byte (the time from there to the
  connection's end is reported apart), and the daemon's CPU time per MiB, steadier than the rate on a busy
  machine;
- memory: the daemon's resident set before and while ``--sessions`` ``crictl exec ID busybox sleep 30`` run at
  once, per session; helper processes (crishim: the runc exec processes it supervises; containerd: its shim)
  are reported apart, by their proportional set size.

The report gives medians, p99 and spread (min, max) in milliseconds or MiB/s, and ratios crishim / containerd
(for latency lower is better for crishim, for throughput higher). ``--hold SECONDS`` keeps both daemons up
afterwards and prints crictl command lines, to time a sample by hand. Both daemons log at info.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.container_start import push_images
from bench.proc_stat import cpu_seconds
from bench.spdy_exec import exec_url
from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
from tests.support.cni_network import PLUGIN_DIR, Network, temporary_network
from tests.support.containerd import Containerd, start_containerd
from tests.support.cri_configs import container_config, pod_config, write_json
from tests.support.crictl import Crictl
from tests.support.daemon import Crishim, CrishimOptions
from tests.support.procs import free_port, wait_until
from tests.support.registry import start_registry

IDLE = ["sh", "-c", "trap 'exit 0' TERM; while true; do busybox sleep 1000 & wait $!; done"]
SERVER_PORT = 8080
SESSION_ARGV = ["busybox", "sleep", "30"]


@dataclass
class Side:
    """One daemon with its pod: what each measurement needs."""

    name: str
    crictl: Crictl
    socket: Path
    daemon_pid: int
    helpers: Callable[[], list[int]]  # pids of the processes serving its sessions besides the daemon
    pod: str = ""
    idle: str = ""
    server: str = ""
    pod_ip: str = ""
    forward: subprocess.Popen[bytes] | None = None
    forward_port: int = 0
    rpc_ms: list[float] = field(default_factory=list)  # the Exec RPC's share of each direct exec
    eof_ms: list[float] = field(default_factory=list)  # a download's last byte to the connection's end
    cpu_ms_per_mib: list[float] = field(default_factory=list)  # the daemon's CPU time per MiB forwarded

    def crictl_argv(self, *args: str) -> list[str]:
        return self.crictl.command(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--execs", type=int, default=200, help="exec samples per daemon and client")
    parser.add_argument("--versions", type=int, default=30, help="crictl version samples per daemon")
    parser.add_argument("--forwards", type=int, default=11, help="port-forward downloads per daemon")
    parser.add_argument("--forward-mib", type=int, default=128, help="size of the downloaded file")
    parser.add_argument("--sessions", type=int, default=50, help="concurrent idle exec sessions")
    parser.add_argument("--hold", type=float, default=0, help="seconds to keep both daemons up afterwards")
    args = parser.parse_args()
    # Tear down (pods, daemons, the network's rules) on SIGTERM, and on SIGINT even when started in the
    # background, where the shell leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="crishim-bench-", dir="/var/tmp") as tmp:
        run_all(Path(tmp), args)


def run_all(work: Path, args: argparse.Namespace) -> dict[str, object]:
    """Measure, print the report (before any --hold), return it."""
    registry = start_registry(work / "registry")
    try:
        image, pause = push_images(work, registry.host)
        with temporary_network(work / "cni") as network, daemons(work, registry.host, pause, network) as sides:
            for side in sides:
                prepare(side, image, args.forward_mib, work / side.name)
            try:
                results = measure_all(sides, args)
                print(json.dumps(results, indent=2), flush=True)
                if args.hold:
                    hold(sides, args.hold)
                return results
            finally:
                for side in sides:
                    teardown(side)
    finally:
        registry.stop()


@contextlib.contextmanager
def daemons(work: Path, host: str, pause: str, network: Network) -> Iterator[list[Side]]:
    extra = ["--cni-conf-dir", str(network.conf_dir), "--cni-bin-dir", str(PLUGIN_DIR), "--log-level", "info"]
    crishim = Crishim(work / "crishim", CrishimOptions([host], extra_args=extra))
    containerd: Containerd | None = None
    try:
        crishim.start()
        assert crishim.process is not None
        containerd = start_containerd(work / "containerd", [host], sandbox_image=pause,
                                      cni_conf_dir=network.conf_dir, log_level="info")
        containerd.crictl("pull", pause)
        mine_pid, theirs_pid = crishim.process.pid, containerd.process.pid
        theirs_socket = str(containerd.socket)
        yield [Side("crishim", crishim.crictl_client, crishim.socket, mine_pid, lambda: children(mine_pid)),
               Side("containerd", containerd.crictl_client, containerd.socket, theirs_pid,
                    lambda: processes_mentioning(theirs_socket, "containerd-shim"))]
    finally:
        if containerd is not None:
            containerd.crictl_client.run("rmp", "-af", check=False)
            containerd.stop()
        if crishim.running:
            crishim.crictl("rmp", "-af", check=False)
        crishim.cleanup()


def prepare(side: Side, image: str, forward_mib: int, work: Path) -> None:
    """Pull, run the pod and its two containers, wait for the server, start the port-forward."""
    side.crictl.run("pull", image)
    pod = pod_config(f"bench-{side.name}")
    pod_path = write_json(work, pod, "pod")
    side.pod = side.crictl.run("runp", str(pod_path)).stdout.strip()
    serve = (f"mkdir -p /www && busybox dd if=/dev/zero of=/www/big bs=1M count={forward_mib} 2>/dev/null && "
             f"exec busybox httpd -f -p {SERVER_PORT} -h /www")
    for name, command in (("idle", IDLE), ("server", ["sh", "-c", serve])):
        path = write_json(work, container_config(name, image, command=command), name)
        container = side.crictl.run("create", "--no-pull", side.pod, str(path), str(pod_path)).stdout.strip()
        side.crictl.run("start", container)
        setattr(side, name, container)
    side.pod_ip = str(side.crictl.json("inspectp", side.pod)["status"]["network"]["ip"])
    wait_until(lambda: connects(side.pod_ip, SERVER_PORT), timeout=60, what=f"{side.name}'s pod server")
    side.forward_port = free_port()
    side.forward = subprocess.Popen(side.crictl_argv("port-forward", side.pod, f"{side.forward_port}:{SERVER_PORT}"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: connects("127.0.0.1", side.forward_port), timeout=30, what=f"{side.name}'s port-forward")


def teardown(side: Side) -> None:
    if side.forward is not None:
        side.forward.kill()
        side.forward.wait()


def measure_all(sides: list[Side], args: argparse.Namespace) -> dict[str, object]:
    channels = {side.name: grpc.insecure_channel(f"unix://{side.socket}") for side in sides}
    try:
        stubs = {name: api_pb2_grpc.RuntimeServiceStub(channel) for name, channel in channels.items()}
        for side in sides:  # warm up: first exec, first download (page cache), first RPC on the channel
            crictl_exec(side)
            direct_exec(side, stubs[side.name])
            download(side)
        results: dict[str, object] = {
            "crictl_version_ms": compare(sides, args.versions, crictl_version, lower_is_better=True),
            "crictl_exec_ms": compare(sides, args.execs, crictl_exec, lower_is_better=True),
            "direct_exec_ms": compare(sides, args.execs, lambda s: direct_exec(s, stubs[s.name]),
                                      lower_is_better=True),
            "direct_exec_rpc_share_ms": {side.name: summary(side.rpc_ms[1:], True) for side in sides},
            "port_forward_mib_s": compare(sides, args.forwards, download, lower_is_better=False),
            "port_forward_eof_after_last_byte_ms": {side.name: summary(side.eof_ms[1:], True) for side in sides},
            "port_forward_daemon_cpu_ms_per_mib": {side.name: summary(side.cpu_ms_per_mib[1:], True)
                                                   for side in sides},
            "forward_file_mib": args.forward_mib,
        }
    finally:
        for channel in channels.values():
            channel.close()
    results["idle_exec_sessions"] = {side.name: session_memory(side, args.sessions) for side in sides}
    return results


# --- samples: each returns a value (milliseconds or MiB/s) ------------------------------------------------


def crictl_version(side: Side) -> float:
    start = time.perf_counter()
    subprocess.run(side.crictl_argv("version"), check=True, capture_output=True)
    return (time.perf_counter() - start) * 1000


def crictl_exec(side: Side) -> float:
    start = time.perf_counter()
    done = subprocess.run(side.crictl_argv("exec", side.idle, "true"), capture_output=True)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode:
        raise RuntimeError(f"{side.name}: crictl exec failed: {done.stderr.decode(errors='replace')}")
    return elapsed


def direct_exec(side: Side, stub: api_pb2_grpc.RuntimeServiceStub) -> float:
    start = time.perf_counter()
    url = stub.Exec(api_pb2.ExecRequest(container_id=side.idle, cmd=["true"], stdout=True, stderr=True),
                    timeout=30).url
    side.rpc_ms.append((time.perf_counter() - start) * 1000)
    result = exec_url(url)
    elapsed = (time.perf_counter() - start) * 1000
    if result.status.get("status") != "Success":
        raise RuntimeError(f"{side.name}: exec through {url} ended with {result.status}")
    return elapsed


def download(side: Side) -> float:
    """MiB/s of one GET of the served file through the port-forward, from connecting to the body's last byte.

    The end of the connection is timed apart (``side.eof_ms``): containerd ends a forwarded connection only
    after its 1 s linger for the other direction, which is no part of the transfer.
    """
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    cpu = cpu_seconds(side.daemon_pid) * 1000
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", side.forward_port), timeout=60) as conn:
        conn.sendall(b"GET /big HTTP/1.0\r\nHost: bench\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head and (count := conn.recv_into(view)):
            head += view[:count]
        head, _, body = head.partition(b"\r\n\r\n")
        length = content_length(head)
        received = len(body)
        while received < length and (count := conn.recv_into(view)):
            received += count
        done = time.perf_counter()
        while conn.recv_into(view):
            pass
        side.eof_ms.append((time.perf_counter() - done) * 1000)
    side.cpu_ms_per_mib.append((cpu_seconds(side.daemon_pid) * 1000 - cpu) / (received / (1 << 20)))
    if received != length:
        raise RuntimeError(f"{side.name}: the download through the port-forward got {received} of {length} bytes")
    return received / (done - start) / (1 << 20)


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise RuntimeError(f"no Content-Length in the response: {head[:200]!r}")


def compare(sides: list[Side], count: int, sample: Callable[[Side], float], *,
            lower_is_better: bool) -> dict[str, object]:
    """``count`` samples per side, alternating sides sample by sample (and which goes first)."""
    samples: dict[str, list[float]] = {side.name: [] for side in sides}
    for i in range(count):
        for side in sides if i % 2 == 0 else sides[::-1]:
            os.sync()
            samples[side.name].append(sample(side))
    mine, theirs = (summary(samples[side.name], lower_is_better) for side in sides)
    tail = "p99" if lower_is_better else "p1"
    return {"samples": count, "crishim": mine, "containerd": theirs,
            "ratio_median": round(mine["median"] / theirs["median"], 2),
            f"ratio_{tail}": round(mine[tail] / theirs[tail], 2)}


def summary(values: list[float], lower_is_better: bool) -> dict[str, float]:
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    tail = {"p99": cuts[98]} if lower_is_better else {"p1": cuts[0]}
    return {key: round(value, 1) for key, value in {
        "median": statistics.median(ordered), **tail, "p90" if lower_is_better else "p10":
        cuts[89] if lower_is_better else cuts[9], "min": ordered[0], "max": ordered[-1]}.items()}


# --- memory ----------------------------------------------------------------------------------------------


def session_memory(side: Side, sessions: int) -> dict[str, float]:
    """Resident memory before and while ``sessions`` idle execs run at once, in MiB, and per session in KiB.

    The daemon's is its resident set; the helpers' is their proportional set (PSS: the pages they share,
    such as runc's or the shim's text, divided among them), since many copies of one program run.
    """
    before_daemon, before_helpers = rss_kib([side.daemon_pid]), pss_kib(helpers(side))
    clients = [subprocess.Popen(side.crictl_argv("exec", side.idle, *SESSION_ARGV),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(sessions)]
    try:
        wait_until(lambda: running_sessions(side) >= sessions, timeout=25, interval=0.2,
                   what=f"{sessions} exec sessions in {side.name}'s container")
        time.sleep(1.0)  # let the last sessions' buffers settle before reading memory
        during_daemon, during_helpers = rss_kib([side.daemon_pid]), pss_kib(helpers(side))
    finally:
        for client in clients:
            client.wait(timeout=60)
    failed = sum(1 for client in clients if client.returncode)
    return {"sessions": sessions, "failed": failed,
            "daemon_before_mib": round(before_daemon / 1024, 1), "daemon_during_mib": round(during_daemon / 1024, 1),
            "daemon_per_session_kib": round((during_daemon - before_daemon) / sessions),
            "helpers_pss_before_mib": round(before_helpers / 1024, 1),
            "helpers_pss_during_mib": round(during_helpers / 1024, 1),
            "helpers_pss_per_session_kib": round((during_helpers - before_helpers) / sessions)}


def running_sessions(side: Side) -> int:
    """Processes running SESSION_ARGV in the idle container's pid namespace."""
    namespace = container_pid_namespace(side)
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if cmdline(int(entry.name)) == SESSION_ARGV and os.readlink(entry / "ns" / "pid") == namespace:
                count += 1
    return count


def helpers(side: Side) -> list[int]:
    """The side's helper processes, less the container's own (crishim's runc exec is the parent of those)."""
    namespace = container_pid_namespace(side)
    found = []
    for pid in side.helpers():
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/pid") != namespace:
                found.append(pid)
    return found


def container_pid_namespace(side: Side) -> str:
    pid = int(side.crictl.json("inspect", side.idle)["info"]["pid"])
    return os.readlink(f"/proc/{pid}/ns/pid")


def rss_kib(pids: list[int]) -> int:
    return sum(proc_field(f"/proc/{pid}/status", "VmRSS:") for pid in pids)


def pss_kib(pids: list[int]) -> int:
    return sum(proc_field(f"/proc/{pid}/smaps_rollup", "Pss:") for pid in pids)


def proc_field(path: str, name: str) -> int:
    """A ``NAME: VALUE kB`` line's value; 0 when the process is gone."""
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1])
    return 0


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]


def children(pid: int) -> list[int]:
    """Every descendant of pid (crishim's runc exec processes, conmons forked away excepted)."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{parent}/task").iterdir():
                kids = [int(k) for k in (task / "children").read_text().split()]
                found += kids
                queue += kids
    return found


def processes_mentioning(text: str, program: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = cmdline(int(entry.name))
                if argv and program in argv[0] and text in argv:
                    pids.append(int(entry.name))
    return pids


def connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def hold(sides: list[Side], seconds: float) -> None:
    for side in sides:
        print(f"# {side.name}: time {shlex.join(side.crictl_argv('exec', side.idle, 'true'))}", file=sys.stderr)
        print(f"# {side.name}: port-forward on 127.0.0.1:{side.forward_port}", file=sys.stderr, flush=True)
    time.sleep(seconds)


if __name__ == "__main__":
    main()
