"""Containers through crictl against crishim: logs (and following them), stats, stopping with and without a
grace period the process honours, and the container events stream.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from tests.support.containerd_pods import OracleCri
from tests.support.cri_env import CriEnv
from tests.support.procs import wait_until
from tests.support.tools import binary

# sh waits on a background sleep so that a trapped signal runs its handler at once.
LOOP = "while true; do busybox sleep 1000 & wait $!; done"
GRACEFUL = f"trap 'echo got TERM; busybox sleep 1; echo bye; exit 42' TERM; echo ready; {LOOP}"
STUBBORN = f"trap '' TERM; echo ready; {LOOP}"
NOTED = f"trap 'echo got TERM' TERM; echo ready; {LOOP}"  # ignores SIGTERM, but says so each time


def test_logs_and_following_them(cri: CriEnv) -> None:
    pod_id = cri.runp()
    # conmon reads stdout and stderr separately: the pause keeps line-2 last in the file.
    script = "echo $$ > /main.pid; echo line-1; echo oops >&2; busybox sleep 0.3; echo line-2; " + LOOP
    container_id = cri.run(pod_id, cri.container("talker", command=["sh", "-c", script]))
    cri.wait_log(container_id, "line-2")

    logs = cri.crictl("logs", container_id)
    assert logs.stdout.splitlines() == ["line-1", "line-2"]
    assert logs.stderr.splitlines() == ["oops"]
    assert cri.crictl("logs", "--tail", "1", container_id).stdout == "line-2\n"
    assert cri.crictl("logs", "--stream", "stderr", container_id).stdout == ""
    stamped = cri.crictl("logs", "-t", "--stream", "stdout", container_id).stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["line-1", "line-2"]

    with _following(cri, container_id) as follower:
        follower.expect("line-2")
        # Output written later to the main process's stdout and stderr reaches the follower as it happens.
        # (PID 1 is the pod's namespace holder: the pods of these tests share one PID namespace.)
        cri.exec(container_id, "sh", "-c", "m=$(cat /main.pid); echo later-out > /proc/$m/fd/1; "
                                           "echo later-err > /proc/$m/fd/2")
        follower.expect("later-out", "later-err")
        cri.exec(container_id, "sh", "-c", "echo last > /proc/$(cat /main.pid)/fd/1")
        follower.expect("last")


def test_stats_report_cpu_memory_and_the_writable_layer(cri_factory: Callable[..., CriEnv]) -> None:
    cri = cri_factory(config="stats_collect_period = 0.5")  # writable layers are measured this often
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("busy"))
    cri.exec(container_id, "sh", "-c", "busybox dd if=/dev/zero of=/filler bs=1024 count=2048 2>/dev/null")
    cri.exec(container_id, "sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")  # some CPU time

    deadline = time.monotonic() + 30
    while int((stats := cri.json("stats", container_id)["stats"][0])["writableLayer"]["usedBytes"]["value"]) < 2 << 20:
        assert time.monotonic() < deadline, f"a measurement pass never counted the file written: {stats}"
        time.sleep(0.2)
    assert stats["attributes"]["id"] == container_id
    assert int(stats["cpu"]["usageCoreNanoSeconds"]["value"]) > 0
    assert int(stats["memory"]["workingSetBytes"]["value"]) > 0
    assert int(stats["memory"]["usageBytes"]["value"]) > 0
    writable = stats["writableLayer"]
    assert int(writable["usedBytes"]["value"]) >= 2048 * 1024
    assert int(writable["inodesUsed"]["value"]) >= 1
    assert writable["fsId"]["mountpoint"].startswith(str(cri.daemon.root))

    (pod_stats,) = cri.json("statsp", pod_id)["stats"]
    assert pod_stats["attributes"]["id"] == pod_id
    assert int(pod_stats["linux"]["cpu"]["usageCoreNanoSeconds"]["value"]) > 0
    assert int(pod_stats["linux"]["memory"]["workingSetBytes"]["value"]) > 0


def test_stop_gives_a_process_that_handles_sigterm_its_grace_period(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("graceful", command=["sh", "-c", GRACEFUL]))
    cri.wait_log(container_id, "ready")

    started = time.monotonic()
    cri.crictl("stop", "-t", "5", container_id)
    took = time.monotonic() - started

    status = cri.status(container_id)
    assert (status["state"], status["exitCode"], status["reason"]) == ("CONTAINER_EXITED", 42, "Error")
    # It went through its handler (which sleeps a second) and was not killed: the stop did not wait out
    # the whole grace period either.
    assert cri.crictl("logs", container_id).stdout.splitlines() == ["ready", "got TERM", "bye"]
    assert 1 <= took < 5, took


def test_stop_kills_a_process_that_ignores_sigterm_after_the_timeout(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("stubborn", command=["sh", "-c", STUBBORN]))
    cri.wait_log(container_id, "ready")

    started = time.monotonic()
    cri.crictl("stop", "-t", "5", container_id)
    took = time.monotonic() - started

    status = cri.status(container_id)
    assert (status["state"], status["exitCode"], status["reason"]) == ("CONTAINER_EXITED", 137, "Error")
    assert 5 <= took < 15, took
    # Stopping again, and stopping with no grace at all, are no-ops on an exited container.
    cri.crictl("stop", container_id)
    assert cri.status(container_id)["exitCode"] == 137


def test_a_shorter_stop_cuts_a_running_grace_period_short(cri: CriEnv, containerd_pods: OracleCri) -> None:
    seen = {}
    for name, runtime in (("crishim", cri), ("containerd", containerd_pods)):
        pod_id = runtime.runp(runtime.pod())
        container_id = runtime.run(pod_id, runtime.container("slow", command=["sh", "-c", NOTED]))
        _wait_for_log(runtime, container_id, "ready")
        with ThreadPoolExecutor(max_workers=1) as pool:
            started = time.monotonic()
            first = pool.submit(runtime.crictl, "stop", "-t", "60", container_id)
            _wait_for_log(runtime, container_id, "got TERM")
            runtime.crictl("stop", "-t", "1", container_id)  # its grace ends long before the first one's
            second_took = time.monotonic() - started
            first.result(timeout=30)
            first_took = time.monotonic() - started
        status = runtime.status(container_id)
        log = runtime.crictl("logs", container_id).stdout.splitlines()
        seen[name] = (status["state"], status["exitCode"], log)
        assert second_took < 10 and first_took < 15, (name, second_took, first_took)
    # The stop signal went out once: the second stop only shortened the wait before SIGKILL.
    assert seen["crishim"] == seen["containerd"] == ("CONTAINER_EXITED", 137, ["ready", "got TERM"])


def test_exit_of_the_process_itself_is_reported(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("short", command=["sh", "-c", "echo done; exit 7"]))
    status = cri.wait_state(container_id, "CONTAINER_EXITED")
    assert (status["exitCode"], status["reason"]) == (7, "Error")
    assert status["finishedAt"] >= status["startedAt"]
    assert cri.crictl("logs", container_id).stdout == "done\n"
    assert cri.crictl("ps", "-q", "--pod", pod_id).stdout.split() == []  # ps lists running ones only
    assert cri.crictl("ps", "-aq", "--pod", pod_id).stdout.split() == [container_id]
    assert cri.crictl("ps", "-aq", "--state", "exited").stdout.split() == [container_id]
    cri.crictl("rm", container_id)
    assert cri.crictl("ps", "-aq").stdout.split() == []


def test_events_follow_a_containers_life(cri: CriEnv) -> None:
    pod_id = cri.runp()
    with _events(cri) as events:
        container_id = cri.create(pod_id, cri.container("evented")).stdout.strip()
        cri.start(container_id)
        cri.crictl("stop", "-t", "5", container_id)
        cri.crictl("rm", container_id)
        seen = events.until(container_id, "CONTAINER_DELETED_EVENT")
    kinds = [e["containerEventType"] for e in seen if e["containerId"] == container_id]
    assert kinds == ["CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT", "CONTAINER_STOPPED_EVENT",
                     "CONTAINER_DELETED_EVENT"]
    times = [int(e["createdAt"]) for e in seen if e["containerId"] == container_id]
    assert times == sorted(times) and times[0] > 0


def test_a_container_exiting_by_itself_sends_a_stopped_event(cri: CriEnv) -> None:
    pod_id = cri.runp()
    with _events(cri) as events:
        container_id = cri.run(pod_id, cri.container("brief", command=["true"]))
        seen = events.until(container_id, "CONTAINER_STOPPED_EVENT", timeout=3)
    kinds = [e["containerEventType"] for e in seen if e["containerId"] == container_id]
    assert kinds == ["CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT", "CONTAINER_STOPPED_EVENT"]


def test_stopping_an_exited_container_again_sends_no_second_event(cri: CriEnv) -> None:
    pod_id = cri.runp()
    with _events(cri) as events:
        container_id = cri.run(pod_id, cri.container("twice"))
        cri.crictl("stop", container_id)
        cri.crictl("stop", container_id)
        cri.crictl("rm", container_id)
        seen = events.until(container_id, "CONTAINER_DELETED_EVENT")
    kinds = [e["containerEventType"] for e in seen if e["containerId"] == container_id]
    assert kinds.count("CONTAINER_STOPPED_EVENT") == 1, kinds


# --- helpers -------------------------------------------------------------------------------------------------


def _wait_for_log(runtime: CriEnv | OracleCri, container_id: str, text: str) -> None:
    wait_until(lambda: text in runtime.crictl("logs", container_id, check=False).stdout, timeout=10,
               what=f"{text!r} in the log of {container_id[:12]}", interval=0.1)


class _Stream:
    """A crictl subprocess whose stdout and stderr are read as they come."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.output = {"stdout": b"", "stderr": b""}
        self._selector = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        self._selector.register(proc.stdout, selectors.EVENT_READ, "stdout")
        self._selector.register(proc.stderr, selectors.EVENT_READ, "stderr")

    def read_for(self, seconds: float) -> None:
        for key, _ in self._selector.select(seconds):
            chunk = key.fileobj.read1(65536)  # type: ignore[union-attr]
            if not chunk:
                self._selector.unregister(key.fileobj)
            self.output[key.data] += chunk

    def text(self) -> str:
        return (self.output["stdout"] + self.output["stderr"]).decode(errors="replace")

    def expect(self, *texts: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not all(t in self.text() for t in texts):
            if time.monotonic() > deadline:
                raise AssertionError(f"{texts} did not arrive within {timeout}s; got {self.text()!r}")
            if self.proc.poll() is not None and not self._selector.get_map():
                raise AssertionError(f"crictl exited ({self.proc.returncode}) before {texts}: {self.text()!r}")
            self.read_for(0.2)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._selector.close()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def _crictl_popen(env: CriEnv, *args: str) -> subprocess.Popen[bytes]:
    endpoint = f"unix://{env.daemon.socket}"
    return subprocess.Popen([binary("crictl"), "--config", str(env.daemon.crictl_client.config),
                             "--runtime-endpoint", endpoint, "--image-endpoint", endpoint, *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@contextmanager
def _following(env: CriEnv, container_id: str) -> Iterator[_Stream]:
    stream = _Stream(_crictl_popen(env, "logs", "-f", container_id))
    try:
        yield stream
    finally:
        stream.close()


class _Events(_Stream):
    def events(self) -> list[dict[str, Any]]:
        # crictl prints one indented JSON document per event.
        decoder, text, found = json.JSONDecoder(), self.output["stdout"].decode(errors="replace"), []
        index = 0
        while (start := text.find("{", index)) != -1:
            try:
                document, index = decoder.raw_decode(text, start)
            except ValueError:
                break
            found.append(document)
        return found

    def until(self, container_id: str, kind: str, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not any(e["containerId"] == container_id and e["containerEventType"] == kind for e in self.events()):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind} for {container_id[:12]} within {timeout}s: {self.events()}; "
                                     f"stderr {self.output['stderr']!r}")
            self.read_for(0.2)
        return self.events()


@contextmanager
def _events(env: CriEnv) -> Iterator[_Events]:
    stream = _Events(_crictl_popen(env, "events"))
    try:
        # Events before the daemon has the subscription are not sent: give crictl a moment to connect.
        time.sleep(1)
        yield stream
    finally:
        stream.close()
