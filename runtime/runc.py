"""The runc command line: one method per subcommand crishim uses, runc's errors turned into crishim's.

Every call passes ``--root`` so crishim's containers live apart from other runc users, ``--systemd-cgroup``
under the systemd cgroup driver, and ``--log-format json`` so runc's error text can be told apart from anything
else on its stderr: runc prints its final error as one JSON line at level ``error`` (or ``fatal``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from errdefs import AlreadyExists, CrishimError, DataLoss, DeadlineExceeded, FailedPrecondition, NotFound
from runtime.crilog import parse_timestamp

__all__ = ["Runc", "RuncError", "RuntimeState", "Status", "child_env", "error_for", "error_text"]

# runc answers in well under a second; a minute means it is stuck (a frozen cgroup, a hung mount).
DEFAULT_TIMEOUT = 60.0

# runc 1.1's and crun 1.8's messages, matched as substrings, for the errors a caller must tell apart.
_NOT_FOUND = ("container does not exist", "/status`: no such file or directory", "cannot open directory '")
_ALREADY_EXISTS = ("container with id exists", "container with given id already exists", "already exists")
_NOT_RUNNING = ("container not running", "kill container: no such process")


# The environment runc gets, directly or through conmon: only what it needs, not the daemon's.
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ")
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def child_env() -> dict[str, str]:
    env = {key: os.environ[key] for key in _ENV_KEEP if key in os.environ}
    env.setdefault("PATH", _DEFAULT_PATH)
    return env


class RuncError(FailedPrecondition):
    """runc refused or failed; the message is runc's own text."""


class Status(StrEnum):
    """The statuses ``runc state`` reports."""

    CREATED = "created"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class RuntimeState:
    id: str
    status: Status
    pid: int  # on the host; 0 once stopped
    bundle: Path
    created_ns: int  # since the epoch


def error_text(output: str) -> str:
    """runc's error messages from its JSON log lines, joined; other lines are ignored."""
    messages = []
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            messages.append(str(entry.get("msg", "")))
    return "; ".join(messages)


def error_for(container_id: str, message: str) -> CrishimError:
    """The crishim error for one of runc's error messages."""
    lowered = message.lower()
    if any(text in lowered for text in _NOT_FOUND):
        return NotFound(f"container {container_id}: {message}")
    if any(text in lowered for text in _ALREADY_EXISTS):
        return AlreadyExists(f"container {container_id}: {message}")
    if any(text in lowered for text in _NOT_RUNNING):
        # containerd's word for signalling a process that has exited: "process already finished", NotFound.
        return NotFound(f"container {container_id}: process already finished ({message})")
    return RuncError(f"container {container_id}: {message}")


def _parse_state(document: dict[str, Any]) -> RuntimeState:
    try:
        return RuntimeState(
            id=str(document["id"]),
            status=Status(document["status"]),
            pid=int(document.get("pid", 0)),
            bundle=Path(document["bundle"]),
            created_ns=parse_timestamp(document["created"]),
        )
    except (KeyError, ValueError, TypeError, CrishimError) as exc:
        raise DataLoss(f"unexpected runc state: {document!r}") from exc


class Runc:
    def __init__(self, binary: str, root: Path, *, systemd_cgroup: bool = False,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.binary = binary
        self.root = root
        self.systemd_cgroup = systemd_cgroup  # cgroups made by systemd (the systemd cgroup driver)
        self.timeout = timeout

    def global_args(self, log: Path | None = None) -> list[str]:
        """The flags every subcommand takes, here or through conmon; with ``log``, runc's own messages go to that
        file, not stderr."""
        systemd = ["--systemd-cgroup"] if self.systemd_cgroup else []
        logging = ["--log", str(log)] if log is not None else []
        return ["--root", str(self.root), *systemd, *logging, "--log-format", "json"]

    def command(self, *args: str, log: Path | None = None) -> list[str]:
        """The argv for a runc subcommand."""
        return [self.binary, *self.global_args(log), *args]

    def run(self, container_id: str, args: Sequence[str], *, stdin: bytes | None = None) -> bytes:
        """Run a subcommand to completion; its stdout, or the matching crishim error."""
        try:
            result = subprocess.run(self.command(*args), input=stdin, capture_output=True, timeout=self.timeout,
                                    stdin=None if stdin is not None else subprocess.DEVNULL, env=child_env())
        except subprocess.TimeoutExpired as exc:
            raise DeadlineExceeded(f"runc {args[0]} {container_id} did not finish within {self.timeout}s") from exc
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace")
            raise error_for(container_id, error_text(stderr) or stderr.strip() or f"exit {result.returncode}")
        return result.stdout

    def state(self, container_id: str) -> RuntimeState:
        document = json.loads(self.run(container_id, ["state", container_id]))
        return _parse_state(document)

    def start(self, container_id: str) -> None:
        self.run(container_id, ["start", container_id])

    def kill(self, container_id: str, signal: int, *, all: bool = False) -> None:
        # --all reaches every process in the container's cgroup, not only its init.
        self.run(container_id, ["kill", *(["--all"] if all else []), container_id, str(int(signal))])

    def delete(self, container_id: str, *, force: bool = False) -> None:
        self.run(container_id, ["delete", *(["--force"] if force else []), container_id])

    def update(self, container_id: str, resources: bytes) -> None:
        # A path, not "-": crun reads the resources from a file only.
        self.run(container_id, ["update", "--resources", "/dev/stdin", container_id], stdin=resources)
