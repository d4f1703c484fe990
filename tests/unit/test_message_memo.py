"""ListContainers and ListPodSandbox build each message once, while its record (and a container's image
names) stay the same; what they answer must still follow every change."""

from __future__ import annotations

from collections.abc import Callable

from cri.api.runtime.v1 import api_pb2
from cri.runtime_service.container_status import image_names
from cri.runtime_service.list_containers import container_message
from cri.runtime_service.list_pod_sandbox import pod_message
from cri.runtime_service.message_memo import MessageMemo
from runtime.containers import ImageInfo
from runtime.records import ContainerRecord, ContainerState, SandboxRecord, SandboxState, encode

IMAGE = "sha256:" + "1" * 64


def _record(cid: str, **changes: object) -> ContainerRecord:
    config = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name=f"ctr-{cid}"), labels={"app": cid})
    return ContainerRecord(id=cid, name=f"name-{cid}", sandbox_id="pod", config_b64=encode(config), created_at=1,
                           image_ref="busybox", image_id=IMAGE, image_repo_digest="busybox@sha256:2",
                           snapshot_key=cid, snapshotter="overlayfs", log_path="", bundle=f"/b/{cid}",
                           state=ContainerState.RUNNING).replace(**changes)


def _images(*tags: str) -> Callable[[ContainerRecord], tuple[str, str]]:
    """The key ListContainers gives: the names of the container's image."""
    images = {IMAGE: ImageInfo(IMAGE, "sha256:chain", {}, tags, ("registry/busybox@sha256:3",))}
    return lambda record: image_names(images, record)


def _memo() -> MessageMemo[ContainerRecord, tuple[str, str], api_pb2.Container]:
    return MessageMemo(container_message)


def test_a_message_follows_its_record_and_its_images_names() -> None:
    messages = _memo()
    record = _record("a")
    (first,) = messages.build([record], _images("registry/busybox:1"), whole=True)
    assert (first.id, first.metadata.name, first.labels["app"], first.image.image, first.state) == (
        "a", "ctr-a", "a", "registry/busybox:1", api_pb2.ContainerState.CONTAINER_RUNNING)
    (same,) = messages.build([record], _images("registry/busybox:1"), whole=True)
    assert same is first
    (retagged,) = messages.build([record], _images("registry/busybox:2"), whole=True)
    assert retagged.image.image == "registry/busybox:2"
    (exited,) = messages.build([record.replace(state=ContainerState.EXITED)], _images("registry/busybox:2"),
                               whole=True)
    assert exited.state == api_pb2.ContainerState.CONTAINER_EXITED


def test_an_equal_record_parsed_again_is_built_again() -> None:
    # Records are reused by identity (runtime.parsed); an equal copy is another version of the document.
    messages = _memo()
    record = _record("a")
    (first,) = messages.build([record], _images(), whole=True)
    (again,) = messages.build([record.replace()], _images(), whole=True)
    assert again == first and again is not first


def test_a_listing_of_one_pod_keeps_the_other_messages() -> None:
    messages = _memo()
    a, b = _record("a"), _record("b", sandbox_id="other")
    first_a, first_b = messages.build([a, b], _images(), whole=True)
    messages.build([b], _images(), whole=False)
    again_a, again_b = messages.build([a, b], _images(), whole=True)
    assert again_a is first_a and again_b is first_b
    messages.build([b], _images(), whole=True)  # a removed
    (back_a,) = messages.build([a], _images(), whole=True)
    assert back_a is not first_a


def _no_key(_: SandboxRecord) -> None:  # a pod's message is built from its record alone
    return None


def _pod(pid: str, **changes: object) -> SandboxRecord:
    config = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name=f"pod-{pid}", uid=pid),
                                      labels={"app": pid})
    return SandboxRecord(id=pid, name=f"name-{pid}", config_b64=encode(config), created_at=1).replace(**changes)


def test_a_message_follows_its_pod() -> None:
    messages = MessageMemo(pod_message)
    ready = _pod("a")
    (first,) = messages.build([ready], _no_key)
    assert (first.id, first.metadata.name, first.labels["app"], first.state) == (
        "a", "pod-a", "a", api_pb2.PodSandboxState.SANDBOX_READY)
    (same,) = messages.build([ready], _no_key)
    assert same is first
    (stopped,) = messages.build([ready.replace(state=SandboxState.NOTREADY)], _no_key)
    assert stopped.state == api_pb2.PodSandboxState.SANDBOX_NOTREADY


def test_pods_no_longer_listed_are_dropped_and_the_order_is_the_listings() -> None:
    messages = MessageMemo(pod_message)
    a, b = _pod("a"), _pod("b")
    first_a, _ = messages.build([a, b], _no_key)
    assert [m.id for m in messages.build([b], _no_key)] == ["b"]
    (back_a,) = messages.build([a], _no_key)
    assert back_a == first_a and back_a is not first_a
    assert [m.id for m in messages.build([b, a], _no_key)] == ["b", "a"]
