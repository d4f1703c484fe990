"""The OCI runtime driver against real conmon and runc, on a busybox rootfs built here."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from errdefs import AlreadyExists, DataLoss, DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound
from runtime import crilog
from runtime.oci import EXEC_OUTPUT_CAP, OCIRuntime, RuncError, Status
from tests.support.tools import require_root

APPLETS = ("sh", "echo", "sleep", "cat", "id", "printf", "head", "pwd", "true")
BUSYBOX = Path("/bin/busybox")


# --- the CRI log format, no root needed ------------------------------------------------------------------

def test_parse_timestamp_keeps_nanoseconds_and_offsets() -> None:
    assert crilog.parse_timestamp("1970-01-01T00:00:01.000000002Z") == 1_000_000_002
    assert crilog.parse_timestamp("1970-01-01T01:00:01.5+01:00") == 1_500_000_000
    assert crilog.parse_timestamp("1970-01-01T00:00:00Z") == 0
    with pytest.raises(InvalidArgument):
        crilog.parse_timestamp("yesterday")


def test_parse_line() -> None:
    line = crilog.parse_line(b"2024-05-01T10:00:00.123456789+00:00 stderr P a b \n")
    assert (line.stream, line.partial, line.content) == ("stderr", True, b"a b ")
    assert crilog.parse_line(b"2024-05-01T10:00:00Z stdout F ").content == b""
    for bad in (b"", b"2024-05-01T10:00:00Z stdin F x", b"2024-05-01T10:00:00Z stdout X x", b"now stdout F x"):
        with pytest.raises(DataLoss):
            crilog.parse_line(bad)


# --- fixtures --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tools() -> tuple[str, str]:
    require_root("running containers with runc")
    found = shutil.which("conmon"), shutil.which("runc")
    if None in found:
        pytest.skip("conmon and runc are needed (Debian packages conmon, runc)")
    if not BUSYBOX.exists():
        pytest.skip(f"{BUSYBOX} is missing (Debian package busybox-static)")
    return found  # type: ignore[return-value]


@pytest.fixture(scope="module")
def rootfs(tools: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rootfs")
    root.chmod(0o755)  # mktemp makes it 0700; the exec-as-another-user test needs to enter it
    (root / "bin").mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    for folder in ("proc", "sys", "dev", "tmp"):
        (root / folder).mkdir()
    (root / "tmp").chmod(0o1777)
    return root


@pytest.fixture(scope="module")
def base_spec(tools: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("spec")
    subprocess.run([tools[1], "spec"], cwd=folder, check=True)
    spec: dict[str, Any] = json.loads((folder / "config.json").read_text())
    spec["process"]["terminal"] = False
    # Host networking: the tests need no network, and a fresh network namespace would need CNI to be useful.
    spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "network"]
    return spec


class Containers:
    """Makes bundles and remembers every id, so teardown can remove what a failing test left behind."""

    def __init__(self, runtime: OCIRuntime, rootfs: Path, spec: dict[str, Any], tmp: Path) -> None:
        self.runtime, self.rootfs, self.spec, self.tmp = runtime, rootfs, spec, tmp
        self.ids: list[str] = []

    def bundle(self, args: list[str], *, pid_namespace: bool = True) -> tuple[str, Path]:
        container_id = f"t{secrets.token_hex(6)}"
        self.ids.append(container_id)
        bundle = self.runtime.bundle_dir("k8s.io", container_id)
        bundle.mkdir(parents=True)
        spec = json.loads(json.dumps(self.spec))
        spec["process"]["args"] = args
        spec["root"] = {"path": str(self.rootfs), "readonly": True}
        if not pid_namespace:
            spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "pid"]
        (bundle / "config.json").write_text(json.dumps(spec))
        return container_id, bundle

    def log_path(self, container_id: str) -> Path:
        return self.tmp / "logs" / f"{container_id}.log"

    def create(self, args: list[str], **options: Any) -> str:
        container_id, bundle = self.bundle(args, **options)
        self.runtime.create(container_id, bundle, self.log_path(container_id))
        return container_id

    def run(self, args: list[str], **options: Any) -> str:
        container_id = self.create(args, **options)
        self.runtime.start(container_id)
        return container_id


@pytest.fixture
def runtime(tools: tuple[str, str], tmp_path: Path) -> OCIRuntime:
    return OCIRuntime(tmp_path / "state", conmon=tools[0], runc=tools[1], create_timeout=30)


@pytest.fixture
def containers(
    runtime: OCIRuntime, rootfs: Path, base_spec: dict[str, Any], tmp_path: Path
) -> Iterator[Containers]:
    made = Containers(runtime, rootfs, base_spec, tmp_path)
    yield made
    # Teardown uses runc and /proc directly, so a bug in the driver cannot leave containers running.
    for container_id in made.ids:
        subprocess.run([runtime.runc.binary, "--root", str(runtime.runc.root), "delete", "--force", container_id],
                       capture_output=True, check=False)
        for pid in conmon_pids(container_id):
            os.kill(pid, signal.SIGKILL)


def conmon_pids(container_id: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if os.path.basename(args[0]) == b"conmon" and container_id.encode() in args and state != "Z":
            found.append(int(entry.name))
    return found


def cgroup_dirs(name: str) -> list[str]:
    return [folder for folder, subfolders, _ in os.walk("/sys/fs/cgroup") if os.path.basename(folder) == name]


def cgroup_file(pid: int, controller: str, name: str) -> Path:
    """A cgroup interface file of the process, on cgroup v1 or v2."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, group = line.split(":", 2)
        if controller in controllers.split(","):
            return Path(f"/sys/fs/cgroup/{controller}{group}/{name}")
    group = next(line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())
    return Path(f"/sys/fs/cgroup{group}/{name}")


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def mounts_under(path: Path) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(path) in line]


