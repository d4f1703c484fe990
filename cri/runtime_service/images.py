"""The runtime's view of the CRI image catalog: what containers need of their images."""

from __future__ import annotations

from cri.image_service.catalog import CRIImage, ImageCatalog
from errdefs import NotFound
from runtime.containers import ImageInfo

__all__ = ["RuntimeImages"]


class RuntimeImages:
    def __init__(self, catalog: ImageCatalog) -> None:
        self._catalog = catalog

    def get(self, ref: str) -> ImageInfo:
        try:
            return _info(self._catalog.get(ref))
        except NotFound:
            raise NotFound(f"image {ref!r} not found: pull it first") from None

    def by_id(self) -> dict[str, ImageInfo]:
        """Every image by id, for answers that name the images of many containers."""
        return {image.id: _info(image) for image in self._catalog.all()}


def _info(image: CRIImage) -> ImageInfo:
    return ImageInfo(image.id, image.chain_id, image.config.raw, image.repo_tags, image.repo_digests)
