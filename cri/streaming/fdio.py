"""Reading and writing raw file descriptors (pipes, ptys, pidfds) from asyncio without a thread per fd."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable

__all__ = ["read", "wait_readable", "write_all"]

READ_SIZE = 64 * 1024


async def wait_readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    await _ready(fd, loop.add_reader, loop.remove_reader)


async def _wait_writable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    await _ready(fd, loop.add_writer, loop.remove_writer)


async def _ready(fd: int, watch: Callable[..., None], unwatch: Callable[[int], object]) -> None:
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    watch(fd, _resolve, ready)
    try:
        await ready
    finally:
        unwatch(fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def read(fd: int, size: int = READ_SIZE) -> bytes:
    """The next bytes from a non-blocking fd; b"" at end of file, and when a pty's other side is gone (EIO)."""
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            await wait_readable(fd)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise


async def write_all(fd: int, data: bytes) -> None:
    """Write everything to a non-blocking fd, waiting while it is full (back-pressure on the sender)."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            await _wait_writable(fd)
            continue
        view = view[written:]