# --- lifecycle -------------------------------------------------------------------------------------------

def test_log_is_in_cri_format(runtime: OCIRuntime, containers: Containers) -> None:
    before = time.time_ns()
    container_id = containers.run(["sh", "-c", "echo out; echo err >&2; printf abc; sleep 0.3; echo def"])
    status = runtime.wait_exit(container_id, 10)
    assert status is not None and status.exit_code == 0
    lines = crilog.read_log(containers.log_path(container_id))
    stdout = [(line.partial, line.content) for line in lines if line.stream == "stdout"]
    assert stdout == [(False, b"out"), (True, b"abc"), (False, b"def")]
    assert [(line.partial, line.content) for line in lines if line.stream == "stderr"] == [(False, b"err")]
    assert crilog.join(lines, "stdout") == b"out\nabcdef\n"
    assert all(before <= line.timestamp_ns <= time.time_ns() for line in lines)
    raw = containers.log_path(container_id).read_text().splitlines()[0].split(" ")
    assert raw[1:] == ["stdout", "F", "out"] and len(raw[0].split(".")[1]) >= 9 + 6  # nine digits, then offset


def test_exit_code_and_finish_time(runtime: OCIRuntime, containers: Containers) -> None:
    container_id = containers.create(["sh", "-c", "sleep 0.2; exit 3"])
    assert runtime.state(container_id).status == Status.CREATED
    assert runtime.exit_status(container_id) is None
    started = time.time_ns()
    runtime.start(container_id)
    status = runtime.wait_exit(container_id, 10)
    assert status is not None and status.exit_code == 3
    # The exit file's mtime has the kernel's coarse clock resolution: allow a few milliseconds.
    assert started + 150_000_000 <= status.finished_at_ns <= time.time_ns() + 10_000_000
    state = runtime.state(container_id)
    assert (state.status, state.pid) == (Status.STOPPED, 0)
    assert runtime.exit_status(container_id) == status


def test_sigterm_ignored_by_pid_one_sigkill_is_128_plus_9(runtime: OCIRuntime, containers: Containers) -> None:
    container_id = containers.run(["sleep", "1000"])
    state = runtime.state(container_id)
    assert state.status == Status.RUNNING and state.pid > 0
    assert state.bundle == runtime.bundle_dir("k8s.io", container_id)
    assert abs(state.created_ns - time.time_ns()) < 60 * 10**9
    # PID 1 of a PID namespace gets only the signals it has a handler for; sleep has none for SIGTERM.
    runtime.kill(container_id, signal.SIGTERM)
    assert runtime.wait_exit(container_id, 0.5) is None
    runtime.kill(container_id, signal.SIGKILL)
    status = runtime.wait_exit(container_id, 10)
    assert status is not None and status.exit_code == 137
    with pytest.raises(NotFound):
        runtime.kill(container_id, signal.SIGKILL)


def test_sigterm_death_is_recorded_as_143(runtime: OCIRuntime, containers: Containers) -> None:
    container_id = containers.run(["sleep", "1000"], pid_namespace=False)
    runtime.kill(container_id, signal.SIGTERM)
    status = runtime.wait_exit(container_id, 10)
    assert status is not None and status.exit_code == 128 + signal.SIGTERM


