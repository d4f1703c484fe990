"""Failures and races injected between two steps of a real RPC: nothing may be left running or come back."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.containers import ContainerManager
from runtime.records import ContainerRecord
from tests.support.images import PushedImage
from tests.support.node import Node, processes_naming, start_node
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
    real_save = ContainerManager._save

    def save_fails_once_created(self: ContainerManager, record: ContainerRecord) -> None:
        if record.pid:  # conmon and runc init exist by now
            created.append(record.id)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(self, record)

    monkeypatch.setattr(ContainerManager, "_save", save_fails_once_created)
    with pytest.raises(OSError):
        node.create(pod_id, test_images["oci"].ref, SLEEP)
    (container_id,) = created
    assert processes_naming(container_id) == [], "conmon or runc init of the failed create still runs"
    assert node.runtime.containers.all() == []
    assert not (node.state / "runc" / container_id).exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert container_id not in mounts
