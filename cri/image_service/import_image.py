"""Image import over the daemon's socket: ``crishim image import`` streams an archive, the daemon stores it.

The call is crishim's own, beside the CRI and containerd's API: ``/crishim.v1.Images/Import``, client
streaming, whose requests are the archive's bytes as they come (raw, no protobuf) and whose answer is a JSON
list of the images made. The import's options travel as JSON in the ``crishim-import-options`` metadata key,
the namespace in ``containerd-namespace`` as for ctr (k8s.io when none is sent). The work itself is
``store.importer``'s; a cancelled call stops reading and leaves no image.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc

from cri.constants import CRI_NAMESPACE
from cri.containerd.namespace import namespace_from, validate_identifier
from cri.image_service.catalog import record_cri_names
from errdefs import InvalidArgument
from store.cancel import Cancellation
from store.importer import ImportedImage, ImportOptions
from store.metadata import Tx
from store.platforms import Platform

if TYPE_CHECKING:
    from cri.image_service.service import ImageService

__all__ = ["METHOD", "OPTIONS_KEY", "decode_options", "encode_options", "register"]

SERVICE = "crishim.v1.Images"
METHOD = f"/{SERVICE}/Import"
OPTIONS_KEY = "crishim-import-options"


def register(server: Any, svc: ImageService) -> None:
    handler = grpc.stream_unary_rpc_method_handler(lambda chunks, context: import_image(svc, chunks, context))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Import": handler}),))


def import_image(svc: ImageService, chunks: Iterator[bytes], context: Any) -> bytes:
    metadata = list(context.invocation_metadata())
    options = decode_options(dict(metadata).get(OPTIONS_KEY, "{}"))
    namespace = namespace_from(metadata) or CRI_NAMESPACE
    validate_identifier(namespace, "namespace")
    cancel = Cancellation()
    context.add_callback(lambda: cancel.cancel("the import call was cancelled"))
    try:
        with svc.gc.pulling():
            archive = io.BufferedReader(_ChunkReader(chunks, cancel), 1 << 20)
            images = svc.importer.import_archive(
                namespace, archive, options, lambda target: svc.unpacker.unpack(target, cancel),
                record=lambda tx, made: _cri_names(svc, tx, made) if namespace == CRI_NAMESPACE else None)
    finally:
        # The archive's blobs no image refers to, or all of them after a failure.
        svc.gc.collect()
    return json.dumps([_image_json(image) for image in images]).encode()


def _cri_names(svc: ImageService, tx: Tx, images: list[ImportedImage]) -> None:
    """What containerd's CRI does on seeing images appear in its namespace: each gets an id record
    (``sha256:<config>``) and, like it, the label marking it managed."""
    for image in images:
        config = svc.importer.config_for(image.target)
        if config is None:
            continue  # nothing in it for this platform: containerd's CRI cannot take it either
        record_cri_names(tx, CRI_NAMESPACE, tx.get_image(CRI_NAMESPACE, image.name), str(config.digest))


def encode_options(options: ImportOptions) -> str:
    doc = dataclasses.asdict(options)
    doc["platform"] = str(options.platform) if options.platform else ""
    return json.dumps(doc)


def decode_options(text: str) -> ImportOptions:
    try:
        doc = json.loads(text)
        platform = doc.pop("platform", "")
        return ImportOptions(**doc, platform=Platform.parse(platform) if platform else None)
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidArgument(f"{OPTIONS_KEY}: malformed: {exc}") from exc


def _image_json(image: ImportedImage) -> dict[str, Any]:
    return {"name": image.name, "digest": str(image.target.digest), "mediaType": image.target.media_type,
            "unpacked": image.unpacked}


class _ChunkReader(io.RawIOBase):
    """The request stream as a file the archive reader reads in order."""

    def __init__(self, chunks: Iterator[bytes], cancel: Cancellation) -> None:
        self._chunks = chunks
        self._cancel = cancel
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._cancel.check()
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
