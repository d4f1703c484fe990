"""A pod's namespaces, created without a pause container and pinned to files.

Layout under the state dir (tmpfs, so pins vanish with the namespaces at reboot)::

    <state>/netns/<pod id>    bind mount of the pod's network namespace
    <state>/ipcns/<pod id>    bind mount of its IPC namespace
    <state>/utsns/<pod id>    bind mount of its UTS namespace (the pod's hostname lives here)
    <state>/userns/<pod id>   bind mount of its user namespace, for a pod with one (``hostUsers: false``)
    <state>/pidns/<pod id>    JSON record of the process holding the pod's shared PID namespace

A bind mount of ``/proc/<pid>/ns/<kind>`` keeps a namespace alive with no process in it, and runc joins it
by path. Each pin folder is a private bind mount of itself, as containerd and CRI-O do it: a pin made under
a shared mount would propagate into other mount namespaces, where a copy keeps the namespace alive after
``unpin`` has unmounted ours.

A pod with a user namespace has it made first, and its other namespaces made inside it so that they belong
to it: runc joins the user namespace first, and the container's root may then mount /proc, sysfs and mqueue
for namespaces its user namespace owns.

A PID namespace cannot be pinned that way: once its init exits no process can enter it. Pods that share one
PID namespace get a ``catatonit -P`` as that init, started detached so it outlives the daemon; it joins the
pod's other namespaces, as a pause container would.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from errdefs import AlreadyExists, DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable

__all__ = [
    "KINDS",
    "PodNamespaces",
    "list_pinned",
    "load",
    "pin",
    "release_dirs",
    "start_pid_holder",
    "stop_pid_holder",
    "unpin",
]

KINDS = frozenset({"net", "ipc", "uts", "user"})
_DIRS = {"net": "netns", "ipc": "ipcns", "uts": "utsns", "user": "userns"}
_HOLDER_DIR = "pidns"
_LOCK_FILE = ".namespaces.lock"
_CATATONIT = "/usr/bin/catatonit"
_TIMEOUT = 30.0
_POD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# sethostname(2) takes up to 64 bytes; the characters of DNS names (plus "_", seen in node names) are enough.
_HOSTNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
# Every nsfs file shares one device number, so comparing with a known nsfs file tells whether a pin is mounted.
_NSFS_REFERENCE = "/proc/self/ns/net"

# Runs in a fresh interpreter (so forking is safe whatever threads the daemon has): the first child forked
# after unshare(CLONE_NEWPID) becomes init of the new namespace. A close-on-exec pipe tells the parent
# whether exec succeeded; the parent prints the child's pid and exits, orphaning the holder on purpose.
_HOLDER_SCRIPT = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
userns = sys.argv.pop(1)
if userns:
    # Joined here, by the running interpreter, which a pod's root might not be allowed to execute.
    fd = os.open(userns, os.O_RDONLY)
    if libc.setns(fd, 0x10000000) != 0:
        sys.exit("setns(CLONE_NEWUSER): " + os.strerror(ctypes.get_errno()))
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
if libc.unshare(0x20000000) != 0:
    sys.exit("unshare(CLONE_NEWPID): " + os.strerror(ctypes.get_errno()))
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    try:
        os.execv(sys.argv[1], sys.argv[1:])
    except OSError as e:
        os.write(w, str(e).encode())
    os._exit(127)
os.close(w)
err = os.read(r, 4096)
if err:
    sys.exit("exec " + sys.argv[1] + ": " + err.decode())
print(pid, flush=True)
"""

