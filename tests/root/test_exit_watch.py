"""Exits are noticed by event: the watcher sleeps while nothing exits, however many containers run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri.api.runtime.v1 import api_pb2
from tests.support.images import PushedImage
from tests.support.node import Node, start_node
from tests.support.procs import wait_until
from tests.support.tools import require_root

SLEEP = ["sh", "-c", "trap 'exit 0' TERM; while true; do busybox sleep 1000 & wait $!; done"]
CONTAINERS = 8


@pytest.fixture
def node(tmp_path: Path, test_images: dict[str, PushedImage]) -> Iterator[Node]:
    require_root("conmon, runc and overlay mounts")
    started = start_node(tmp_path)
    try:
        started.pull(test_images["oci"].ref)
        yield started
    finally:
        started.close()


def _wakeups(native_id: int) -> int:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/self/task/{native_id}/status").read_text().splitlines())
    return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])


def test_the_exit_watcher_sleeps_while_containers_run_and_wakes_for_an_exit(
    node: Node, test_images: dict[str, PushedImage]
) -> None:
    pod_id = node.run_pod()
    ids = [node.create(pod_id, test_images["oci"].ref, SLEEP) for _ in range(CONTAINERS)]
    for container_id in ids:
        node.runtime.StartContainer(api_pb2.StartContainerRequest(container_id=container_id), None)
    (watcher,) = [t for t in threading.enumerate() if t.name == "exit-watcher"]
    assert watcher.native_id is not None
    before = _wakeups(watcher.native_id)
    time.sleep(3)
    idle = _wakeups(watcher.native_id) - before
    assert idle == 0, f"the exit watcher woke {idle} times in 3 s with nothing exiting"
    # A container killed behind crishim's back is noticed without any call asking about it.
    victim = ids[0]
    node.runtime.oci.kill(victim, 9, all=True)
    wait_until(lambda: _stored(node, victim)["state"] == "exited", timeout=10, what="the exit to be recorded")
    assert _stored(node, victim)["exit_code"] == 137
    assert all(_stored(node, c)["state"] == "running" for c in ids[1:])


def _stored(node: Node, container_id: str) -> dict[str, object]:
    with node.images.db.transaction() as tx:
        return tx.get_object("k8s.io", "container", container_id)
