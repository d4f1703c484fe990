"""conmon (2.1.6): its command line, the sync pipe it answers on, its exit files and its control fifo.

Facts this module relies on, read from conmon's source and checked against the Debian binary:

- Without ``--sync`` conmon forks: the first process writes ``--conmon-pidfile`` and exits 0, the second
  detaches (``setsid``, stdio to /dev/null), becomes a subreaper and runs ``runc create``.
- ``_OCI_SYNCPIPE=<fd>`` names an inherited pipe. With ``--api-version 1`` conmon writes one JSON line there:
  ``{"data": <container pid>}`` once ``runc create`` succeeded, or ``{"data": -1, "message": "<runc's stderr>"}``
  when it failed (nothing at all when runc failed silently; conmon then just exits).
- When the container's init exits conmon writes ``<exit dir>/<container id>``: the exit code in decimal,
  no newline, ``128 + signal`` for a death by signal, ``-1`` if it cannot tell. The file is written to a
  temporary name and renamed, so a reader never sees half of it; its mtime is the exit time (at the kernel's
  coarse file-time resolution, a few milliseconds).
- When the kernel's OOM killer acts in the container's memory cgroup, conmon creates an empty file named
  ``oom`` in its working directory (and ``<persist dir>/oom`` with ``--persist-dir``); it never changes
  directory, so it is started in the bundle and the marker is ``<bundle>/oom``.
- With ``--exec --sync`` it stays in the foreground and runs ``runc exec --detach``; as a subreaper it inherits
  the exec'd process and reports ``{"data": <pid>}`` then ``{"data": <exit code>}``. With ``-l passthrough``
  the process gets conmon's own stdout and stderr, and conmon drops its copies right after starting runc.
  A failed ``runc exec`` leaves no message in passthrough mode: runc's ``--log`` file has the error.
- conmon makes two fifos in the bundle, ``ctl`` and ``winsz``, and its attach socket ``<bundle>/attach``,
  reached through the symlink ``<socket dir>/<container uuid>`` -> bundle (unix socket paths are short).
  A line ``"2 0 0\\n"`` on ``ctl`` makes it reopen the log: it writes ``<log>.tmp`` and renames it over the
  log path, so output after that goes to a fresh file. ``"1 <rows> <cols>\\n"`` resizes a terminal. conmon
  processes only the first message of each read, so messages must be written one at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from errdefs import DataLoss, DeadlineExceeded, FailedPrecondition, Unavailable
from runtime.runc import child_env

__all__ = [
    "ConmonArgs",
    "ConmonExecArgs",
    "SyncReply",
    "is_conmon_of",
    "read_exit_file",
    "read_replies",
    "spawn",
    "spawn_exec",
    "stop",
    "write_ctl",
]

REOPEN_LOG = 2



@dataclass(frozen=True, slots=True)
class ConmonArgs:
    conmon: str
    runtime: str  # an absolute path: conmon execv()s it without a PATH search
    runtime_args: tuple[str, ...]  # global runc flags, placed before "create"
    container_id: str
    bundle: Path
    container_pidfile: Path
    conmon_pidfile: Path
    log_path: Path
    exit_dir: Path
    socket_dir: Path
    log_level: str = "info"
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False

    def argv(self) -> list[str]:
        cid = self.container_id
        argv = [
            self.conmon, "--api-version", "1", "-c", cid, "-u", cid, "-n", cid,
            "-r", self.runtime, "-b", str(self.bundle),
            "-p", str(self.container_pidfile), "--conmon-pidfile", str(self.conmon_pidfile),
            "-l", f"k8s-file:{self.log_path}", "--exit-dir", str(self.exit_dir),
            "--socket-dir-path", str(self.socket_dir), "--syslog=false", "--log-level", self.log_level,
        ]
        for arg in self.runtime_args:
            argv += ["--runtime-arg", arg]
        if self.tty:
            argv.append("--terminal")
        if self.stdin:
            argv.append("--stdin")
            # kubelet's StdinOnce: close the container's stdin when the first attached client leaves.
            if not self.stdin_once:
                argv.append("--leave-stdin-open")
        return argv


@dataclass(frozen=True, slots=True)
class ConmonExecArgs:
    """conmon as CRI-O runs it for an exec: in the foreground (``--sync``), a subreaper that learns the
    process's exit code, with ``runc exec --detach``. Passthrough logging hands the caller's pipes straight
    to the process, so output is read by the caller and no process of conmon's or runc's waits on it."""

    conmon: str
    runtime: str
    runtime_args: tuple[str, ...]
    container_id: str
    exec_id: str
    process_spec: Path
    pidfile: Path

    def argv(self) -> list[str]:
        argv = [
            self.conmon, "--api-version", "1", "-c", self.container_id, "-u", self.exec_id,
            "-r", self.runtime, "-p", str(self.pidfile),
            "--exec", "--exec-process-spec", str(self.process_spec), "-l", "passthrough", "--sync",
            # conmon shares the process's stderr until it has started runc; its messages must stay out of it.
            "--syslog=false", "--log-level", "error",
        ]
        for arg in self.runtime_args:
            argv += ["--runtime-arg", arg]
        return argv


@dataclass(frozen=True, slots=True)
class SyncReply:
    """conmon's answer on the sync pipe: the container pid, or -1 and runc's error."""

    data: int
    message: str = ""


def spawn(args: ConmonArgs, timeout: float) -> SyncReply | None:
    """Start conmon and wait for its answer; None when it exited without one.

    Raises Unavailable when conmon itself fails to start, DeadlineExceeded when it gives no answer in time.
    The caller cleans up (conmon, runc state, files) whatever happens.
    """
    deadline = time.monotonic() + timeout
    # conmon 2.1.6 creates its OOM marker as "oom" in its working directory: make that the bundle.
    proc, read_end = _start(args.argv(), stdout=subprocess.DEVNULL, cwd=args.bundle)
    try:
        _wait_first_process(proc, args, deadline)
        return _read_reply(read_end, deadline)
    finally:
        os.close(read_end)


def spawn_exec(args: ConmonExecArgs) -> tuple[subprocess.Popen[bytes], int]:
    """Start conmon for one exec; the caller reads its stdout and stderr pipes (the process's own, passed
    through), waits for it, then reads the returned sync pipe with ``read_replies``."""
    return _start(args.argv(), stdout=subprocess.PIPE, cwd=args.process_spec.parent)


def _start(argv: list[str], *, stdout: int, cwd: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Popen conmon with a sync pipe; returns the process and the pipe's read end."""
    env = child_env()
    read_end, write_end = os.pipe()
    env["_OCI_SYNCPIPE"] = str(write_end)  # pass_fds keeps the number the same in the child
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, cwd=cwd,
                                pass_fds=(write_end,), env=env, start_new_session=True)
    except OSError as exc:
        os.close(read_end)
        raise Unavailable(f"cannot run conmon ({argv[0]}): {exc}") from exc
    finally:
        # Our copy of the write end must go, or EOF never comes when conmon dies without answering.
        os.close(write_end)
    return proc, read_end