# Also in a fresh interpreter: a child makes the user namespace, waits for its id maps, then makes the
# pod's other namespaces inside it; the parent, still in the host's namespaces, writes the maps and pins
# every namespace of the child before letting it exit.
_USERNS_SCRIPT = r"""
import ctypes, json, os, sys
spec = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
flags = {"net": 0x40000000, "ipc": 0x08000000, "uts": 0x04000000}
to_child_r, to_child_w = os.pipe()
to_parent_r, to_parent_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(to_child_w)
    os.close(to_parent_r)
    def fail(what):
        os.write(to_parent_w, ("E" + what + ": " + os.strerror(ctypes.get_errno())).encode())
        os._exit(1)
    if libc.unshare(0x10000000) != 0:
        fail("unshare(CLONE_NEWUSER)")
    os.write(to_parent_w, b"u")
    if os.read(to_child_r, 1) != b"m":
        os._exit(1)
    wanted = sum(flags[k] for k in spec["pins"] if k in flags)
    if wanted and libc.unshare(wanted) != 0:
        fail("unshare")
    name = spec["hostname"].encode()
    if name and libc.sethostname(name, len(name)) != 0:
        fail("sethostname")
    os.write(to_parent_w, b"n")
    os.read(to_child_r, 1)
    os._exit(0)
os.close(to_child_r)
os.close(to_parent_w)
def answer():
    got = os.read(to_parent_r, 4096)
    if not got or got.startswith(b"E"):
        sys.exit(got[1:].decode() or "the namespace child exited")
    return got
answer()
for name in ("uid_map", "gid_map"):
    with open("/proc/%d/%s" % (pid, name), "w") as f:
        f.write(spec[name])
os.write(to_child_w, b"m")
answer()
for kind, path in spec["pins"].items():
    source = ("/proc/%d/ns/" % pid + kind).encode()
    if libc.mount(source, path.encode(), None, 4096, None) != 0:
        sys.exit("pin " + kind + ": " + os.strerror(ctypes.get_errno()))
os.close(to_child_w)
os.waitpid(pid, 0)
"""


@dataclass(frozen=True, slots=True)
class PodNamespaces:
    """Where a pod's namespaces are; ``None`` for a kind the pod shares with the host (or has none of)."""

    net: Path | None = None
    ipc: Path | None = None
    uts: Path | None = None
    pid_holder: int | None = None
    user: Path | None = None

    @property
    def pid(self) -> Path | None:
        """The shared PID namespace, valid while the holder runs."""
        return None if self.pid_holder is None else Path(f"/proc/{self.pid_holder}/ns/pid")

    def path(self, kind: str) -> Path | None:
        if kind == "pid":
            return self.pid
        if kind not in KINDS:
            raise InvalidArgument(f"unknown namespace kind {kind!r}")
        value: Path | None = getattr(self, kind)
        return value


@dataclass(frozen=True, slots=True)
class _Holder:
    pid: int
    start_time: int


def pin(state_dir: Path, pod_id: str, kinds: set[str], *, hostname: str | None = None,
        id_maps: tuple[str, str] | None = None) -> PodNamespaces:
    """Create new namespaces of ``kinds`` (from net, ipc, uts, user; plus ``pid`` for a PID-namespace holder).

    The new UTS namespace gets ``hostname``; the new network namespace has its loopback up; a new user
    namespace gets ``id_maps`` (uid_map and gid_map text) and owns the others. On failure nothing of this
    pod is left behind. A pod already pinned raises AlreadyExists.
    """
    _check_pod_id(pod_id)
    _check_kinds(kinds)
    if hostname is not None and not _HOSTNAME.fullmatch(hostname):
        raise InvalidArgument(f"invalid pod hostname {hostname!r}")
    wanted = sorted(kinds & KINDS)
    files = _prepare_files(state_dir, pod_id, wanted)
    try:
        if "user" in files:
            _create_in_user_namespace(files, hostname if "uts" in files else None, id_maps or ("", ""))
        else:
            _create(files, hostname if "uts" in files else None)
        if "net" in files:
            _loopback_up(files["net"])
        namespaces = PodNamespaces(files.get("net"), files.get("ipc"), files.get("uts"), user=files.get("user"))
        if "pid" in kinds:
            namespaces = start_pid_holder(state_dir, pod_id, namespaces)
        return namespaces
    except BaseException as e:
        try:
            unpin(state_dir, pod_id)
        except Exception as cleanup:
            e.add_note(f"removing the half-made namespaces of pod {pod_id} failed too: {cleanup}")
        raise


def unpin(state_dir: Path, pod_id: str) -> None:
    """Stop the PID holder and unmount and remove every pin of the pod; already gone is success."""
    _check_pod_id(pod_id)
    stop_pid_holder(state_dir, pod_id)
    for kind in sorted(KINDS):
        _unpin_file(state_dir / _DIRS[kind] / pod_id)


def load(state_dir: Path, pod_id: str) -> PodNamespaces:
    """Find a pod's namespaces again (after a daemon restart); kinds not pinned, or a dead holder, are None."""
    _check_pod_id(pod_id)
    pinned = {kind: path for kind in KINDS if _is_nsfs(path := state_dir / _DIRS[kind] / pod_id)}
    holder = _read_holder(state_dir, pod_id)
    pid = holder.pid if holder is not None and _holder_alive(holder) else None
    return PodNamespaces(pinned.get("net"), pinned.get("ipc"), pinned.get("uts"), pid, pinned.get("user"))


