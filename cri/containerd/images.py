"""containerd.services.images.v1 over the metadata database (``ctr images ...``).

Images are per namespace. List takes containerd's filters on ``name``,
``target.digest``, ``target.mediatype`` and ``labels``. Delete runs garbage
collection before it answers, whether or not the client asked for ``sync``:
the blobs and snapshots only that image held are gone once ``ctr images rm``
returns. Target annotations are kept as given (ctr import records the
image's name in the archive there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from google.protobuf import empty_pb2

from cri.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from cri.api.containerd.types import descriptor_pb2
from cri.constants import CRI_NAMESPACE
from cri.containerd.convert import timestamp, updated_labels, validate_labels
from cri.containerd.namespace import required_namespace
from cri.image_service.catalog import ImageCatalog, record_cri_names
from errdefs import InvalidArgument, NotFound
from snapshotters.filters import matches_fields
from store.descriptor import Descriptor
from store.digest import Digest
from store.metadata import ImageRecord, MetadataDB, Tx

__all__ = ["ImagesService"]


class ImagesService(images_pb2_grpc.ImagesServicer):
    def __init__(self, db: MetadataDB, collect_garbage: Callable[[], object], catalog: ImageCatalog) -> None:
        self._db = db
        self._collect_garbage = collect_garbage
        self._catalog = catalog

    def Get(self, request: Any, context: Any) -> images_pb2.GetImageResponse:
        namespace = required_namespace(context)
        return images_pb2.GetImageResponse(image=to_proto(self._db.get_image(namespace, request.name)))

    def List(self, request: Any, context: Any) -> images_pb2.ListImagesResponse:
        namespace = required_namespace(context)
        filters = list(request.filters)
        images = [image for image in self._db.list_images(namespace) if matches_fields(_fields(image), filters)]
        return images_pb2.ListImagesResponse(images=[to_proto(image) for image in images])

    def Create(self, request: Any, context: Any) -> images_pb2.CreateImageResponse:
        namespace = required_namespace(context)
        image = _validated(from_proto(request.image))
        with self._db.transaction() as tx:
            created = tx.create_image(namespace, image)
            self._manage(tx, namespace, created)
            return images_pb2.CreateImageResponse(image=to_proto(created))

    def Update(self, request: Any, context: Any) -> images_pb2.UpdateImageResponse:
        namespace = required_namespace(context)
        given = from_proto(request.image)
        paths = list(request.update_mask.paths)
        with self._db.transaction() as tx:
            current = tx.get_image(namespace, given.name)
            updated = tx.put_image(namespace, _validated(_updated(current, given, paths)))
            self._manage(tx, namespace, updated)
            return images_pb2.UpdateImageResponse(image=to_proto(updated))

    def _manage(self, tx: Tx, namespace: str, image: ImageRecord) -> None:
        """The CRI's names for an image created in its namespace (``ctr -n k8s.io images import``)."""
        if namespace != CRI_NAMESPACE:
            return
        try:
            image_id = str(self._catalog.image_id(image.target))
        except (NotFound, InvalidArgument):
            return  # not an image the CRI can run here: containerd's CRI leaves it alone too
        record_cri_names(tx, namespace, image, image_id)

    def Delete(self, request: Any, context: Any) -> empty_pb2.Empty:
        namespace = required_namespace(context)
        with self._db.transaction() as tx:
            tx.delete_image(namespace, request.name)
        self._collect_garbage()
        return empty_pb2.Empty()


def to_proto(image: ImageRecord) -> images_pb2.Image:
    target = image.target
    return images_pb2.Image(
        name=image.name,
        labels=image.labels,
        target=descriptor_pb2.Descriptor(media_type=target.media_type, digest=str(target.digest), size=target.size,
                                         annotations=target.annotations),
        created_at=timestamp(image.created_at),
        updated_at=timestamp(image.updated_at),
    )


def from_proto(image: images_pb2.Image) -> ImageRecord:
    if not image.name:
        raise InvalidArgument("Image.Name required")
    target = image.target
    descriptor = Descriptor(target.media_type, _digest(target.digest), target.size,
                            annotations=dict(target.annotations))
    return ImageRecord(image.name, descriptor, dict(image.labels))


def _digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except InvalidArgument:
        raise InvalidArgument(f"Target.Digest {text!r} invalid") from None


def _updated(current: ImageRecord, given: ImageRecord, paths: list[str]) -> ImageRecord:
    if not paths:
        return given
    label_paths = [p for p in paths if p == "labels" or p.startswith("labels.")]
    annotation_paths = [p.replace("annotations", "labels", 1) for p in paths
                        if p == "annotations" or p.startswith("annotations.")]
    labels = updated_labels(current.labels, given.labels, label_paths, f"image {given.name!r}")
    target = current.target
    for path in paths:
        if path == "target":
            target = given.target
        elif path not in label_paths and path.split(".", 1)[0] != "annotations":
            raise InvalidArgument(f"cannot update {path!r} field on image {given.name!r}")
    if annotation_paths:
        annotations = updated_labels(target.annotations, given.target.annotations, annotation_paths,
                                     f"image {given.name!r}")
        target = dataclasses.replace(target, annotations=annotations)
    return ImageRecord(given.name, target, labels)


def _validated(image: ImageRecord) -> ImageRecord:
    validate_labels(image.labels, "image")
    if image.target.size <= 0:
        raise InvalidArgument("Target.Size must be greater than zero")
    if not image.target.media_type:
        raise InvalidArgument("Target.MediaType must be set")
    return ImageRecord(image.name, image.target, {k: v for k, v in image.labels.items() if v})


def _fields(image: ImageRecord) -> dict[str, object]:
    target = {"digest": str(image.target.digest), "mediatype": image.target.media_type}
    fields: dict[str, object] = {"target": target}
    if image.name:
        fields["name"] = image.name
    if image.labels:
        fields["labels"] = image.labels
    return fields
