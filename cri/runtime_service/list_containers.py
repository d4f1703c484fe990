"""ListContainers, StreamContainers: containers filtered by id (or prefix), state, pod and labels.

kubelet lists every container each second (its pod lifecycle relist). Each container's CRI message is built
once and kept while its record stays the same object (the record parsed from an unchanged document is handed
out again, ``runtime.parsed``) and its image keeps its names; a node of a thousand containers spent most of a
listing building messages that had not changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from cri.api.runtime.v1 import api_pb2
from cri.list_stream import stream_listing
from cri.runtime_service.container_status import STATES, image_names
from runtime.containers import ImageInfo
from runtime.records import ContainerRecord

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def list_containers(svc: RuntimeService, request: api_pb2.ListContainersRequest) -> api_pb2.ListContainersResponse:
    return api_pb2.ListContainersResponse(containers=list(containers(svc, request.filter)))


def stream_containers(svc: RuntimeService, request: api_pb2.StreamContainersRequest,
                      context: Any) -> Iterator[api_pb2.StreamContainersResponse]:
    return stream_listing(containers(svc, request.filter), context,
                          lambda chunk: api_pb2.StreamContainersResponse(containers=chunk))


def containers(svc: RuntimeService, wanted: api_pb2.ContainerFilter) -> Iterator[api_pb2.Container]:
    records = svc.containers.all(wanted.pod_sandbox_id)
    built = svc.container_messages.build(records, svc.images.by_id(), whole=not wanted.pod_sandbox_id)
    for container in built:
        if wanted.id and not container.id.startswith(wanted.id):
            continue
        if wanted.HasField("state") and container.state != wanted.state.state:
            continue
        if any(container.labels.get(k) != v for k, v in wanted.label_selector.items()):
            continue
        yield container


class ContainerMessages:
    """The CRI Container of each record, as last built. Messages handed out are shared: callers copy them into
    their answers (as a repeated field does) and never change them."""

    def __init__(self) -> None:
        self._built: dict[str, tuple[ContainerRecord, tuple[str, str], api_pb2.Container]] = {}

    def build(self, records: list[ContainerRecord], images: Mapping[str, ImageInfo], *,
              whole: bool) -> list[api_pb2.Container]:
        """The messages of ``records``; ``whole``: they are every container, and those of others are dropped."""
        known = self._built
        kept = {} if whole else known
        messages = []
        for record in records:
            names = image_names(images, record)
            entry = known.get(record.id)
            if entry is None or entry[0] is not record or entry[1] != names:
                entry = (record, names, _message(record, names))
            kept[record.id] = entry
            messages.append(entry[2])
        if whole:
            self._built = kept  # one assignment: a listing running beside this one keeps what it started with
        return messages


def _message(record: ContainerRecord, names: tuple[str, str]) -> api_pb2.Container:
    config = record.config
    image_name, image_ref = names
    return api_pb2.Container(
        id=record.id, pod_sandbox_id=record.sandbox_id, metadata=config.metadata,
        image=api_pb2.ImageSpec(image=image_name), image_ref=image_ref, image_id=record.image_id,
        state=STATES[record.state], created_at=record.created_at, labels=config.labels,
        annotations=config.annotations)
