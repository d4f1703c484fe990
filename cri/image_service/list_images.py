"""ListImages, StreamImages: every CRI image, or those an image filter names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cri.api.runtime.v1 import api_pb2
from cri.image_service.convert import to_cri_image
from cri.list_stream import stream_listing
from errdefs import NotFound

if TYPE_CHECKING:
    from cri.image_service.service import ImageService


def list_images(svc: ImageService, request: api_pb2.ListImagesRequest) -> api_pb2.ListImagesResponse:
    return api_pb2.ListImagesResponse(images=list(images(svc, request.filter)))


def stream_images(svc: ImageService, request: api_pb2.StreamImagesRequest,
                  context: Any) -> Iterator[api_pb2.StreamImagesResponse]:
    return stream_listing(images(svc, request.filter), context,
                          lambda chunk: api_pb2.StreamImagesResponse(images=chunk))


def images(svc: ImageService, wanted: api_pb2.ImageFilter) -> Iterator[api_pb2.Image]:
    if not wanted.image.image:
        found = svc.catalog.all()
    else:
        try:
            found = [svc.catalog.get(wanted.image.image)]
        except NotFound:
            found = []
    for image in sorted(found, key=lambda i: i.id):
        yield to_cri_image(image)
