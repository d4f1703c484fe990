"""ContainerStatus: state, times, exit code and reason, image, mounts, log path, resources and user of one
container."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2
from runtime.containers import ImageInfo
from runtime.records import ContainerRecord, ContainerState

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService

STATES = {
    ContainerState.CREATED: api_pb2.ContainerState.CONTAINER_CREATED,
    ContainerState.RUNNING: api_pb2.ContainerState.CONTAINER_RUNNING,
    ContainerState.EXITED: api_pb2.ContainerState.CONTAINER_EXITED,
    ContainerState.UNKNOWN: api_pb2.ContainerState.CONTAINER_UNKNOWN,
}


def container_status(svc: RuntimeService,
                     request: api_pb2.ContainerStatusRequest) -> api_pb2.ContainerStatusResponse:
    record = svc.containers.get(request.container_id)
    response = api_pb2.ContainerStatusResponse(status=to_status(svc, record))
    if request.verbose:
        response.info["info"] = json.dumps({"sandboxID": record.sandbox_id, "pid": record.pid,
                                            "snapshotKey": record.snapshot_key, "snapshotter": record.snapshotter,
                                            "bundle": record.bundle})
    return response


def to_status(svc: RuntimeService, record: ContainerRecord) -> api_pb2.ContainerStatus:
    config = record.config
    image_name, image_ref = image_names(svc.images.by_id(), record)
    status = api_pb2.ContainerStatus(
        id=record.id,
        metadata=config.metadata,
        state=STATES[record.state],
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        exit_code=record.exit_code,
        image=api_pb2.ImageSpec(image=image_name),
        image_ref=image_ref,
        image_id=record.image_id,
        reason=record.reason,
        message=record.message,
        labels=config.labels,
        annotations=config.annotations,
        mounts=config.mounts,
        log_path=record.log_path,
    )
    if (resources := record.resources) is not None:
        status.resources.linux.CopyFrom(resources)
        status.resources.linux.SetInParent()  # present even when nothing is limited, as containerd's
    if (user := record.user) is not None:
        status.user.linux.CopyFrom(api_pb2.LinuxContainerUser(
            uid=user.uid, gid=user.gid, supplemental_groups=list(user.supplemental_groups)))
    return status


def image_names(images: Mapping[str, ImageInfo], record: ContainerRecord) -> tuple[str, str]:
    """(image, image_ref) as containerd reports them: the first repo tag and repo digest, if still known."""
    image = images.get(record.image_id)
    if image is None:  # removed since: the record still names it
        return record.image_ref, record.image_repo_digest
    name = image.repo_tags[0] if image.repo_tags else record.image_ref
    return name, image.repo_digests[0] if image.repo_digests else record.image_id
