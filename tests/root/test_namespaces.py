"""Pod namespaces pinned to files, checked with util-linux and /proc rather than with the module's own code."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from errdefs import AlreadyExists, InvalidArgument
from runtime import namespaces
from runtime.namespaces import PodNamespaces
from tests.support.tools import binary, require_file, require_root


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    require_root("creating namespaces")
    for tool in ("unshare", "nsenter", "ip", "hostname"):
        binary(tool)
    state_dir = tmp_path / "state"
    yield state_dir
    for pod_id in namespaces.list_pinned(state_dir):
        namespaces.unpin(state_dir, pod_id)
    namespaces.release_dirs(state_dir)
    assert not _mounts_under(tmp_path), "mounts left behind"


def _pod_id() -> str:
    return secrets.token_hex(32)


def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount of this mount namespace."""
    entries = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, after = line.split(" - ", 1)
        entries.append((before.split()[4].replace("\\040", " "), after.split()[0]))
    return entries


def _mounts_under(folder: Path) -> list[str]:
    prefix = os.path.realpath(folder) + "/"
    return [point for point, _ in _mountinfo() if point.startswith(prefix)]


def _fstype(path: Path) -> str | None:
    found = [fstype for point, fstype in _mountinfo() if point == os.path.realpath(path)]
    return found[-1] if found else None


def _nsenter(ns: Path, kind: str, *command: str) -> str:
    return subprocess.run(["nsenter", f"--{kind}={ns}", "--", *command], check=True, capture_output=True,
                          text=True).stdout


def test_pin_creates_new_namespaces_on_nsfs_mounts(state: Path) -> None:
    pod_id = _pod_id()
    pinned = namespaces.pin(state, pod_id, {"net", "ipc", "uts"}, hostname="web-0")
    assert pinned == PodNamespaces(state / "netns" / pod_id, state / "ipcns" / pod_id, state / "utsns" / pod_id)
    for kind, path in (("net", pinned.net), ("ipc", pinned.ipc), ("uts", pinned.uts)):
        assert path is not None and path.is_file()
        assert _fstype(path) == "nsfs"
        assert path.stat().st_ino != os.stat(f"/proc/self/ns/{kind}").st_ino, f"{kind} is the host's namespace"
    assert pinned.net is not None and pinned.uts is not None
    links = _nsenter(pinned.net, "net", "ip", "-o", "link", "show")
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    assert "UP" in _nsenter(pinned.net, "net", "ip", "-o", "link", "show", "lo").split(">")[0]
    assert _nsenter(pinned.uts, "uts", "hostname").strip() == "web-0"
    assert socket.gethostname() != "web-0"


def test_pin_folders_are_private_mounts(state: Path) -> None:
    namespaces.pin(state, _pod_id(), {"net"})
    folder = os.path.realpath(state / "netns")
    lines = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if line.split()[4] == folder]
    assert lines, "the pin folder is not a mount point"
    assert "shared:" not in lines[-1].split(" - ")[0]


def test_only_the_asked_kinds_are_pinned(state: Path) -> None:
    pod_id = _pod_id()
    pinned = namespaces.pin(state, pod_id, {"ipc"})
    assert pinned.net is None and pinned.uts is None and pinned.pid_holder is None
    assert not (state / "netns" / pod_id).exists()
    assert namespaces.load(state, pod_id) == pinned


def test_unpin_removes_and_is_idempotent(state: Path) -> None:
    pod_id = _pod_id()
    pinned = namespaces.pin(state, pod_id, {"net", "ipc", "uts"}, hostname="a")
    namespaces.unpin(state, pod_id)
    for path in (pinned.net, pinned.ipc, pinned.uts):
        assert path is not None and not path.exists()
    assert not [p for p in _mounts_under(state) if pod_id in p]
    namespaces.unpin(state, pod_id)
    assert namespaces.load(state, pod_id) == PodNamespaces()
    assert pod_id not in namespaces.list_pinned(state)


