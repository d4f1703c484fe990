"""Copying between a session's streams and a process's fds or a socket, with back-pressure both ways."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable

from cri.streaming import fdio
from cri.streaming.session import Input, Output, TerminalSize

__all__ = ["fd_to_output", "input_to_fd", "input_to_socket", "apply_sizes", "socket_to_output", "wait_all"]


async def fd_to_output(fd: int, output: Output | None) -> None:
    """Everything the fd yields, to the client (dropped when the client did not ask for this stream)."""
    while data := await fdio.read(fd):
        if output is not None:
            with contextlib.suppress(ConnectionError):
                await output.write(data)


async def input_to_fd(stream: Input, fd: int, *, close_at_eof: bool) -> None:
    try:
        while data := await stream.read():
            await fdio.write_all(fd, data)
    except (BrokenPipeError, ConnectionError):
        return
    if close_at_eof:
        with contextlib.suppress(OSError):
            os.close(fd)


async def input_to_socket(stream: Input, sock: socket.socket, *, packet: int = 0) -> None:
    """The client's bytes to the socket, then shut its write side (the peer reads EOF)."""
    loop = asyncio.get_running_loop()
    try:
        while data := await stream.read():
            step = packet or len(data)
            for at in range(0, len(data), step):
                await loop.sock_sendall(sock, data[at:at + step])
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return


async def socket_to_output(sock: socket.socket, output: Output, size: int = 64 * 1024) -> None:
    loop = asyncio.get_running_loop()
    with contextlib.suppress(ConnectionError):
        while data := await loop.sock_recv(sock, size):
            await output.write(data)
    with contextlib.suppress(ConnectionError):
        await output.close()


async def apply_sizes(sizes: AsyncIterator[TerminalSize], apply: Callable[[TerminalSize], None]) -> None:
    async for size in sizes:
        with contextlib.suppress(OSError):
            apply(size)


async def wait_all(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    """Let tasks finish for up to ``timeout`` seconds, then cancel what is left."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
