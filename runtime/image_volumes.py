"""Image volumes (KEP-4639): an image's root filesystem mounted read-only into a container.

Each image used as a volume gets one View snapshot of its top chain ID, keyed ``image-volume-<image id>``
and mounted at ``<state>/image-volumes/<image id hex>``; every container using the image binds that folder
(or a path inside it) read-only. Containers record the images they use this way, and the last container of
an image to go releases the view. A view keeps its layers from the snapshot collector, and an image in use
this way cannot be removed (cri/image_service/remove_image.py asks ``users``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import structlog

from errdefs import InvalidArgument, NotFound
from runtime.user import resolve_in_root
from snapshotters.mount import mount_all, unmount
from snapshotters.snapshotter import Snapshotter
from store.locks import KeyedLocks

__all__ = ["ImageVolumes", "snapshot_key"]

log = structlog.get_logger(__name__)


_PREFIX = "image-volume-"


def snapshot_key(image_id: str) -> str:
    return _PREFIX + image_id


class ImageVolumes:
    def __init__(self, state: Path, snapshotter: Snapshotter, in_use: Callable[[str, str], bool]) -> None:
        self._folder = state / "image-volumes"
        self._sn = snapshotter
        self._in_use = in_use  # (image id, container going): whether another container has it as a volume
        self._locks = KeyedLocks()

    def acquire(self, image_id: str, chain_id: str, sub_path: str = "") -> str:
        """The host folder to bind for the image (and ``sub_path`` inside it), mounting its view if needed."""
        with self._locks.hold(image_id):
            root = self._root(image_id)
            if not os.path.ismount(root):
                self._mount(image_id, chain_id, root)
        if not sub_path:
            return str(root)
        if os.path.isabs(sub_path) or ".." in Path(sub_path).parts:
            raise InvalidArgument(f"image sub path {sub_path!r} must be relative and stay inside the image")
        # Links in the image resolve inside it, never to the host.
        target = resolve_in_root(root, sub_path)
        if not target.exists():
            raise InvalidArgument(f"image sub path {sub_path!r} does not exist in the image")
        return str(target)

    def release(self, image_id: str, leaving: str) -> None:
        """Unmount and drop the image's view unless a container other than ``leaving`` still uses it."""
        with self._locks.hold(image_id):
            if self._in_use(image_id, leaving):
                return
            root = self._root(image_id)
            unmount(root, detach=True)
            with contextlib.suppress(FileNotFoundError, OSError):
                root.rmdir()
            with contextlib.suppress(NotFound):
                self._sn.remove(snapshot_key(image_id))
            log.info("image_volume.released", image=image_id)

    def sweep(self) -> list[str]:
        """Release the views no container uses any more (a crash between removing a container and releasing
        its image volumes leaves one); call at start."""
        keys: list[str] = []
        self._sn.walk(lambda info: keys.append(info.name) if info.name.startswith(_PREFIX) else None)
        swept = [key.removeprefix(_PREFIX) for key in keys if not self._in_use(key.removeprefix(_PREFIX), "")]
        for image_id in swept:
            self.release(image_id, "")
        return swept

    def _mount(self, image_id: str, chain_id: str, root: Path) -> None:
        key = snapshot_key(image_id)
        try:
            mounts = self._sn.mounts(key)
        except NotFound:
            mounts = self._sn.view(key, chain_id)
        root.mkdir(parents=True, exist_ok=True)
        mount_all(mounts, root)
        log.info("image_volume.mounted", image=image_id, at=str(root))

    def _root(self, image_id: str) -> Path:
        return self._folder / image_id.removeprefix("sha256:")
