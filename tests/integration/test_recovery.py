"""crishim killed with SIGKILL while pods run: the containers live on under conmon, and a daemon restarted
on the same root and state reports their true states and can still exec in, read logs of, stop and remove
them, including one whose process was killed from outside while no daemon was running.
"""

from __future__ import annotations

import os
import signal
import time

from tests.support.cri_env import CriEnv, process_alive
from tests.support.procs import wait_until


def test_containers_outlive_a_killed_daemon_and_a_restart_sees_their_true_states(cri: CriEnv) -> None:
    pod_id = cri.runp(cri.pod(labels={"app": "recovered"}))
    pod_ip = cri.pod_ip(pod_id)
    survivor = cri.run(pod_id, cri.container("survivor", command=[
        "sh", "-c", "echo $$ > /main.pid; trap 'exit 0' TERM; echo before; "
                    "while true; do busybox sleep 1000 & wait $!; done"]))
    victim = cri.run(pod_id, cri.container("victim"))
    finished = cri.run(pod_id, cri.container("finished", command=["sh", "-c", "exit 3"]))
    created = cri.create(pod_id, cri.container("created")).stdout.strip()
    cri.wait_state(finished, "CONTAINER_EXITED")
    cri.wait_log(survivor, "before")
    survivor_pid, victim_pid = cri.container_pid(survivor), cri.container_pid(victim)

    cri.daemon.kill()
    assert not cri.daemon.running
    # Without the daemon the containers go on; one is killed from outside meanwhile.
    time.sleep(0.5)
    assert process_alive(survivor_pid) and process_alive(victim_pid)
    os.kill(victim_pid, signal.SIGKILL)
    exit_file = cri.daemon.state / "exits" / victim
    wait_until(exit_file.exists, timeout=10, what="conmon to record the victim's exit")

    cri.daemon.start()

    (pod,) = cri.json("pods")["items"]
    assert (pod["id"], pod["state"], pod["labels"]) == (pod_id, "SANDBOX_READY", {"app": "recovered"})
    assert cri.pod_ip(pod_id) == pod_ip
    states = {c["id"]: c["state"] for c in cri.json("ps", "-a")["containers"]}
    assert states == {survivor: "CONTAINER_RUNNING", victim: "CONTAINER_EXITED",
                      finished: "CONTAINER_EXITED", created: "CONTAINER_CREATED"}
    victim_status = cri.status(victim)
    assert (victim_status["exitCode"], victim_status["reason"]) == (137, "Error")
    assert cri.status(finished)["exitCode"] == 3
    assert cri.container_pid(survivor) == survivor_pid

    # The running one still answers to everything.
    assert cri.exec(survivor, "id", "-u").stdout.strip() == "0"
    cri.exec(survivor, "sh", "-c", "echo after > /proc/$(cat /main.pid)/fd/1")  # conmon still logs
    assert cri.wait_log(survivor, "after").splitlines() == ["before", "after"]
    started = time.monotonic()
    cri.crictl("stop", "-t", "10", survivor)
    assert time.monotonic() - started < 5  # it got SIGTERM and took it
    assert (cri.state(survivor), cri.status(survivor)["exitCode"]) == ("CONTAINER_EXITED", 0)
    assert not process_alive(survivor_pid)
    cri.crictl("rm", survivor)
    cri.crictl("start", created)
    assert cri.state(created) == "CONTAINER_RUNNING"
    assert cri.crictl("ps", "-aq").stdout.split().count(survivor) == 0


def test_a_pod_can_be_stopped_and_removed_after_a_daemon_kill(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("app"))
    pid = cri.container_pid(container_id)
    cri.daemon.kill()
    cri.daemon.start()

    cri.crictl("stopp", pod_id)
    assert not process_alive(pid)
    assert cri.status(container_id)["state"] == "CONTAINER_EXITED"
    assert cri.network.allocations() == []
    cri.crictl("rmp", pod_id)
    assert cri.inventory() == []