def _wait_first_process(proc: subprocess.Popen[bytes], args: ConmonArgs, deadline: float) -> None:
    # The first process only forks and writes the pidfile; a non-zero exit means a bad option or path, which
    # conmon explains on stderr before it detaches.
    try:
        _, stderr = proc.communicate(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.wait()
        raise DeadlineExceeded(f"conmon for {args.container_id} did not detach in time") from exc
    if proc.returncode != 0:
        text = stderr.decode(errors="replace").strip()
        raise Unavailable(f"conmon for {args.container_id} failed (exit {proc.returncode}): {text}")


def _read_reply(fd: int, deadline: float) -> SyncReply | None:
    # poll, not select: a daemon watching a thousand containers holds a pidfd for each, so this pipe's number
    # is past the 1024 that select() can wait on.
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise DeadlineExceeded("conmon did not report the container's pid in time")
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    line = data.split(b"\n", 1)[0].strip()
    return _parse_reply(line) if line else None


def read_replies(fd: int) -> list[SyncReply]:
    """Every message conmon left on the sync pipe; call once conmon has exited, so the read ends."""
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return [_parse_reply(line) for line in data.splitlines() if line.strip()]


def _parse_reply(line: bytes) -> SyncReply:
    try:
        document = json.loads(line)
        return SyncReply(int(document["data"]), str(document.get("message", "")))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataLoss(f"unexpected message from conmon: {line[:500]!r}") from exc


def is_conmon_of(pid: int, container_id: str) -> bool:
    """Whether pid is a live (not zombie) conmon supervising container_id; guards against recycled pids."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The command name may hold spaces and parentheses; the state is the first field after its last ')'.
    # An exiting process has an empty cmdline (its memory is gone) before it closes its files: it counts
    # as gone, as it will act on nothing more.
    if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
        return False
    wanted = [b"-c", container_id.encode()]
    pairs = zip(cmdline, cmdline[1:], strict=False)
    return os.path.basename(cmdline[0]) == b"conmon" and any(list(pair) == wanted for pair in pairs)


def stop(pid: int, container_id: str, grace: float) -> None:
    """Wait up to grace seconds for conmon to exit by itself, then SIGKILL it and wait for it to be gone."""
    deadline = time.monotonic() + grace
    while is_conmon_of(pid, container_id) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.01)
    if is_conmon_of(pid, container_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while is_conmon_of(pid, container_id):
        _reap(pid)
        if time.monotonic() > deadline:
            raise Unavailable(f"conmon {pid} for {container_id} survived SIGKILL")
        time.sleep(0.01)
    _reap(pid)


def _reap(pid: int) -> None:
    # conmon is our child only when this process is a subreaper; otherwise init reaps it.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def read_exit_file(path: Path) -> tuple[int, int] | None:
    """(exit code, exit time in ns since the epoch) from conmon's exit file, or None before it exists."""
    try:
        with path.open("rb") as file:
            text = file.read()
            mtime_ns = os.fstat(file.fileno()).st_mtime_ns
    except FileNotFoundError:
        return None
    try:
        return int(text.strip()), mtime_ns
    except ValueError as exc:
        raise DataLoss(f"conmon's exit file {path} holds {text[:100]!r}, not an exit code") from exc


def write_ctl(bundle: Path, message_type: int, first: int = 0, second: int = 0) -> None:
    """One message on conmon's control fifo; FailedPrecondition when no conmon is reading it."""
    try:
        # Non-blocking: with no reader the open fails at once (ENXIO) instead of hanging.
        fd = os.open(bundle / "ctl", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, OSError) as exc:
        raise FailedPrecondition(f"conmon is not listening on {bundle / 'ctl'}: {exc}") from exc
    try:
        os.write(fd, f"{message_type} {first} {second}\n".encode())
    finally:
        os.close(fd)
