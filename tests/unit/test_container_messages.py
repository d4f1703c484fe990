"""ListContainers builds each container's message once, while its record and its image's names stay the
same; what it answers must still follow every change."""

from __future__ import annotations

from cri.api.runtime.v1 import api_pb2
from cri.runtime_service.list_containers import ContainerMessages
from runtime.containers import ImageInfo
from runtime.records import ContainerRecord, ContainerState, encode

IMAGE = "sha256:" + "1" * 64


def _record(cid: str, **changes: object) -> ContainerRecord:
    config = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name=f"ctr-{cid}"), labels={"app": cid})
    return ContainerRecord(id=cid, name=f"name-{cid}", sandbox_id="pod", config_b64=encode(config), created_at=1,
                           image_ref="busybox", image_id=IMAGE, image_repo_digest="busybox@sha256:2",
                           snapshot_key=cid, snapshotter="overlayfs", log_path="", bundle=f"/b/{cid}",
                           state=ContainerState.RUNNING).replace(**changes)


def _images(*tags: str) -> dict[str, ImageInfo]:
    return {IMAGE: ImageInfo(IMAGE, "sha256:chain", {}, tags, ("registry/busybox@sha256:3",))}


def test_a_message_follows_its_record_and_its_images_names() -> None:
    messages = ContainerMessages()
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
    messages = ContainerMessages()
    record = _record("a")
    (first,) = messages.build([record], _images(), whole=True)
    (again,) = messages.build([record.replace()], _images(), whole=True)
    assert again == first and again is not first


def test_a_listing_of_one_pod_keeps_the_other_messages() -> None:
    messages = ContainerMessages()
    a, b = _record("a"), _record("b", sandbox_id="other")
    first_a, first_b = messages.build([a, b], _images(), whole=True)
    messages.build([b], _images(), whole=False)
    again_a, again_b = messages.build([a, b], _images(), whole=True)
    assert again_a is first_a and again_b is first_b
    messages.build([b], _images(), whole=True)  # a removed
    (back_a,) = messages.build([a], _images(), whole=True)
    assert back_a is not first_a
