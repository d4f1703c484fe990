"""RemoveImage: drop every name of the image; what nothing refers to any more is collected in the background."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import structlog

from cri.api.runtime.v1 import api_pb2
from cri.constants import CRI_NAMESPACE
from errdefs import FailedPrecondition, InvalidArgument, NotFound
from runtime.records import KIND_CONTAINER

if TYPE_CHECKING:
    from cri.image_service.service import ImageService

log = structlog.get_logger(__name__)


def remove_image(svc: ImageService, request: api_pb2.RemoveImageRequest) -> api_pb2.RemoveImageResponse:
    ref = request.image.image
    if not ref:
        raise InvalidArgument("image reference must not be empty")
    try:
        image = svc.catalog.get(ref)
    except NotFound:
        # The CRI spec: "This call is idempotent, and must not return an error if the image has already
        # been removed."
        return api_pb2.RemoveImageResponse()
    with svc.db.transaction() as tx:
        users = [doc["id"] for doc in tx.list_objects(CRI_NAMESPACE, KIND_CONTAINER)
                 if image.id in doc.get("image_volumes", ())]
        if users:
            # Its view is mounted in those containers: the image must outlive them.
            raise FailedPrecondition(f"image {image.id} is in use as a volume by container {users[0]}"
                                     + (f" and {len(users) - 1} more" if len(users) > 1 else ""))
        for name in image.names:
            with contextlib.suppress(NotFound):  # removed concurrently
                tx.delete_image(CRI_NAMESPACE, name)
    # As containerd: blobs and snapshots go in a collection after the answer, which for a large image takes
    # seconds (longer than crictl's timeout).
    svc.gc.schedule()
    log.info("image.removed", image=image.id, names=list(image.names))
    return api_pb2.RemoveImageResponse()
