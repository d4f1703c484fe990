"""ImageStatus: one image by id or reference; an unknown image is an empty answer, not an error."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2
from cri.image_service.convert import to_cri_image, verbose_info
from errdefs import InvalidArgument, NotFound

if TYPE_CHECKING:
    from cri.image_service.service import ImageService


def image_status(svc: ImageService, request: api_pb2.ImageStatusRequest) -> api_pb2.ImageStatusResponse:
    ref = request.image.image
    if not ref:
        raise InvalidArgument("image reference must not be empty")
    try:
        image = svc.catalog.get(ref)
    except NotFound:
        # The CRI spec: "If the image isn't present, returns a response with ImageStatusResponse.Image set to nil."
        return api_pb2.ImageStatusResponse()
    info = verbose_info(image) if request.verbose else {}
    return api_pb2.ImageStatusResponse(image=to_cri_image(image), info=info)
