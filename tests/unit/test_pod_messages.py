"""ListPodSandbox builds each pod's message once, while its record stays the same; what it answers must still
follow every change."""

from __future__ import annotations

from cri.api.runtime.v1 import api_pb2
from cri.runtime_service.list_pod_sandbox import PodMessages
from runtime.records import SandboxRecord, SandboxState, encode


def _record(pid: str, **changes: object) -> SandboxRecord:
    config = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name=f"pod-{pid}", uid=pid),
                                      labels={"app": pid})
    return SandboxRecord(id=pid, name=f"name-{pid}", config_b64=encode(config), created_at=1).replace(**changes)


def test_a_message_follows_its_record() -> None:
    messages = PodMessages()
    ready = _record("a")
    (first,) = messages.build([ready])
    assert (first.id, first.metadata.name, first.labels["app"], first.state) == (
        "a", "pod-a", "a", api_pb2.PodSandboxState.SANDBOX_READY)
    (same,) = messages.build([ready])
    assert same is first
    (stopped,) = messages.build([ready.replace(state=SandboxState.NOTREADY)])
    assert stopped.state == api_pb2.PodSandboxState.SANDBOX_NOTREADY


def test_pods_no_longer_listed_are_dropped_and_the_order_is_the_listings() -> None:
    messages = PodMessages()
    a, b = _record("a"), _record("b")
    first_a, _ = messages.build([a, b])
    assert [m.id for m in messages.build([b])] == ["b"]
    (back_a,) = messages.build([a])
    assert back_a == first_a and back_a is not first_a
    assert [m.id for m in messages.build([b, a])] == ["b", "a"]
