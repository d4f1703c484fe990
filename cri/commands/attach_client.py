"""The client side of an attach, for ``crishim run -t``: the streaming URL over WebSocket (``v5.channel.k8s.io``),
the user's terminal in raw mode, its size sent at start and on every SIGWINCH, and its input until the
container's output ends."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import ssl
import sys
import termios
import tty
from collections.abc import Iterator
from urllib.parse import urlsplit

import h11
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping
from wsproto.utilities import generate_accept_token

from cri.streaming.remotecommand import ERROR, RESIZE, STDERR, STDIN, STDOUT, V5
from cri.streaming.websocket import CLOSE_SIGNAL

__all__ = ["attach"]

PROTOCOL = V5


def attach(url: str) -> str:
    """Attach the terminal to the session at ``url`` until it ends; the status the server sent on its error
    channel ("" for none)."""
    with _raw_terminal():
        return asyncio.run(_session(url))


@contextlib.contextmanager
def _raw_terminal() -> Iterator[None]:
    if not os.isatty(sys.stdin.fileno()):
        yield
        return
    saved = termios.tcgetattr(sys.stdin.fileno())
    # TCSADRAIN, not setraw's default TCSAFLUSH: what the user typed ahead must reach the container too.
    tty.setraw(sys.stdin.fileno(), termios.TCSADRAIN)
    try:
        yield
    finally:
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


async def _session(url: str) -> str:
    parts = urlsplit(url)
    context = None
    if parts.scheme == "https":
        # The streaming server's certificate is often self-signed; the URL came over crishim's own socket.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port, ssl=context)
    ws = await _handshake(reader, writer, parts.netloc, parts.path)
    loop = asyncio.get_running_loop()
    status = bytearray()

    async def send(channel: int, data: bytes) -> None:
        writer.write(ws.send(BytesMessage(data=bytes([channel]) + data)))
        await writer.drain()

    async def send_size() -> None:
        with contextlib.suppress(OSError):
            columns, lines = os.get_terminal_size(sys.stdout.fileno())
            await send(RESIZE, json.dumps({"Width": columns, "Height": lines}).encode())

    resize = asyncio.Event()
    loop.add_signal_handler(signal.SIGWINCH, resize.set)
    stdin_fd = sys.stdin.fileno()
    input_ended = asyncio.Event()

    def on_input() -> None:
        data = os.read(stdin_fd, 65536)
        if not data:
            loop.remove_reader(stdin_fd)
            input_ended.set()
            return
        asyncio.ensure_future(send(STDIN, data))

    async def resizes() -> None:
        while True:
            await resize.wait()
            resize.clear()
            await send_size()

    async def close_input() -> None:
        await input_ended.wait()
        await send(CLOSE_SIGNAL, bytes([STDIN]))

    await send_size()
    loop.add_reader(stdin_fd, on_input)
    helpers = [asyncio.create_task(resizes()), asyncio.create_task(close_input())]
    try:
        while data := await reader.read(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Ping):
                    writer.write(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    return status.decode(errors="replace")
                elif isinstance(event, BytesMessage) and event.data:
                    channel, payload = event.data[0], bytes(event.data[1:])
                    if channel in (STDOUT, STDERR):
                        out = sys.stdout.buffer if channel == STDOUT else sys.stderr.buffer
                        out.write(payload)
                        out.flush()
                    elif channel == ERROR:
                        status += payload
        return status.decode(errors="replace")
    finally:
        loop.remove_reader(stdin_fd)
        loop.remove_signal_handler(signal.SIGWINCH)
        for task in helpers:
            task.cancel()
        writer.close()


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
                     path: str) -> Connection:
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    http = h11.Connection(h11.CLIENT)
    writer.write(http.send(h11.Request(method="GET", target=path, headers=[
        ("Host", host), ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Protocol", PROTOCOL)])))
    writer.write(http.send(h11.EndOfMessage()))
    await writer.drain()
    while True:
        event = http.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the streaming server closed the connection")
            http.receive_data(data)
            continue
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            accept = dict(event.headers).get(b"sec-websocket-accept", b"")
            if accept != generate_accept_token(key.encode()):
                raise ConnectionError("the streaming server answered the WebSocket handshake wrongly")
            ws = Connection(ConnectionType.CLIENT)
            if http.trailing_data[0]:
                ws.receive_data(http.trailing_data[0])
            return ws
        if isinstance(event, h11.Response):
            raise ConnectionError(f"the streaming server refused the attach: HTTP {event.status_code}")
