"""The streaming server's listening socket: connections it accepts send small frames at once (no Nagle)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from cri.streaming.server import _listen
from errdefs import Unavailable


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_accepted_connections_have_nagle_off(address: str) -> None:
    if address == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")

    async def check() -> int:
        try:
            listener = _listen(address, 0)
        except Unavailable as exc:  # a host without that loopback address
            pytest.skip(f"cannot listen on {address}: {exc}")
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(address, listener.getsockname()[1])
            value = await asyncio.wait_for(accepted, 10)
            writer.close()
        return value

    assert asyncio.run(check()) != 0
