"""What goes wrong applying a layer, as the client should read it: corrupt data, a full disk, refused rights."""

from __future__ import annotations

import errno
import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import zstandard

from errdefs import DataLoss, PermissionDenied, Unavailable

__all__ = ["layer_errors"]


@contextmanager
def layer_errors(layer: str, media_type: str) -> Iterator[None]:
    """Turn the decompressor's and the filesystem's errors while ``layer`` is applied into errdefs errors."""
    try:
        yield
    except (EOFError, zlib.error, zstandard.ZstdError, gzip.BadGzipFile) as exc:
        raise DataLoss(f"layer {layer}: corrupt {media_type} data: {exc}") from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise Unavailable(f"layer {layer}: no space left to unpack it: {exc.strerror}") from exc
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise PermissionDenied(f"layer {layer}: cannot unpack it: {exc.strerror}: {exc.filename} "
                                   "(unpacking sets owners, device nodes and xattrs: it needs root with "
                                   "CAP_CHOWN, CAP_MKNOD and CAP_SYS_ADMIN)") from exc
        raise
