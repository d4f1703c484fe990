"""The CRI ImageService."""

from cri.image_service.service import ImageService

__all__ = ["ImageService"]