def list_pinned(state_dir: Path) -> set[str]:
    """Pod ids with anything pinned or recorded, so a restarted daemon can find pins no pod owns any more."""
    ids: set[str] = set()
    for name in [*_DIRS.values(), _HOLDER_DIR]:
        folder = state_dir / name
        if folder.is_dir():
            ids.update(p.name for p in folder.iterdir() if _POD_ID.fullmatch(p.name) and not p.name.startswith("."))
    return ids


def release_dirs(state_dir: Path) -> None:
    """Unmount the private pin folders that hold no pin any more (uninstall, tests)."""
    with _locked(state_dir):
        for name in _DIRS.values():
            folder = state_dir / name
            if folder.is_dir() and not any(folder.iterdir()):
                while _is_mount_point(folder):
                    _umount(folder)


def start_pid_holder(state_dir: Path, pod_id: str, namespaces: PodNamespaces) -> PodNamespaces:
    """Start the init of a new PID namespace inside the pod's other namespaces; returns them with its pid."""
    _check_pod_id(pod_id)
    if (holder := _read_holder(state_dir, pod_id)) is not None and _holder_alive(holder):
        raise AlreadyExists(f"pod {pod_id} already has a PID namespace holder (pid {holder.pid})")
    if not os.access(_CATATONIT, os.X_OK):
        raise FailedPrecondition(f"{_CATATONIT} is missing (Debian package catatonit)")
    joins = [f"--{kind}={path}" for kind in sorted(KINDS - {"user"}) if (path := namespaces.path(kind)) is not None]
    prefix = [_tool("nsenter"), *joins, "--"] if joins else []
    userns = str(namespaces.user or "")
    out = _run([*prefix, sys.executable, "-I", "-c", _HOLDER_SCRIPT, userns, _CATATONIT, "-P"], "start PID holder",
               new_session=True)
    try:
        pid = int(out.strip())
    except ValueError as e:
        raise Unavailable(f"start PID holder of pod {pod_id}: unexpected output {out!r}") from e
    start_time = _start_time(pid)
    if start_time is None:
        raise Unavailable(f"PID holder {pid} of pod {pod_id} exited at once")
    _write_holder(state_dir, pod_id, _Holder(pid, start_time))
    return PodNamespaces(namespaces.net, namespaces.ipc, namespaces.uts, pid, namespaces.user)


def stop_pid_holder(state_dir: Path, pod_id: str, timeout: float = 5.0) -> None:
    """Kill the holder (and with it every process left in its PID namespace); already gone is success."""
    record = state_dir / _HOLDER_DIR / pod_id
    holder = _read_holder(state_dir, pod_id)
    if holder is not None and _holder_alive(holder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder.pid, signal.SIGKILL)
        _wait_gone(holder, timeout)
    record.unlink(missing_ok=True)


def _check_pod_id(pod_id: str) -> None:
    # The id becomes a file name: no separators, no dot-files, no traversal.
    if not _POD_ID.fullmatch(pod_id):
        raise InvalidArgument(f"invalid pod id {pod_id!r}")


def _check_kinds(kinds: set[str]) -> None:
    unknown = kinds - KINDS - {"pid"}
    if unknown:
        raise InvalidArgument(f"unknown namespace kinds {sorted(unknown)}")


