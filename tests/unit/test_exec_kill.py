"""Killing an exec whose process runs before its parent wrote the pid file (runc's order, seen under load)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from runtime.exec_process import kill_started


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited: its parent has just not reaped it yet.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_started_process_is_killed_even_before_its_pid_file_exists(tmp_path: Path) -> None:
    pid_file, child_file = tmp_path / "pid", tmp_path / "child"
    # The parent starts the process at once and names it in the pid file only later, as runc exec does.
    parent = subprocess.Popen(["sh", "-c", f"sleep 1000 & echo $! > {child_file}; sleep 0.3; "
                                           f"echo $! > {pid_file}; wait"])
    try:
        while not child_file.exists() or not child_file.read_text().strip():
            time.sleep(0.01)
        child = int(child_file.read_text())
        assert not pid_file.exists()
        kill_started(parent, pid_file)
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(child)
    finally:
        parent.kill()
        parent.wait()


def test_a_parent_that_never_names_its_process_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen(["sleep", "1000"])
    try:
        started = time.monotonic()
        kill_started(parent, tmp_path / "pid")
        assert parent.wait(timeout=5) != 0
        assert time.monotonic() - started < 5
    finally:
        parent.kill()
        parent.wait()
