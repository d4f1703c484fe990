"""ListImages: every CRI image, or those an image filter names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2
from cri.image_service.convert import to_cri_image
from errdefs import NotFound

if TYPE_CHECKING:
    from cri.image_service.service import ImageService


def list_images(svc: ImageService, request: api_pb2.ListImagesRequest) -> api_pb2.ListImagesResponse:
    wanted = request.filter.image.image if request.HasField("filter") else ""
    if not wanted:
        images = svc.catalog.all()
    else:
        try:
            images = [svc.catalog.get(wanted)]
        except NotFound:
            images = []
    return api_pb2.ListImagesResponse(images=[to_cri_image(i) for i in sorted(images, key=lambda i: i.id)])