def test_delete_forgets_everything_and_is_idempotent(runtime: OCIRuntime, containers: Containers) -> None:
    container_id = containers.run(["sleep", "1000"])
    conmon_pid = runtime.conmon_pid(container_id)
    assert conmon_pid is not None and conmon_pid in conmon_pids(container_id)
    with pytest.raises(RuncError, match="not stopped"):
        runtime.delete(container_id)
    runtime.delete(container_id, force=True)
    assert conmon_pids(container_id) == []
    assert runtime.conmon_pid(container_id) is None
    assert runtime.exit_status(container_id) is None
    with pytest.raises(NotFound):
        runtime.state(container_id)
    with pytest.raises(NotFound):
        runtime.wait_exit(container_id, 1)
    runtime.delete(container_id)
    runtime.delete(container_id, force=True)
    state = runtime.state_dir
    assert not (state / "conmon" / container_id).exists() and not (state / "attach" / container_id).exists()


def test_create_twice_is_already_exists(runtime: OCIRuntime, containers: Containers) -> None:
    container_id = containers.create(["sleep", "1000"])
    bundle = runtime.bundle_dir("k8s.io", container_id)
    with pytest.raises(AlreadyExists):
        runtime.create(container_id, bundle, containers.log_path(container_id))
    assert runtime.state(container_id).status == Status.CREATED
    runtime.delete(container_id)  # runc deletes a container that never started without --force
    assert conmon_pids(container_id) == []


def test_create_failure_leaves_nothing(runtime: OCIRuntime, containers: Containers, tmp_path: Path) -> None:
    mounts = mounts_under(tmp_path)
    container_id, bundle = containers.bundle(["/no/such/binary"])
    with pytest.raises(RuncError, match="/no/such/binary") as failure:
        runtime.create(container_id, bundle, containers.log_path(container_id))
    assert "no such file or directory" in str(failure.value)
    assert conmon_pids(container_id) == []
    runc_list = subprocess.run([runtime.runc.binary, "--root", str(runtime.runc.root), "list", "-q"],
                               capture_output=True, text=True, check=True)
    assert container_id not in runc_list.stdout.split()
    assert mounts_under(tmp_path) == mounts
    assert cgroup_dirs(container_id) == []
    for leftover in ("conmon/" + container_id, "exits/" + container_id, "attach/" + container_id):
        assert not (runtime.state_dir / leftover).exists(), leftover
    # The id is free again.
    (bundle / "config.json").write_text((bundle / "config.json").read_text().replace("/no/such/binary", "true"))
    runtime.create(container_id, bundle, containers.log_path(container_id))


def test_invalid_ids_are_refused(runtime: OCIRuntime, tmp_path: Path) -> None:
    for bad in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(InvalidArgument):
            runtime.create(bad, tmp_path, tmp_path / "log")
    with pytest.raises(NotFound):
        runtime.state("nothere")
    assert runtime.exit_status("nothere") is None


# --- a daemon restart ------------------------------------------------------------------------------------

def test_containers_survive_a_new_runtime_object(
    runtime: OCIRuntime, containers: Containers, tools: tuple[str, str]
) -> None:
    running = containers.run(["sleep", "1000"])
    finished = containers.run(["sh", "-c", "exit 5"])
    assert runtime.wait_exit(finished, 10) is not None
    del runtime
    again = OCIRuntime(containers.runtime.state_dir, conmon=tools[0], runc=tools[1])
    assert again.state(running).status == Status.RUNNING
    assert again.conmon_pid(running) is not None
    exited = again.exit_status(finished)
    assert exited is not None and exited.exit_code == 5
    assert again.exec_sync(running, ["echo", "still here"], 10).stdout == b"still here\n"
    again.reopen_log(running)
    again.kill(running, signal.SIGKILL)
    status = again.wait_exit(running, 10)
    assert status is not None and status.exit_code == 137


# --- exec ------------------------------------------------------------------------------------------------

@pytest.fixture
def sleeper(containers: Containers) -> str:
    return containers.run(["sleep", "1000"])


def test_exec_sync_output_and_exit_code(runtime: OCIRuntime, sleeper: str) -> None:
    result = runtime.exec_sync(sleeper, ["echo", "hi"], 10)
    assert (result.exit_code, result.stdout, result.stderr) == (0, b"hi\n", b"")
    result = runtime.exec_sync(sleeper, ["sh", "-c", "echo oops >&2; exit 7"], 10)
    assert (result.exit_code, result.stdout, result.stderr) == (7, b"", b"oops\n")


def test_exec_sync_env_cwd_user(runtime: OCIRuntime, sleeper: str) -> None:
    result = runtime.exec_sync(sleeper, ["sh", "-c", "echo $GREETING; pwd; id -u; id -g"], 10,
                               env={"GREETING": "hello"}, cwd="/tmp", user="1000:1001")
    assert result.stdout.decode().split() == ["hello", "/tmp", "1000", "1001"]


