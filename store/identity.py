"""Layer identities: chain IDs, as the OCI image spec defines them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from errdefs import InvalidArgument
from store.digest import Digest

__all__ = ["chain_id", "chain_ids"]


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    """``chain[0] = diff[0]``, ``chain[i] = sha256(chain[i-1] + " " + diff[i])``, for every layer."""
    chains: list[Digest] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            text = f"{chains[-1]} {diff_id}".encode()
            chains.append(Digest("sha256", hashlib.sha256(text).hexdigest()))
    return chains


def chain_id(diff_ids: Sequence[Digest]) -> Digest:
    """The chain ID of the top layer."""
    if not diff_ids:
        raise InvalidArgument("an image without layers has no chain ID")
    return chain_ids(diff_ids)[-1]
