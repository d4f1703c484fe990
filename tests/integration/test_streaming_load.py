"""Many exec sessions at once through crictl while the CRI keeps answering: all of them finish with their
output, and none leaves anything behind."""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

from tests.support.cri_env import CriEnv
from tests.support.procs import wait_until

SESSIONS = 50
# Plenty for a loaded two-core machine; a session or a CRI call that takes longer has hung.
SESSION_TIMEOUT = 180
CALL_TIMEOUT = 60


def test_fifty_concurrent_execs_all_succeed_while_the_cri_answers(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("target"))
    command = cri.daemon.crictl_client.command

    def session(i: int) -> subprocess.CompletedProcess[str]:
        transport = ("spdy", "websocket")[i % 2]
        argv = command("exec", "-r", transport, container_id, "sh", "-c", f"busybox sleep 2; echo done-{i}")
        return subprocess.run(argv, capture_output=True, text=True, timeout=SESSION_TIMEOUT)

    sessions_over = threading.Event()
    answers: list[subprocess.CompletedProcess[str]] = []

    def keep_asking() -> None:
        while not sessions_over.is_set():
            for args in (("version",), ("ps", "-q")):
                answers.append(subprocess.run(command(*args), capture_output=True, text=True, timeout=CALL_TIMEOUT))

    with ThreadPoolExecutor(SESSIONS + 1) as pool:
        asking = pool.submit(keep_asking)
        results = list(pool.map(session, range(SESSIONS)))
        sessions_over.set()
        asking.result()

    failed = [(i, r.returncode, r.stdout, r.stderr) for i, r in enumerate(results)
              if (r.returncode, r.stdout, r.stderr) != (0, f"done-{i}\n", "")]
    assert failed == []
    assert len(answers) >= 2 and all(a.returncode == 0 for a in answers), [a.stderr for a in answers if a.returncode]
    assert all(container_id in a.stdout for a in answers if "ps" in a.args)
    wait_until(lambda: not any((cri.daemon.state / "exec").iterdir()), timeout=15, what="every exec folder to go")
    left = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
    assert "echo done-" not in left
