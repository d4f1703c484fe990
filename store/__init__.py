"""containerd-style image storage: content store, metadata, garbage collection and registry pulls."""

from store.content import ContentStore
from store.digest import Digest
from store.metadata import MetadataDB
from store.pull import PulledImage, Puller
from store.reference import Reference

__all__ = ["ContentStore", "Digest", "MetadataDB", "PulledImage", "Puller", "Reference"]
