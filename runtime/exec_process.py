"""An interactive exec: ``runc exec`` in the foreground with the caller's pipes or a terminal, for streaming.

Unlike ExecSync (conmon, output collected), the caller streams the process's stdio as it runs:

- Without a terminal, runc gets pipes (or /dev/null for what the client did not ask for) and copies them to
  the process; its exit status is the process's.
- With a terminal, runc gets the slave of a pty of ours as its stdio: it makes the container's own console,
  puts ours in raw mode and copies between the two (as CRI-O does it). A resize sets our pty's size and
  sends runc SIGWINCH, on which runc copies the size to the container's console.

runc writes the process's host pid to the pid file once the process runs; no pid file after runc exited means
the process never started, and runc's JSON log says why. Nothing here blocks for long; the fds it hands out
are non-blocking for the caller's event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from errdefs import CrishimError
from runtime.runc import Runc, child_env, error_for, error_text

__all__ = ["ExecProcess", "kill_started", "read_pid_file", "start", "sweep"]

# How long a running runc may take to write the pid file of a process it started (kill_started).
PID_FILE_GRACE_SECONDS = 2.0


@dataclass
class ExecProcess:
    container_id: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    tty: bool
    # Our ends, non-blocking. With a terminal the pty master is both stdin and stdout.
    stdin: int | None
    stdout: int | None
    stderr: int | None
    _fds: list[int] = field(default_factory=list)

    @property
    def pid_file(self) -> Path:
        return self.workdir / "pid"

    def started_pid(self) -> int | None:
        """The process's host pid once runc has started it."""
        return read_pid_file(self.pid_file)

    def resize(self, width: int, height: int) -> None:
        if not self.tty or self.stdout is None:
            return
        _set_size(self.stdout, width, height)
        self.notify_size()

    def notify_size(self) -> None:
        """Tell runc to copy our terminal's size to the container's. Until runc has set its signal handlers
        (it has once it wrote the pid file) a SIGWINCH is lost, so callers send one again then."""
        if self.tty and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGWINCH)

    def kill(self) -> None:
        kill_started(self.proc, self.pid_file)

    def exit_code(self) -> int:
        """The process's exit code once runc exited; the runtime's error if the process never ran."""
        code = self.proc.wait()
        if self.started_pid() is None:
            raise self._failure(code)
        return code

    def _failure(self, code: int) -> CrishimError:
        message = ""
        with contextlib.suppress(FileNotFoundError):
            message = error_text((self.workdir / "runc.log").read_text(errors="replace"))
        return error_for(self.container_id, message or f"runc exec exited {code} without starting the process")

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start(runc: Runc, container_id: str, process: dict[str, Any], exec_root: Path, *,
          tty: bool, stdin: bool, stdout: bool, stderr: bool, size: tuple[int, int] | None = None) -> ExecProcess:
    """Start ``process`` (an OCI process spec) in the container; ``size`` is a terminal's (width, height)."""
    exec_root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{container_id}-", dir=exec_root))
    try:
        (workdir / "process.json").write_text(json.dumps({**process, "terminal": tty}))
        argv = runc.command("exec", "--process", str(workdir / "process.json"), "--pid-file", str(workdir / "pid"),
                            container_id, log=workdir / "runc.log")
        if tty:
            return _start_tty(argv, container_id, workdir, size)
        return _start_pipes(argv, container_id, workdir, stdin=stdin, stdout=stdout, stderr=stderr)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def sweep(exec_root: Path) -> list[str]:
    """At start, before any session: stop what the execs of a daemon killed mid-session left running and remove
    their folders; the folders' names.

    An exec's parent (runc for a streaming exec, conmon for ExecSync) has the folder's process.json on its
    command line. While it runs, the pid file names the process and not a recycled pid (as in
    ``kill_started``), so the process is killed, then the parent. A process whose parent is gone too cannot be
    told from a stranger with a recycled pid and is left alone.
    """
    try:
        folders = sorted(p for p in exec_root.iterdir() if p.is_dir())
    except FileNotFoundError:
        return []
    for folder in folders:
        parents = _processes_naming(str(folder / "process.json"))
        pid = read_pid_file(folder / "pid")
        for target in ([pid] if pid is not None and parents else []) + parents:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
    return [folder.name for folder in folders]


def _processes_naming(argument: str) -> list[int]:
    wanted = argument.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted in (entry / "cmdline").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def read_pid_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def kill_started(parent: subprocess.Popen[bytes], pid_file: Path) -> None:
    """SIGKILL an exec'd process by the host pid in its pid file, or its parent (runc, or the conmon running
    runc) when it has not started: runc init dies with its parent by its parent-death signal.

    runc writes the pid file only once the process runs, and the process may already be running (and
    printing) before that: a parent still alive gets a moment to name it, as killing the parent would leave
    a started process running. Blocks for up to that moment: callers on an event loop call it in a thread.
    While the parent runs the pid is that process's and not a recycled one: the parent reaps the process and
    exits at once.
    """
    deadline = time.monotonic() + PID_FILE_GRACE_SECONDS
    while (pid := read_pid_file(pid_file)) is None:
        if parent.poll() is not None:
            return
        if time.monotonic() >= deadline:
            parent.kill()
            return
        time.sleep(0.01)
    if parent.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _set_size(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def _start_tty(argv: list[str], container_id: str, workdir: Path, size: tuple[int, int] | None) -> ExecProcess:
    master, slave = os.openpty()
    if size is not None:
        # Before runc starts: it copies this size to the container's console once that exists, while a
        # SIGWINCH sent before its signal handlers are set would be lost.
        _set_size(master, *size)
    try:
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=child_env(), cwd=workdir,
                                start_new_session=True)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return ExecProcess(container_id, proc, workdir, True, master, master, None, [master])


def _start_pipes(argv: list[str], container_id: str, workdir: Path, *, stdin: bool, stdout: bool,
                 stderr: bool) -> ExecProcess:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                            stderr=subprocess.PIPE if stderr else subprocess.DEVNULL,
                            env=child_env(), cwd=workdir, start_new_session=True)
    ends = [_take(proc.stdin), _take(proc.stdout), _take(proc.stderr)]
    for fd in ends:
        if fd is not None:
            os.set_blocking(fd, False)
    return ExecProcess(container_id, proc, workdir, False, ends[0], ends[1], ends[2],
                       [fd for fd in ends if fd is not None])


def _take(pipe: Any) -> int | None:
    """The pipe's fd, detached from its file object so that only ExecProcess.close closes it."""
    if pipe is None:
        return None
    fd: int = os.dup(pipe.fileno())
    pipe.close()
    return fd