def test_exec_sync_timeout_kills_the_process(runtime: OCIRuntime, sleeper: str) -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="timeout"):
        runtime.exec_sync(sleeper, ["sleep", "10"], 1)
    assert time.monotonic() - started < 2.5
    listing = runtime.exec_sync(sleeper, ["sh", "-c", "cat /proc/[0-9]*/cmdline"], 10).stdout
    assert b"sleep\x0010\x00" not in listing and b"sleep\x001000\x00" in listing


def test_exec_sync_does_not_wait_for_background_children(runtime: OCIRuntime, sleeper: str) -> None:
    started = time.monotonic()
    result = runtime.exec_sync(sleeper, ["sh", "-c", "sleep 30 & echo started"], 10)
    assert (result.exit_code, result.stdout) == (0, b"started\n")
    assert time.monotonic() - started < 5


def test_exec_sync_caps_output(runtime: OCIRuntime, sleeper: str) -> None:
    result = runtime.exec_sync(sleeper, ["head", "-c", str(EXEC_OUTPUT_CAP + 100_000), "/dev/zero"], 30)
    assert result.exit_code == 0 and len(result.stdout) == EXEC_OUTPUT_CAP


def test_exec_sync_failures_are_runc_errors(runtime: OCIRuntime, containers: Containers, sleeper: str) -> None:
    with pytest.raises(RuncError, match="/no/such/binary"):
        runtime.exec_sync(sleeper, ["/no/such/binary"], 10)
    with pytest.raises(NotFound):
        runtime.exec_sync("nothere", ["true"], 10)
    finished = containers.run(["true"])
    assert runtime.wait_exit(finished, 10) is not None
    with pytest.raises(RuncError, match="stopped"):
        runtime.exec_sync(finished, ["true"], 10)


# --- update and logs -------------------------------------------------------------------------------------

def test_update_sets_cgroup_limits(runtime: OCIRuntime, sleeper: str) -> None:
    runtime.update(sleeper, {"pids": {"limit": 42}})
    pids_max = cgroup_file(runtime.state(sleeper).pid, "pids", "pids.max")
    assert pids_max.read_text().strip() == "42"
    runtime.update(sleeper, '{"pids": {"limit": 43}}')
    assert pids_max.read_text().strip() == "43"


def test_reopen_log_starts_a_fresh_file(runtime: OCIRuntime, containers: Containers) -> None:
    container_id = containers.run(["sh", "-c", "while true; do echo tick; sleep 0.05; done"])
    log = containers.log_path(container_id)
    wait_for(lambda: log.exists() and log.stat().st_size > 0, "the first log lines")
    rotated = log.with_name(log.name + ".1")
    log.rename(rotated)
    runtime.reopen_log(container_id)
    wait_for(lambda: log.exists() and len(crilog.read_log(log)) >= 2, "lines in the reopened log")
    assert {line.content for line in crilog.read_log(log)} == {b"tick"}
    size = rotated.stat().st_size
    time.sleep(0.2)
    assert rotated.stat().st_size == size  # nothing more goes to the old file
    runtime.kill(container_id, signal.SIGKILL)
    assert runtime.wait_exit(container_id, 10) is not None
    # A conmon in the middle of exiting may still accept the message; either way it is refused.
    wait_for(lambda: runtime.conmon_pid(container_id) is None, "conmon to exit")
    with pytest.raises(FailedPrecondition, match="conmon"):
        runtime.reopen_log(container_id)


def test_terminal_output_reaches_the_log(runtime: OCIRuntime, containers: Containers) -> None:
    container_id, bundle = containers.bundle(["sh", "-c", "tty; echo hi"])
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = True
    (bundle / "config.json").write_text(json.dumps(spec))
    runtime.create(container_id, bundle, containers.log_path(container_id), tty=True)
    runtime.start(container_id)
    status = runtime.wait_exit(container_id, 10)
    assert status is not None and status.exit_code == 0
    # A terminal has one stream, logged as stdout, with the terminal's CR LF line ends.
    lines = crilog.read_log(containers.log_path(container_id))
    assert [(line.stream, line.content) for line in lines] == [("stdout", b"/dev/pts/0\r"), ("stdout", b"hi\r")]


def test_a_container_whose_conmon_died(runtime: OCIRuntime, containers: Containers) -> None:
    container_id = containers.run(["sleep", "1000"])
    conmon_pid = runtime.conmon_pid(container_id)
    assert conmon_pid is not None
    os.kill(conmon_pid, signal.SIGKILL)
    wait_for(lambda: runtime.conmon_pid(container_id) is None, "conmon to die")
    assert runtime.state(container_id).status == Status.RUNNING
    with pytest.raises(FailedPrecondition, match="no conmon"):
        runtime.wait_exit(container_id, 1)
    runtime.delete(container_id, force=True)
    with pytest.raises(NotFound):
        runtime.state(container_id)
