"""The OCI runtime driver: containers run by runc, each supervised by its own conmon.

conmon outlives crishim, so everything needed to find a container again is on disk, and an ``OCIRuntime``
made after a restart on the same state dir sees the containers the previous one created. Layout::

    <state>/
      io.containerd.runtime.v2.task/<namespace>/<id>/   the bundle (made by the caller): config.json, rootfs/
          ctl, winsz, attach                            conmon's control fifos and attach socket; conmon
                                                        always puts them in the bundle
      runc/<id>/state.json                              runc's own state (runc --root): crishim's containers
                                                        only, apart from other runc users
      conmon/<id>/                                      one per container, kept until delete()
          conmon.pid                                    conmon's pid
          pid                                           the container's init pid on the host, as runc wrote it
          runc-create.log                               runc create's JSON log: its error when create fails
          runtime                                       the name of the runtime (handler) that runs it
          bundle -> <bundle>, log -> <log path>         where they are, for reopen_log after a restart
      exits/<id>                                        conmon's exit file: the exit code in decimal; its
                                                        mtime is when the container exited
      attach/<id> -> <bundle>                           conmon's symlink keeping attach socket paths short
      exec/<id>-<random>/                               one per exec (ExecSync or a streaming session) while
                                                        it runs: process.json, the pid file and runc's log;
                                                        a daemon killed mid-exec leaves them to sweep_execs

Lifecycle: ``create`` (conmon runs ``runc create``; the process waits in runc's init) → ``start`` → the
container exits, conmon writes the exit file and exits → ``delete`` forgets the container, exit file
included, so read ``exit_status`` first. Errors are crishim's (``errdefs``); runc's own failures are
``RuncError`` carrying runc's message. Every method blocks: call them from a worker thread in async code.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errdefs import AlreadyExists, CrishimError, DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound
from runtime import conmon, exec_process
from runtime.runc import Runc, RuncError, RuntimeState, Status, error_for, error_text
from runtime.undo import quietly

__all__ = [
    "EXEC_OUTPUT_CAP", "TASK_DIR", "ExecResult", "ExitStatus", "OCIRuntime", "RuncError", "RuntimeState", "Status",
]

TASK_DIR = "io.containerd.runtime.v2.task"

# runc's rule for container ids, which also keeps them safe as file names.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+.-]*")
# containerd's ExecSync cap: output beyond it is read and dropped, so the process never blocks on a full pipe.
EXEC_OUTPUT_CAP = 16 << 20
# After an exec'd process exits, its children may still hold the output pipes (`sh -c 'sleep 1d &'`);
# containerd stops waiting for them after its drain timeout, and so do we.
EXEC_DRAIN_TIMEOUT = 1.0
_POLL = 0.02


@dataclass(frozen=True, slots=True)
class ExitStatus:
    exit_code: int  # 128 + signal for a death by signal, as conmon records it
    finished_at_ns: int  # since the epoch


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True, slots=True)
class _Files:
    """Where one container's conmon files are."""

    folder: Path
    conmon_pid: Path
    container_pid: Path
    runc_log: Path
    bundle: Path
    log: Path
    exit_file: Path
    attach_link: Path


