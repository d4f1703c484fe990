"""One image pulled into a fresh crishim and a freshly reset containerd, and what each then reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support.containerd import Containerd
from tests.support.content import ContentRecord
from tests.support.crishim_store import StoredContent, stored_content
from tests.support.daemon import Crishim
from tests.support.images import PushedImage


@dataclass
class PullPair:
    """One image pulled into a fresh crishim and a freshly reset containerd, and what each then reports."""

    image: PushedImage
    crishim: Crishim  # stopped after the capture, so its database can be read
    crishim_images: list[dict[str, Any]]
    crishim_inspect: dict[str, Any]
    crishim_content: dict[str, StoredContent]
    oracle: Containerd
    oracle_images: list[dict[str, Any]]
    oracle_inspect: dict[str, Any]
    oracle_content: dict[str, ContentRecord]


def capture(image: PushedImage, daemon: Crishim, oracle: Containerd) -> PullPair:
    daemon.crictl("pull", image.ref)
    images, inspect = daemon.images(), daemon.crictl_json("inspecti", image.ref)
    daemon.stop()
    return PullPair(
        image=image,
        crishim=daemon,
        crishim_images=images,
        crishim_inspect=inspect,
        crishim_content=stored_content(daemon.root),
        oracle=oracle,
        oracle_images=oracle.crictl_client.images(),
        oracle_inspect=oracle.crictl_json("inspecti", image.ref),
        oracle_content=oracle.content(),
    )
