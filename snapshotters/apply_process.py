"""Applying a large layer in a child process of its own, so that it has a core and an interpreter lock
of its own.

The applier's per-entry work is Python: in the daemon it takes turns with the pull's other layers,
downloads and RPCs for one interpreter lock, and the largest layer of an image is what a pull waits
for. In a child it runs beside them. The child gets the compressed bytes on its stdin and a JSON
request in its arguments, inflates and hashes on one thread while it applies on another, and answers
one JSON line: the result and diff ID, or the error, which the parent raises as the in-process applier
would have. Starting the child costs about 0.15 s, so only layers large enough to repay it go there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import hashlib
import io
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

import structlog
import zstandard

import snapshotters
from errdefs import InvalidArgument
from snapshotters.apply import ApplyResult, apply_tar
from snapshotters.compression import decompressed

__all__ = ["apply_in_child", "main"]

_READ = 1 << 20
_AHEAD = 4  # chunks inflated ahead of the applier
_F_SETPIPE_SZ = 1031  # fcntl.h
_CORRUPT = (EOFError, zlib.error, zstandard.ZstdError, gzip.BadGzipFile)


def apply_in_child(source: BinaryIO, compression: str, root: Path, whiteouts: str,
                   parents: Sequence[Path] | None) -> tuple[ApplyResult, str]:
    """``apply_tar`` of the layer ``source`` holds (compressed), run in a child; with its diff ID.

    Errors are those the in-process path raises (InvalidArgument, a decompressor's error, OSError), so
    the caller maps them alike. Whatever stops the parent (an error reading ``source``, a cancellation)
    kills the child.
    """
    request = {"root": str(root), "whiteouts": whiteouts, "compression": compression,
               "parents": None if parents is None else [str(p) for p in parents]}
    package_dir = str(Path(snapshotters.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_dir, os.environ.get("PYTHONPATH")]))}
    # The child writes one line to stdout, at its end; its stderr (a crash's traceback) goes to a file, so
    # no pipe can fill while this side is still writing.
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen([sys.executable, "-m", "snapshotters.apply_process", json.dumps(request)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env)
        assert child.stdin is not None and child.stdout is not None
        with contextlib.suppress(OSError):
            # A pipe of 1 MiB, not 64 KiB: fewer handovers between the two sides.
            fcntl.fcntl(child.stdin.fileno(), _F_SETPIPE_SZ, _READ)
        try:
            try:
                while chunk := source.read(_READ):
                    child.stdin.write(chunk)
                child.stdin.close()
            except BrokenPipeError:
                pass  # the child stopped reading: its answer says why
            out = child.stdout.read()
            child.wait()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            if not child.stdin.closed:
                with contextlib.suppress(BrokenPipeError):
                    child.stdin.close()
        errors.seek(0)
        return _answer(child.returncode, out, errors.read())


def _answer(code: int, out: bytes, err: bytes) -> tuple[ApplyResult, str]:
    try:
        doc: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"layer applier exited with {code}: {err.decode(errors='replace').strip()[-500:]}") from None
    kind = doc.get("error")
    if kind is None:
        return ApplyResult(entries=doc["entries"], size=doc["size"], implicit_dirs=doc["implicit_dirs"]), doc["digest"]
    message = str(doc.get("message", ""))
    if kind == "invalid":
        raise InvalidArgument(message)
    if kind == "corrupt":
        raise EOFError(message)
    if kind == "os":
        raise OSError(int(doc["errno"]), str(doc["strerror"]), doc.get("filename"))
    raise RuntimeError(f"layer applier: {message}")


# The child's side.

def main() -> None:
    # stdout carries the answer: the applier's own log lines (skipped xattrs) are of no use to the parent.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    request = json.loads(sys.argv[1])
    try:
        result, digest = _apply(request)
    except InvalidArgument as exc:
        _say({"error": "invalid", "message": str(exc)})
    except _CORRUPT as exc:
        _say({"error": "corrupt", "message": str(exc)})
    except OSError as exc:
        _say({"error": "os", "errno": exc.errno or errno.EIO, "strerror": exc.strerror or str(exc),
              "filename": exc.filename})
    except Exception as exc:  # noqa: BLE001 - whatever it is, the parent must hear of it
        _say({"error": "internal", "message": f"{type(exc).__name__}: {exc}"})
    else:
        _say({"entries": result.entries, "size": result.size, "implicit_dirs": result.implicit_dirs,
              "digest": digest})


def _say(doc: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def _apply(request: dict[str, Any]) -> tuple[ApplyResult, str]:
    stdin = cast(BinaryIO, io.BufferedReader(cast(io.RawIOBase, io.FileIO(0, "rb", closefd=False)), _READ))
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(_AHEAD)
    digest: list[str] = []
    inflater = threading.Thread(target=_inflate, args=(stdin, request["compression"], chunks, digest), daemon=True)
    inflater.start()
    tar = _QueueReader(chunks)
    parents = request["parents"]
    result = apply_tar(cast(BinaryIO, io.BufferedReader(tar, _READ)), Path(request["root"]), request["whiteouts"],
                       None if parents is None else [Path(p) for p in parents])
    tar.drain()
    inflater.join()
    return result, digest[0]


def _inflate(source: BinaryIO, compression: str, chunks: queue.Queue[bytes | BaseException | None],
             digest: list[str]) -> None:
    hasher = hashlib.sha256()
    try:
        inner = decompressed(source, compression)
        while chunk := inner.read(_READ):
            hasher.update(chunk)
            chunks.put(chunk)
    except BaseException as exc:  # noqa: BLE001 - handed to the applier, which raises it
        chunks.put(exc)
        return
    digest.append("sha256:" + hasher.hexdigest())
    chunks.put(None)


class _QueueReader(io.RawIOBase):
    def __init__(self, chunks: queue.Queue[bytes | BaseException | None]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending and not self._next():
            return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def drain(self) -> None:
        """Take what the applier left (the tar's padding), so the hash covers every byte."""
        while self._next():
            self._pending = memoryview(b"")

    def _next(self) -> bool:
        if self._ended:
            return False
        item = self._chunks.get()
        if item is None:
            self._ended = True
            return False
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        self._pending = memoryview(item)
        return True


if __name__ == "__main__":
    main()