class OCIRuntime:
    def __init__(
        self,
        state_dir: Path,
        *,
        runc: str = "runc",
        runtimes: Mapping[str, Runc] | None = None,
        default_runtime: str = "runc",
        conmon: str = "conmon",
        log_level: str = "info",
        create_timeout: float = 60.0,
        runc_timeout: float = 60.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.conmon_binary = _executable(conmon)
        # By runtime handler name; each has a --root of its own, so one never sees another's containers.
        self._runtimes = dict(runtimes) if runtimes is not None else {
            default_runtime: Runc(_executable(runc), self.state_dir / "runc", timeout=runc_timeout)}
        self._default_name = default_runtime
        self.runc = self._runtimes[default_runtime]
        self.log_level = log_level
        self.create_timeout = create_timeout

    # --- paths -------------------------------------------------------------------------------------------

    def bundle_dir(self, namespace: str, container_id: str) -> Path:
        """Where the caller should build a container's bundle."""
        return self.state_dir / TASK_DIR / namespace / _checked(container_id)

    def attach_socket(self, container_id: str) -> Path:
        return self.state_dir / "attach" / _checked(container_id) / "attach"

    def _files(self, container_id: str) -> _Files:
        folder = self.state_dir / "conmon" / _checked(container_id)
        return _Files(
            folder=folder,
            conmon_pid=folder / "conmon.pid",
            container_pid=folder / "pid",
            runc_log=folder / "runc-create.log",
            bundle=folder / "bundle",
            log=folder / "log",
            exit_file=self.state_dir / "exits" / container_id,
            attach_link=self.state_dir / "attach" / container_id,
        )

    # --- lifecycle ---------------------------------------------------------------------------------------

    def create(
        self, container_id: str, bundle: Path, log_path: Path, *,
        tty: bool = False, stdin: bool = False, stdin_once: bool = False, runtime: str = "",
    ) -> int:
        """Create the container under a new conmon with the named runtime (the default when ""); returns its
        init pid. On failure nothing is left behind."""
        files = self._files(container_id)
        runc = self._named(runtime)
        self._refuse_existing(runc, container_id)
        with contextlib.ExitStack() as undo:
            # Undo runs last in, first out: stop conmon, then remove runc's state, then our files.
            undo.callback(quietly, self._forget, files)
            self._prepare(files, Path(bundle).resolve(), Path(log_path), runtime or self._default_name)
            undo.callback(quietly, self._force_delete, container_id)
            # No grace: by the time create fails, conmon has said all it will.
            undo.callback(quietly, self._stop_conmon, container_id, 0.0)
            pid = self._spawn(runc, files, container_id, tty=tty, stdin=stdin, stdin_once=stdin_once)
            undo.pop_all()
        return pid

    def start(self, container_id: str) -> None:
        self._runc(container_id).start(_checked(container_id))

    def state(self, container_id: str) -> RuntimeState:
        return self._runc(container_id).state(_checked(container_id))

    def exit_status(self, container_id: str) -> ExitStatus | None:
        """The exit code and time conmon recorded; None while the container has not exited."""
        recorded = conmon.read_exit_file(self._files(container_id).exit_file)
        return None if recorded is None else ExitStatus(*recorded)

    def conmon_pid(self, container_id: str) -> int | None:
        """The pid of the conmon supervising the container, or None when no conmon is (any longer)."""
        try:
            pid = int(self._files(container_id).conmon_pid.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if conmon.is_conmon_of(pid, container_id) else None

    def conmon_pidfd(self, container_id: str) -> int | None:
        """A pidfd of the container's conmon (the caller closes it), or None when no conmon supervises it.

        Checked after opening: the pidfd pins the process, so a pid recycled before the open is caught.
        """
        try:
            pid = int(self._files(container_id).conmon_pid.read_text().strip())
            fd = os.pidfd_open(pid)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        if not conmon.is_conmon_of(pid, container_id):
            os.close(fd)
            return None
        return fd

    def wait_exit(self, container_id: str, timeout: float) -> ExitStatus | None:
        """Wait up to timeout seconds for the container to exit; None if it is still running.

        When no exit file exists and no conmon could write one: NotFound if runc does not know the container,
        FailedPrecondition if it does (its conmon was killed).
        """
        deadline = time.monotonic() + timeout
        while (status := self.exit_status(container_id)) is None:
            if self.conmon_pid(container_id) is None:
                # conmon writes the file before it exits: look once more now that it is gone.
                status = self.exit_status(container_id)
                if status is None:
                    raise self._unsupervised(container_id)
                return status
            if time.monotonic() >= deadline:
                return None
            time.sleep(_POLL)
        return status

    def _unsupervised(self, container_id: str) -> CrishimError:
        # Known to runc but without conmon (killed, say): it may run on, but no exit code will ever be written.
        state = self._runc(container_id).state(container_id)  # NotFound when runc does not know it either
        return FailedPrecondition(f"container {container_id} is {state.status} but no conmon supervises it")

    def kill(self, container_id: str, sig: int, all: bool = False) -> None:
        """Signal the container's init (or, with all, every process in it); NotFound once it has exited."""
        self._runc(container_id).kill(_checked(container_id), sig, all=all)

    def delete(self, container_id: str, force: bool = False) -> None:
        """Remove the container: runc's state, conmon and its files. Deleting twice is no error."""
        files = self._files(container_id)
        with contextlib.suppress(NotFound):
            self._runc(container_id).delete(container_id, force=force)
        self._stop_conmon(container_id, 5.0)
        self._forget(files)

    def update(self, container_id: str, resources: Mapping[str, object] | str) -> None:
        """Apply OCI ``linux.resources`` (a mapping or its JSON) to the running container."""
        document = resources if isinstance(resources, str) else json.dumps(resources)
        self._runc(container_id).update(_checked(container_id), document.encode())

    def reopen_log(self, container_id: str, timeout: float = 5.0) -> None:
        """Make conmon write to a fresh file at the log path (after the old one was moved away, say)."""
        files = self._files(container_id)
        try:
            bundle, log_path = Path(os.readlink(files.bundle)), Path(os.readlink(files.log))
        except FileNotFoundError as exc:
            raise NotFound(f"container {container_id} is not known to the runtime") from exc
        before = _inode(log_path)
        conmon.write_ctl(bundle, conmon.REOPEN_LOG)
        # conmon acts on the message in its own time; return only once the new file is in place.
        deadline = time.monotonic() + timeout
        while not _replaced(log_path, before):
            # A conmon on its way out may still have taken the message; it will not act on it.
            if self.conmon_pid(container_id) is None and not _replaced(log_path, before):
                raise FailedPrecondition(f"conmon of {container_id} exited without reopening {log_path}")
            if time.monotonic() >= deadline:
                raise DeadlineExceeded(f"conmon did not reopen {log_path} within {timeout}s")
            time.sleep(_POLL)

    # --- exec --------------------------------------------------------------------------------------------

    def exec_sync(
        self, container_id: str, argv: Sequence[str], timeout: float | None, *,
        env: Mapping[str, str] | None = None, cwd: str | None = None, user: str | None = None,
    ) -> ExecResult:
        """Run argv in the container and collect its output; timeout None or 0 means no limit.

        The process starts from the container's own process spec (environment, capabilities, user) with
        env merged in and cwd or user ("uid[:gid]") replaced. On timeout it is killed and DeadlineExceeded
        raised. Children it leaves behind keep running, as with containerd; their later output is dropped.
        """
        process = self._process_spec(container_id, argv, env, cwd, user)
        exec_root = self.state_dir / "exec"
        exec_root.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"{container_id}-", dir=exec_root))
        try:
            (workdir / "process.json").write_text(json.dumps(process))
            return self._exec(container_id, workdir, timeout)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def start_exec(self, container_id: str, argv: Sequence[str], *, tty: bool, stdin: bool, stdout: bool,
                   stderr: bool, size: tuple[int, int] | None = None) -> exec_process.ExecProcess:
        """Start argv in the container for a streaming session; the caller owns the returned process."""
        process = self._process_spec(container_id, argv, None, None, None)
        return exec_process.start(self._runc(container_id), container_id, process, self.state_dir / "exec", tty=tty,
                                  stdin=stdin, stdout=stdout, stderr=stderr, size=size)

    def sweep_execs(self) -> list[str]:
        """Stop and forget the execs of a daemon that died mid-session; call before serving."""
        return exec_process.sweep(self.state_dir / "exec")

    def _process_spec(self, container_id: str, argv: Sequence[str], env: Mapping[str, str] | None,
                      cwd: str | None, user: str | None) -> dict[str, Any]:
        if not argv:
            raise InvalidArgument("exec needs a command")
        try:
            spec = json.loads((Path(os.readlink(self._files(container_id).bundle)) / "config.json").read_text())
        except FileNotFoundError as exc:
            raise NotFound(f"container {container_id} is not known to the runtime") from exc
        return _exec_process(spec.get("process", {}), list(argv), env, cwd, user)

    def _exec(self, container_id: str, workdir: Path, timeout: float | None) -> ExecResult:
        runc = self._runc(container_id)
        args = conmon.ConmonExecArgs(
            conmon=self.conmon_binary,
            runtime=runc.binary,
            runtime_args=tuple(runc.global_args(workdir / "runc.log")),
            container_id=container_id,
            exec_id=workdir.name,
            process_spec=workdir / "process.json",
            pidfile=workdir / "pid",
        )
        deadline = None if not timeout or timeout <= 0 else time.monotonic() + timeout
        proc, sync = conmon.spawn_exec(args)
        try:
            with proc, _Output(proc) as output:
                try:
                    exited = output.read_until_exit(deadline)
                except BaseException:
                    # Interrupted: do not leave the process running, nor Popen's exit waiting for it.
                    _kill_exec(proc, args.pidfile)
                    raise
                if not exited:
                    _kill_exec(proc, args.pidfile)
                output.drain(time.monotonic() + EXEC_DRAIN_TIMEOUT)
            replies = conmon.read_replies(sync)
        finally:
            os.close(sync)
        if not exited:
            raise DeadlineExceeded(f"timeout {timeout}s exceeded: exec in container {container_id} was killed")
        return ExecResult(self._exec_exit_code(container_id, replies, workdir), output.stdout, output.stderr)

    def _exec_exit_code(self, container_id: str, replies: list[conmon.SyncReply], workdir: Path) -> int:
        # Two replies when all went well: the process's pid, then its exit code.
        if len(replies) == 2 and replies[0].data > 0:
            return replies[1].data
        failure = next((reply.message for reply in replies if reply.message), "")
        with contextlib.suppress(FileNotFoundError):
            failure = error_text((workdir / "runc.log").read_text(errors="replace")) or failure
        raise error_for(container_id, failure.strip() or "conmon reported no exit code for the exec")

    # --- create helpers ----------------------------------------------------------------------------------

    def _named(self, runtime: str) -> Runc:
        try:
            return self._runtimes[runtime or self._default_name]
        except KeyError:
            raise NotFound(f"runtime {runtime!r}: not configured") from None

    def _runc(self, container_id: str) -> Runc:
        """The runtime a container was created with; the default for one created before runtimes were named."""
        try:
            name = (self._files(container_id).folder / "runtime").read_text()
        except FileNotFoundError:
            return self.runc
        return self._runtimes.get(name, self.runc)

    def _refuse_existing(self, runc: Runc, container_id: str) -> None:
        try:
            runc.state(container_id)
        except NotFound:
            return
        raise AlreadyExists(f"container {container_id} already exists")

    def _prepare(self, files: _Files, bundle: Path, log_path: Path, runtime: str) -> None:
        # Leftovers of an earlier container with this id (runc has none, checked above) would mislead us.
        self._forget(files)
        for folder in (files.folder, files.exit_file.parent, files.attach_link.parent, log_path.parent):
            folder.mkdir(parents=True, exist_ok=True)
        (files.folder / "runtime").write_text(runtime)
        files.bundle.symlink_to(bundle)
        files.log.symlink_to(log_path.absolute())

    def _spawn(self, runc: Runc, files: _Files, container_id: str, *, tty: bool, stdin: bool,
               stdin_once: bool) -> int:
        args = conmon.ConmonArgs(
            conmon=self.conmon_binary,
            runtime=runc.binary,
            runtime_args=tuple(runc.global_args(files.runc_log)),
            container_id=container_id,
            bundle=Path(os.readlink(files.bundle)),
            container_pidfile=files.container_pid,
            conmon_pidfile=files.conmon_pid,
            log_path=Path(os.readlink(files.log)),
            exit_dir=files.exit_file.parent,
            socket_dir=files.attach_link.parent,
            log_level=self.log_level,
            tty=tty,
            stdin=stdin,
            stdin_once=stdin_once,
        )
        reply = conmon.spawn(args, self.create_timeout)
        if reply is None or reply.data <= 0:
            message = (reply.message.strip() if reply else "") or self._runc_create_error(files)
            raise error_for(container_id, message or "conmon exited without reporting the container's pid")
        return reply.data

    def _runc_create_error(self, files: _Files) -> str:
        try:
            return error_text(files.runc_log.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    # --- teardown helpers --------------------------------------------------------------------------------

    def _stop_conmon(self, container_id: str, grace: float) -> None:
        pid = self.conmon_pid(container_id)
        if pid is not None:
            conmon.stop(pid, container_id, grace)

    def _force_delete(self, container_id: str) -> None:
        with contextlib.suppress(NotFound):
            self._runc(container_id).delete(container_id, force=True)

    def _forget(self, files: _Files) -> None:
        shutil.rmtree(files.folder, ignore_errors=True)
        for path in (files.exit_file, files.attach_link):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class _Output:
    """A child's stdout and stderr, read together without blocking, each capped at EXEC_OUTPUT_CAP."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self._proc = proc
        self._selector = selectors.DefaultSelector()
        self._buffers = {"stdout": bytearray(), "stderr": bytearray()}
        for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            self._selector.register(stream.fileno(), selectors.EVENT_READ, name)
        # A pidfd becomes readable when the process exits, so no polling is needed to notice it.
        self._pidfd = os.pidfd_open(proc.pid)
        self._selector.register(self._pidfd, selectors.EVENT_READ, "exit")

    def __enter__(self) -> _Output:
        return self

    def __exit__(self, *exc: object) -> None:
        self._selector.close()
        os.close(self._pidfd)

    @property
    def stdout(self) -> bytes:
        return bytes(self._buffers["stdout"])

    @property
    def stderr(self) -> bytes:
        return bytes(self._buffers["stderr"])

    def read_until_exit(self, deadline: float | None) -> bool:
        """Read until the process exits (True, and reaped) or the deadline passes (False)."""
        while self._proc.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._read_once(None if deadline is None else deadline - time.monotonic())
        return True

    def drain(self, deadline: float) -> None:
        """Read what is left until both pipes close or the deadline passes."""
        self._selector.unregister(self._pidfd)
        while self._selector.get_map() and time.monotonic() < deadline:
            self._read_once(deadline - time.monotonic())

    def _read_once(self, timeout: float | None) -> None:
        for key, _ in self._selector.select(None if timeout is None else max(timeout, 0)):
            if key.data == "exit":
                return
            chunk = os.read(key.fd, 65536)
            if not chunk:
                self._selector.unregister(key.fd)
                continue
            buffer = self._buffers[key.data]
            buffer += chunk[: max(EXEC_OUTPUT_CAP - len(buffer), 0)]


def _kill_exec(proc: subprocess.Popen[bytes], pid_file: Path) -> None:
    """SIGKILL the exec'd process and wait for conmon to report it."""
    exec_process.kill_started(proc, pid_file)
    try:
        proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _exec_process(
    base: dict[str, Any], argv: list[str], env: Mapping[str, str] | None, cwd: str | None, user: str | None
) -> dict[str, Any]:
    """The container's process spec with the exec's changes, as ``runc exec`` would build it from flags."""
    process = {**base, "args": argv, "terminal": False}
    process.pop("commandLine", None)
    if env:
        kept = [entry for entry in process.get("env", []) if entry.split("=", 1)[0] not in env]
        process["env"] = kept + [f"{key}={value}" for key, value in env.items()]
    if cwd:
        process["cwd"] = cwd
    if user:
        process["user"] = {**process.get("user", {}), **_parse_user(user)}
    return process


def _parse_user(user: str) -> dict[str, int]:
    uid, _, gid = user.partition(":")
    try:
        return {"uid": int(uid), **({"gid": int(gid)} if gid else {})}
    except ValueError as exc:
        raise InvalidArgument(f"exec user must be uid[:gid], not {user!r}") from exc



def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _replaced(path: Path, inode_before: int | None) -> bool:
    return _inode(path) not in (inode_before, None)


def _checked(container_id: str) -> str:
    if not _ID.fullmatch(container_id) or len(container_id) > 1024:
        raise InvalidArgument(f"invalid container id {container_id!r}")
    return container_id


def _executable(name: str) -> str:
    # conmon execv()s the runtime without a PATH search, so both binaries are resolved to absolute paths.
    found = shutil.which(name)
    if found is None:
        return name if os.path.isabs(name) else str(Path(name).absolute())
    return os.path.abspath(found)

