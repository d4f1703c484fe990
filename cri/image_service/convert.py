"""CRI messages built from catalog images, as containerd's CRI fills them."""

from __future__ import annotations

import json
import re

from cri.api.runtime.v1 import api_pb2
from cri.image_service.catalog import CRIImage

__all__ = ["to_cri_image", "user_of", "verbose_info"]

# Go's strconv.ParseInt(s, 10, 64): an optional sign and ASCII digits, within int64. Python's int() also
# takes "²", "١٢٣", "1_000" and spaces, and protobuf's int64 rejects what is out of range.
_INT64 = re.compile(r"[+-]?[0-9]+", re.ASCII)
_INT64_RANGE = range(-(2**63), 2**63)


def to_cri_image(image: CRIImage) -> api_pb2.Image:
    cri = api_pb2.Image(
        id=image.id,
        repo_tags=list(image.repo_tags),
        repo_digests=list(image.repo_digests),
        size=image.size,
    )
    uid, username = user_of(image.config.user)
    if uid is not None:
        cri.uid.value = uid
    cri.username = username
    return cri


def user_of(user: str) -> tuple[int | None, str]:
    """``1000`` → uid 1000; ``nginx:nginx`` → username nginx; the group part is ignored.

    As containerd's CRI: anything that does not parse as a 64-bit decimal is a username, so no image config
    can make the image unlistable.
    """
    name = user.partition(":")[0]
    if not name:
        return None, ""
    if _INT64.fullmatch(name) and int(name) in _INT64_RANGE:
        return int(name), ""
    return None, name


def verbose_info(image: CRIImage) -> dict[str, str]:
    """``ImageStatus(verbose)`` info: the chain ID and the whole image config."""
    return {"info": json.dumps({"chainID": image.chain_id, "imageSpec": image.config.raw})}
