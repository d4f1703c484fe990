"""PullImage: fetch an image and name it by tag, repo digest and id, as containerd's CRI does."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from cri.api.runtime.v1 import api_pb2
from cri.constants import CRI_NAMESPACE
from cri.image_service.catalog import image_record_labels
from store.cancel import Cancellation
from store.metadata import ImageRecord, Tx
from store.pull import PulledImage
from store.reference import Reference
from store.remote import Credentials

if TYPE_CHECKING:
    from cri.image_service.service import ImageService

log = structlog.get_logger(__name__)


def pull_image(svc: ImageService, request: api_pb2.PullImageRequest,
               cancel: Cancellation | None = None) -> api_pb2.PullImageResponse:
    """Pull on the calling thread; ``cancel`` (the RPC's) stops the download and the unpack."""
    ref = Reference.parse(request.image.image)
    credentials = _credentials(svc, request, ref)
    cancel = cancel or Cancellation()
    try:
        with svc.metrics.pull(), svc.gc.pulling():
            image = svc.puller.pull(CRI_NAMESPACE, ref, credentials, svc.unpacker.start, record=_record_names,
                                    cancel=cancel)
    except BaseException:
        # Blobs of a failed pull are garbage once its lease is gone; only resumable ingests stay.
        svc.gc.collect()
        raise
    log.info("image.pulled", ref=str(ref), image=str(image.config.digest), target=str(image.target.digest))
    return api_pb2.PullImageResponse(image_ref=str(image.config.digest))


def pull_key(svc: ImageService, request: api_pb2.PullImageRequest) -> tuple[str, Credentials | None]:
    """Pulls with the same key are one pull: the same image, fetched with the same credentials."""
    ref = Reference.parse(request.image.image)
    return str(ref), _credentials(svc, request, ref)


def image_names(image: PulledImage) -> list[str]:
    ref = image.reference
    names = {str(ref), str(image.config.digest), str(ref.with_digest(image.target.digest))}
    if ref.tag:
        names.add(f"{ref.name}:{ref.tag}")
    return sorted(names)


def _record_names(tx: Tx, image: PulledImage) -> None:
    for name in image_names(image):
        tx.put_image(CRI_NAMESPACE, ImageRecord(name, image.target, image_record_labels()))


def _for_registry(server_address: str, ref: Reference) -> bool:
    """As containerd: credentials naming another server are not sent to this one."""
    if not server_address:
        return True
    host = server_address.split("://", 1)[-1].split("/", 1)[0]
    return host == ref.domain or (ref.domain == "docker.io" and host in ("index.docker.io", "registry-1.docker.io"))


def _credentials(svc: ImageService, request: api_pb2.PullImageRequest, ref: Reference) -> Credentials | None:
    if request.HasField("auth") and _for_registry(request.auth.server_address, ref):
        auth = request.auth
        given = Credentials.from_cri(auth.username, auth.password, auth.auth, auth.identity_token)
        if given is not None:
            return given
    configured = svc.auths.get(ref.domain)
    if configured is None:
        return None
    return Credentials.from_cri(configured.username, configured.password, configured.auth,
                                configured.identity_token)