def test_load_finds_pins_again(state: Path) -> None:
    pod_id, other = _pod_id(), _pod_id()
    pinned = namespaces.pin(state, pod_id, {"net", "uts"}, hostname="b")
    namespaces.pin(state, other, {"net"})
    assert namespaces.load(state, pod_id) == pinned
    assert namespaces.list_pinned(state) == {pod_id, other}


def test_pinning_a_pinned_pod_fails_and_keeps_it(state: Path) -> None:
    pod_id = _pod_id()
    pinned = namespaces.pin(state, pod_id, {"net"})
    inode = pinned.net.stat().st_ino if pinned.net else 0
    with pytest.raises(AlreadyExists):
        namespaces.pin(state, pod_id, {"net"})
    assert pinned.net is not None and _fstype(pinned.net) == "nsfs" and pinned.net.stat().st_ino == inode


def test_bad_input_is_rejected_before_anything_is_made(state: Path) -> None:
    with pytest.raises(InvalidArgument):
        namespaces.pin(state, "../escape", {"net"})
    with pytest.raises(InvalidArgument):
        namespaces.pin(state, _pod_id(), {"mnt"})
    with pytest.raises(InvalidArgument):
        namespaces.pin(state, _pod_id(), {"uts"}, hostname="no spaces allowed")
    assert namespaces.list_pinned(state) == set()


def test_failure_half_way_leaves_nothing(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(netns: Path) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(namespaces, "_loopback_up", broken)
    pod_id = _pod_id()
    with pytest.raises(RuntimeError, match="injected"):
        namespaces.pin(state, pod_id, {"net", "ipc", "uts"}, hostname="c")
    assert not any((state / d / pod_id).exists() for d in ("netns", "ipcns", "utsns"))
    assert not [p for p in _mounts_under(state) if pod_id in p]


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _gone(pid: int) -> bool:
    # Without a reaping init (some sandboxes) a killed holder stays a zombie; that still frees its namespace.
    try:
        return _status(pid)["State"].startswith(("Z", "X"))
    except FileNotFoundError:
        return True


def test_pid_holder_is_init_of_a_new_pid_namespace_inside_the_pod(state: Path) -> None:
    require_file(Path("/usr/bin/catatonit"), "catatonit")
    pod_id = _pod_id()
    pinned = namespaces.pin(state, pod_id, {"net", "ipc", "uts", "pid"}, hostname="d")
    pid = pinned.pid_holder
    assert pid is not None and pinned.pid == Path(f"/proc/{pid}/ns/pid")
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"/usr/bin/catatonit", b"-P"]
    assert _status(pid)["NSpid"].split() == [str(pid), "1"], "not pid 1 of a new PID namespace"
    assert os.stat(f"/proc/{pid}/ns/pid").st_ino != os.stat("/proc/self/ns/pid").st_ino
    for kind, path in (("net", pinned.net), ("ipc", pinned.ipc), ("uts", pinned.uts)):
        assert path is not None and os.stat(f"/proc/{pid}/ns/{kind}").st_ino == path.stat().st_ino
    # Detached: its own session, so a signal to the daemon's process group does not reach it.
    assert os.getsid(pid) != os.getsid(0)
    assert namespaces.load(state, pod_id) == pinned

    namespaces.unpin(state, pod_id)
    assert _gone(pid)
    assert namespaces.load(state, pod_id) == PodNamespaces()
    namespaces.stop_pid_holder(state, pod_id)


def test_pid_holder_can_be_stopped_on_its_own(state: Path) -> None:
    require_file(Path("/usr/bin/catatonit"), "catatonit")
    pod_id = _pod_id()
    pinned = namespaces.start_pid_holder(state, pod_id, namespaces.pin(state, pod_id, {"net"}))
    assert pinned.pid_holder is not None
    with pytest.raises(AlreadyExists):
        namespaces.start_pid_holder(state, pod_id, pinned)
    namespaces.stop_pid_holder(state, pod_id)
    assert _gone(pinned.pid_holder)
    assert namespaces.load(state, pod_id) == PodNamespaces(net=pinned.net)
