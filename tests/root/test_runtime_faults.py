"""Failures and races injected between two steps of a real RPC: nothing may be left running or come back."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cri.api.runtime.v1 import api_pb2
from errdefs import InvalidArgument
from runtime.lifecycle import Lifecycle
from runtime.oci import OCIRuntime
from runtime.pods import PodManager
from tests.support.images import PushedImage
from tests.support.node import Node, processes_naming, start_node
from tests.support.procs import wait_until
from tests.support.tools import require_root

SLEEP = ["sh", "-c", "trap 'exit 0' TERM; while true; do busybox sleep 1000 & wait $!; done"]


@pytest.fixture
def node(tmp_path: Path, test_images: dict[str, PushedImage]) -> Iterator[Node]:
    require_root("conmon, runc and overlay mounts")
    started = start_node(tmp_path)
    try:
        started.pull(test_images["oci"].ref)
        yield started
    finally:
        started.close()


def test_a_failure_after_runc_create_leaves_no_process_mount_or_record(
    node: Node, test_images: dict[str, PushedImage], monkeypatch: pytest.MonkeyPatch
) -> None:
    pod_id = node.run_pod()
    created: list[str] = []
    real_transition = Lifecycle.transition

    def recording_the_pid_fails(self: Lifecycle[Any], obj_id: str, allowed_from: Any, to: str,
                                **fields: Any) -> Any:
        if fields.get("pid"):  # conmon and runc init exist by now
            created.append(obj_id)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_transition(self, obj_id, allowed_from, to, **fields)

    monkeypatch.setattr(Lifecycle, "transition", recording_the_pid_fails)
    with pytest.raises(OSError):
        node.create(pod_id, test_images["oci"].ref, SLEEP)
    (container_id,) = created
    assert processes_naming(container_id) == [], "conmon or runc init of the failed create still runs"
    assert node.runtime.containers.all() == []
    assert not (node.state / "runc" / container_id).exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert container_id not in mounts


def test_a_pod_removed_while_it_is_being_stopped_does_not_come_back(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    pod_id = node.run_pod()
    looked_up, removed = threading.Event(), threading.Event()
    real_get = PodManager.get

    def get_then_let_the_remove_run(self: PodManager, id_or_prefix: str) -> Any:
        record = real_get(self, id_or_prefix)
        if threading.current_thread().name == "stopper":
            looked_up.set()
            assert removed.wait(30)
        return record

    monkeypatch.setattr(PodManager, "get", get_then_let_the_remove_run)
    errors: list[BaseException] = []

    def stop() -> None:
        try:
            node.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), None)
        except BaseException as exc:  # reported below
            errors.append(exc)

    stopper = threading.Thread(target=stop, name="stopper")
    stopper.start()
    assert looked_up.wait(30)
    node.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), None)
    removed.set()
    stopper.join(60)
    assert errors == []
    listed = node.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), None).items
    assert [p.id for p in listed] == [], "the removed pod came back"


def test_a_container_that_exits_as_it_starts_is_exited_once_and_never_running_after(
    node: Node, test_images: dict[str, PushedImage], monkeypatch: pytest.MonkeyPatch
) -> None:
    pod_id = node.run_pod()
    container_id = node.create(pod_id, test_images["oci"].ref, ["true"])
    events: list[str] = []
    subscribed = threading.Event()
    alive = threading.Event()
    alive.set()

    def collect() -> None:
        stream = node.runtime.events.subscribe(alive, poll=0.05)
        subscribed.set()
        events.extend(e.kind for e in stream if e.container_id == container_id)

    collector = threading.Thread(target=collect)
    collector.start()
    assert subscribed.wait(10)
    real_start = OCIRuntime.start

    def start_and_let_the_exit_be_seen(self: OCIRuntime, cid: str) -> None:
        real_start(self, cid)
        wait_until(lambda: self.exit_status(cid) is not None, timeout=30, what="the container to exit")
        node.runtime.containers.all()  # a query in between, as kubelet's relisting does
        wait_until(lambda: _stored_state(node, cid) == "exited", timeout=10, what="the exit to be recorded")

    monkeypatch.setattr(OCIRuntime, "start", start_and_let_the_exit_be_seen)
    node.runtime.StartContainer(api_pb2.StartContainerRequest(container_id=container_id), None)
    assert _stored_state(node, container_id) == "exited", "StartContainer wrote RUNNING over EXITED"
    status = node.runtime.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=container_id), None).status
    assert status.state == api_pb2.ContainerState.CONTAINER_EXITED
    assert status.started_at <= status.finished_at
    wait_until(lambda: len(events) >= 2, timeout=10, what="started and stopped events")
    alive.clear()
    collector.join(10)
    assert events == ["started", "stopped"]


def _stored_state(node: Node, container_id: str) -> str:
    with node.images.db.transaction() as tx:
        return str(tx.get_object("k8s.io", "container", container_id)["state"])


def test_an_ambiguous_id_prefix_is_an_error_that_removes_nothing(
    node: Node, test_images: dict[str, PushedImage]
) -> None:
    pod_id = node.run_pod()
    by_first: dict[str, list[str]] = {}
    while not any(len(ids) > 1 for ids in by_first.values()):  # 17 at most: 16 hex digits
        container_id = node.create(pod_id, test_images["oci"].ref, SLEEP)
        by_first.setdefault(container_id[0], []).append(container_id)
    (prefix,) = [first for first, ids in by_first.items() if len(ids) > 1]
    everyone = sorted(c for ids in by_first.values() for c in ids)
    with pytest.raises(InvalidArgument, match="ambiguous"):
        node.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=prefix), None)
    listed = node.runtime.ListContainers(api_pb2.ListContainersRequest(), None).containers
    assert sorted(c.id for c in listed) == everyone


@pytest.mark.parametrize("log_path", ["x" * 300, "/".join(["y" * 200] * 25)], ids=["NAME_MAX", "PATH_MAX"])
def test_a_log_path_past_the_kernels_limits_is_invalid_argument_and_leaves_nothing(
    node: Node, test_images: dict[str, PushedImage], log_path: str
) -> None:
    pod_id = node.run_pod()
    request = node.container_request(pod_id, test_images["oci"].ref, SLEEP)
    request.config.log_path = log_path
    with pytest.raises(InvalidArgument, match="longer than"):
        node.runtime.CreateContainer(request, None)
    assert node.runtime.containers.all() == []
    assert list((node.state / "runc").glob("*")) == []