def _prepare_files(state_dir: Path, pod_id: str, kinds: Sequence[str]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    with _locked(state_dir):
        for kind in kinds:
            folder = state_dir / _DIRS[kind]
            _ensure_private_dir(folder)
            files[kind] = folder / pod_id
        taken = [str(f) for f in files.values() if _is_nsfs(f)]
        if taken:
            raise AlreadyExists(f"pod {pod_id} already has pinned namespaces: {', '.join(taken)}")
        # unshare(1) bind-mounts onto the file, so it must exist; a leftover from a crash is simply reused.
        for f in files.values():
            f.touch()
    return files


def _create(files: dict[str, Path], hostname: str | None) -> None:
    flags = [f"--{kind}={path}" for kind, path in sorted(files.items())]
    command = [_tool("hostname"), hostname] if hostname is not None else [_tool("true")]
    if flags:
        _run([_tool("unshare"), *flags, "--", *command], "create namespaces")


def _create_in_user_namespace(files: dict[str, Path], hostname: str | None, id_maps: tuple[str, str]) -> None:
    spec = {"uid_map": id_maps[0], "gid_map": id_maps[1], "hostname": hostname or "",
            "pins": {kind: str(path) for kind, path in files.items()}}
    _run([sys.executable, "-I", "-c", _USERNS_SCRIPT, json.dumps(spec)], "create namespaces")


def _loopback_up(netns: Path) -> None:
    # Containers expect a working 127.0.0.1 whatever the CNI config holds.
    _run([_tool("nsenter"), f"--net={netns}", "--", _tool("ip"), "link", "set", "lo", "up"], "bring up lo")


def _unpin_file(path: Path) -> None:
    while _is_nsfs(path):
        _umount(path)
    path.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    # flock on a fresh open file excludes other threads of this process as well as other processes.
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / _LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _ensure_private_dir(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    entry = _mount_entry(folder)
    if entry is None:
        _run([_tool("mount"), "--bind", str(folder), str(folder)], f"bind {folder} onto itself")
        entry = _mount_entry(folder)
    if entry is None or "shared:" in entry or "master:" in entry:
        _run([_tool("mount"), "--make-private", str(folder)], f"make {folder} private")


def _mount_entry(folder: Path) -> str | None:
    """The propagation fields of the topmost mount at ``folder``, or None when it is not a mount point."""
    target = os.path.realpath(folder)
    found: str | None = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ", 1)[0].split(" ")
        if len(fields) >= 6 and _unescape(fields[4]) == target:
            found = " ".join(fields[6:])  # later lines are mounted on top of earlier ones
    return found


def _is_mount_point(folder: Path) -> bool:
    return _mount_entry(folder) is not None


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _is_nsfs(path: Path) -> bool:
    try:
        return path.stat().st_dev == os.stat(_NSFS_REFERENCE).st_dev
    except FileNotFoundError:
        return False


def _umount(path: Path) -> None:
    result = subprocess.run([_tool("umount"), str(path)], capture_output=True, text=True, timeout=_TIMEOUT)
    if result.returncode != 0 and "not mounted" not in result.stderr:
        raise Unavailable(f"umount {path}: {result.stderr.strip()}")


def _read_holder(state_dir: Path, pod_id: str) -> _Holder | None:
    try:
        data = json.loads((state_dir / _HOLDER_DIR / pod_id).read_text())
        return _Holder(int(data["pid"]), int(data["start_time"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # A torn record (crash while writing) cannot name a process safely; treat it as no holder.
        return None


def _write_holder(state_dir: Path, pod_id: str, holder: _Holder) -> None:
    folder = state_dir / _HOLDER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{pod_id}.tmp"
    tmp.write_text(json.dumps({"pid": holder.pid, "start_time": holder.start_time}))
    os.replace(tmp, folder / pod_id)


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of stat); None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses; the fields after its last ')' start at field 3.
    rest = stat.rsplit(")", 1)[1].split()
    return None if rest[0] in ("Z", "X") else int(rest[19])


def _holder_alive(holder: _Holder) -> bool:
    # The start time guards against a recycled pid after a reboot-less daemon restart.
    return _start_time(holder.pid) == holder.start_time


def _wait_gone(holder: _Holder, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _holder_alive(holder):
        _reap(holder.pid)
        if time.monotonic() > deadline:
            raise Unavailable(f"PID holder {holder.pid} did not exit within {timeout}s of SIGKILL")
        time.sleep(0.01)
    _reap(holder.pid)


def _reap(pid: int) -> None:
    # The holder is our child only when this process is a subreaper; otherwise init reaps it.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FailedPrecondition(f"{name} is not installed (util-linux, iproute2 and hostname are needed for pods)")
    return path


def _run(args: list[str], what: str, *, new_session: bool = False) -> str:
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=_TIMEOUT, stdin=subprocess.DEVNULL,
                                start_new_session=new_session)
    except subprocess.TimeoutExpired as e:
        raise DeadlineExceeded(f"{what}: {args[0]} did not finish within {_TIMEOUT}s") from e
    if result.returncode != 0:
        raise FailedPrecondition(f"{what}: {result.stderr.strip() or f'exit status {result.returncode}'}")
    return result.stdout
