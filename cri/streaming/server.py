"""The streaming server: the URLs Exec, Attach and PortForward return, served on their own TCP port.

Routes are kubelet's (``/exec/<token>``, ``/attach/<token>``, ``/portforward/<token>``, GET or POST); the token
is single-use and names the CRI request it was made for, so nothing in the URL's query is trusted. The HTTP
head is parsed with h11; the connection is then upgraded to SPDY/3.1 (after the ``X-Stream-Protocol-Version``
negotiation) or to a WebSocket.

Everything runs on one asyncio loop in a thread of its own; the gRPC threads only insert tokens. Stopping the
server cancels every session, whose clean-up kills its processes and closes its sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import h11

from cri import logs
from cri.api.runtime.v1 import api_pb2
from cri.config import StreamSettings
from cri.metrics import Metrics
from cri.streaming import portforward, remotecommand
from cri.streaming.backend import StreamBackend
from cri.streaming.conn import ByteConn, TcpConn
from cri.streaming.session import StreamOptions, StreamStatus
from cri.streaming.tls import self_signed
from cri.streaming.tokens import TokenCache
from cri.streaming.websocket import TunnelConn, WebSocket, accept_headers
from errdefs import CrishimError, InvalidArgument, Unavailable

__all__ = ["StreamServer"]

log = logs.get_logger()

_HEAD_TIMEOUT_SECONDS = 30.0
_MAX_HEAD_BYTES = 16 * 1024
# What a connection may buffer unread before its socket stops being read (asyncio's flow control).
_READ_BUFFER = 256 * 1024
_MAX_CONNECTIONS = 4096
_PROTOCOL_HEADER = "x-stream-protocol-version"
_COMPLETED, _FAILED, _REJECTED = "completed", "failed", "rejected"

CommandRequest = api_pb2.ExecRequest | api_pb2.AttachRequest
Request = CommandRequest | api_pb2.PortForwardRequest


@dataclass(frozen=True, slots=True)
class _Head:
    method: str
    path: str
    headers: dict[str, list[str]]

    def header(self, name: str) -> str:
        return ", ".join(self.headers.get(name, []))

    def tokens(self, name: str) -> list[str]:
        return [t.strip() for value in self.headers.get(name, []) for t in value.split(",") if t.strip()]


class StreamServer:
    def __init__(self, settings: StreamSettings, backend: StreamBackend, state_dir: Path,
                 metrics: Metrics | None = None) -> None:
        self._settings = settings
        self._metrics = metrics if metrics is not None else Metrics()
        self._backend = backend
        self._state_dir = state_dir
        self._tokens: TokenCache[Request] = TokenCache()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self.base_url = ""

    # --- the gRPC side ----------------------------------------------------------------------------------

    def exec_url(self, request: api_pb2.ExecRequest) -> str:
        _check_stdio(request)
        if not request.cmd:
            raise InvalidArgument("exec needs a command")
        self._backend.running_container(request.container_id)
        return self._url("exec", request)

    def attach_url(self, request: api_pb2.AttachRequest) -> str:
        _check_stdio(request)
        self._backend.running_container(request.container_id)
        return self._url("attach", request)

    def port_forward_url(self, request: api_pb2.PortForwardRequest) -> str:
        if not request.pod_sandbox_id:
            raise InvalidArgument("missing required pod_sandbox_id")
        if any(not 0 < port <= 65535 for port in request.port):
            raise InvalidArgument(f"ports must be between 1 and 65535, got {list(request.port)}")
        self._backend.ready_pod(request.pod_sandbox_id)
        return self._url("portforward", request)

    def _url(self, kind: str, request: Request) -> str:
        if not self.base_url:
            raise Unavailable("the streaming server is not running")
        return f"{self.base_url}/{kind}/{self._tokens.insert(copy.deepcopy(request))}"

    # --- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the port (so the URL is known before any RPC), then serve on a thread of its own."""
        tls = self._tls_context() if self._settings.enable_tls else None
        sock = _listen(self._settings.address, self._settings.port)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.base_url = f"{'https' if tls else 'http'}://{shown}:{port}"
        loop = asyncio.new_event_loop()
        self._server = loop.run_until_complete(
            asyncio.start_server(self._connection, sock=sock, ssl=tls, limit=_READ_BUFFER))
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="stream-server", daemon=True)
        self._thread.start()
        log.info("streaming server listening", url=self.base_url)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self.base_url = ""
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=30.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10.0)
        loop.close()
        self._loop = self._thread = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self._settings.tls_cert_file:
            cert, key = Path(self._settings.tls_cert_file), Path(self._settings.tls_key_file)
        else:
            cert, key = self_signed(self._state_dir / "stream-tls", self._settings.address)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidArgument(f"config: stream TLS certificate {cert} or key {key} unusable: {exc}") from exc
        return context

    # --- one connection ---------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._sessions) >= _MAX_CONNECTIONS:
            writer.close()
            return
        self._sessions.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass
        except Exception:
            log.exception("streaming session failed")
        finally:
            self._sessions.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        http = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD_BYTES)
        try:
            async with asyncio.timeout(_HEAD_TIMEOUT_SECONDS):
                head = await _read_head(http, reader)
        except h11.RemoteProtocolError as exc:
            # As Go's HTTP server answers a head it cannot parse (400) or one too long (431).
            status = exc.error_status_hint
            await _respond(http, writer, status, f"{status} {HTTPStatus(status).phrase}\n")
            return
        if head is None:
            return
        kind, _, token = head.path.split("?", 1)[0].strip("/").partition("/")
        if head.method not in ("GET", "POST") or kind not in ("exec", "attach", "portforward") or "/" in token:
            await _respond(http, writer, 404, "404 page not found\n")
            return
        transport = "websocket" if head.header("upgrade").lower() == "websocket" else "spdy"
        request = self._tokens.consume(token)
        wanted = {"exec": api_pb2.ExecRequest, "attach": api_pb2.AttachRequest,
                  "portforward": api_pb2.PortForwardRequest}[kind]
        if request is None or not isinstance(request, wanted):
            await _respond(http, writer, 404, "404 page not found\n")
            self._metrics.stream_sessions.labels(kind=kind, transport=transport, outcome=_REJECTED).inc()
            return
        log.info("streaming session", kind=kind, transport=transport)
        active = self._metrics.stream_sessions_active.labels(kind=kind)
        active.inc()
        outcome = _FAILED
        try:
            if transport == "websocket":
                outcome = await self._websocket(http, writer, head, reader, request)
            else:
                outcome = await self._spdy(http, writer, head, reader, request)
        finally:
            active.dec()
            self._metrics.stream_sessions.labels(kind=kind, transport=transport, outcome=outcome).inc()

    async def _spdy(self, http: h11.Connection, writer: asyncio.StreamWriter, head: _Head,
                    reader: asyncio.StreamReader, request: Request) -> str:
        supported = portforward.SPDY_PROTOCOLS if isinstance(request, api_pb2.PortForwardRequest) \
            else remotecommand.SPDY_PROTOCOLS
        offered = head.tokens(_PROTOCOL_HEADER)
        if not offered:
            await _respond(http, writer, 400, f"unable to upgrade: header {_PROTOCOL_HEADER} is missing or empty")
            return _REJECTED
        protocol = _choose_protocol(offered, supported)
        if not protocol:
            extra = [("X-Accepted-Stream-Protocol-Versions", p) for p in supported]
            await _respond(http, writer, 403, f"unable to upgrade: unable to negotiate protocol: client supports "
                           f"{offered}, server accepts {list(supported)}", extra)
            return _REJECTED
        if "upgrade" not in head.header("connection").lower() or "spdy/3.1" not in head.header("upgrade").lower():
            await _respond(http, writer, 400, "unable to upgrade: missing upgrade headers in request")
            return _REJECTED
        await _switch(http, writer, [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"),
                                     ("X-Stream-Protocol-Version", protocol)])
        conn = TcpConn(reader, writer, http.trailing_data[0])
        return await self._run(conn, protocol, request, websocket=False)

    async def _websocket(self, http: h11.Connection, writer: asyncio.StreamWriter, head: _Head,
                         reader: asyncio.StreamReader, request: Request) -> str:
        key = head.header("sec-websocket-key")
        if not key or head.header("sec-websocket-version") != "13":
            await _respond(http, writer, 400, "Bad Request: not a WebSocket version 13 handshake")
            return _REJECTED
        is_forward = isinstance(request, api_pb2.PortForwardRequest)
        supported = (portforward.TUNNEL_PROTOCOL, *portforward.WEBSOCKET_PROTOCOLS) if is_forward \
            else remotecommand.WEBSOCKET_PROTOCOLS
        protocol = _choose_protocol(head.tokens("sec-websocket-protocol"), supported)
        if protocol is None:
            await _respond(http, writer, 403, "requested WebSocket protocols are not supported")
            return _REJECTED
        await _switch(http, writer, accept_headers(key, protocol))
        conn: ByteConn = TcpConn(reader, writer, http.trailing_data[0])
        if protocol == portforward.TUNNEL_PROTOCOL:
            # SPDY inside the WebSocket's messages, served as a SPDY port-forward.
            tunnel = TunnelConn(WebSocket(conn, idle_timeout=self._settings.idle_timeout))
            return await self._run(tunnel, portforward.SPDY_PROTOCOLS[0], request, websocket=False)
        return await self._run(conn, protocol, request, websocket=True)

    async def _run(self, conn: ByteConn, protocol: str, request: Request, *, websocket: bool) -> str:
        """Serve the session; its outcome for the metrics."""
        settings = self._settings
        if isinstance(request, api_pb2.PortForwardRequest):
            pod = request.pod_sandbox_id

            def describe(port: int) -> str:
                return f"error forwarding port {port} to pod {pod}, uid "

            async def forward(port: int, stream: Any, reply: Any) -> None:
                await self._backend.port_forward(pod, port, stream, reply)

            if websocket:
                await portforward.serve_websocket(conn, protocol, list(request.port), forward, describe,
                                                  idle_timeout=settings.idle_timeout)
            else:
                await portforward.serve_spdy(conn, forward, describe, idle_timeout=settings.idle_timeout,
                                             creation_timeout=settings.creation_timeout)
            return _COMPLETED
        options = StreamOptions(request.stdin, request.stdout, request.stderr, request.tty)
        if websocket:
            transport = await remotecommand.open_websocket(conn, protocol, options,
                                                           idle_timeout=settings.idle_timeout)
        else:
            opened = await remotecommand.open_spdy(conn, protocol, options, idle_timeout=settings.idle_timeout,
                                                   creation_timeout=settings.creation_timeout)
            if opened is None:
                return _FAILED
            transport = opened
        status = await _session_status(request, lambda: self._session(request, transport))
        await transport.finish(status)
        return _FAILED if status.reason == "InternalError" else _COMPLETED

    async def _session(self, request: CommandRequest, transport: remotecommand.Transport) -> StreamStatus:
        if isinstance(request, api_pb2.ExecRequest):
            code = await self._backend.exec(request.container_id, list(request.cmd), transport.session)
            return StreamStatus.success() if code == 0 else StreamStatus.exit_code(code, list(request.cmd))
        await self._backend.attach(request.container_id, transport.session)
        return StreamStatus.success()


async def _session_status(request: CommandRequest, run: Callable[[], Awaitable[StreamStatus]]) -> StreamStatus:
    try:
        return await run()
    except CrishimError as exc:
        what = "executing command in" if isinstance(request, api_pb2.ExecRequest) else "attaching to"
        log.info("streaming session failed", error=str(exc))
        return StreamStatus.internal(f"error {what} container: {exc}")


def _choose_protocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The first protocol the client offers that is supported (SPDY's X-Stream-Protocol-Version and WebSocket's
    subprotocols alike); "" when it offers none and "" is supported."""
    for protocol in offered or [""]:
        if protocol in supported:
            return protocol
    return None


def _check_stdio(request: api_pb2.ExecRequest | api_pb2.AttachRequest) -> None:
    if not request.container_id:
        raise InvalidArgument("missing required container_id")
    if request.tty and request.stderr:
        raise InvalidArgument("tty and stderr cannot both be true")
    if not (request.stdin or request.stdout or request.stderr):
        raise InvalidArgument("one of stdin, stdout, or stderr must be set")


def _listen(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto says TCP,
    # and accepted sockets take the listener's. With Nagle on, a frame written while the previous one is
    # unacknowledged waits for the client's delayed ACK (some 40 ms): a SYN_REPLY, a status, a small reply.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise Unavailable(f"streaming server cannot listen on {address}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def _read_head(http: h11.Connection, reader: asyncio.StreamReader) -> _Head | None:
    while True:
        event = http.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(_MAX_HEAD_BYTES)
            http.receive_data(data)
            if not data:
                return None
            continue
        if isinstance(event, h11.Request):
            headers: dict[str, list[str]] = {}
            for name, value in event.headers:
                headers.setdefault(name.decode().lower(), []).append(value.decode(errors="replace"))
            return _Head(event.method.decode(), event.target.decode(errors="replace"), headers)
        return None


async def _respond(http: h11.Connection, writer: asyncio.StreamWriter, status: int, text: str,
                   extra: list[tuple[str, str]] | None = None) -> None:
    body = text.encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
               ("Connection", "close"), *(extra or [])]
    try:
        data = http.send(h11.Response(status_code=status, headers=headers))
        data += http.send(h11.Data(data=body)) + http.send(h11.EndOfMessage())
    except h11.LocalProtocolError:
        return
    writer.write(data)
    await writer.drain()


async def _switch(http: h11.Connection, writer: asyncio.StreamWriter, headers: list[tuple[str, str]]) -> None:
    # h11 lets the server switch only once the request (with no body) is complete.
    while (event := http.next_event()) is not h11.PAUSED:
        if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed | h11.Data):
            raise ConnectionResetError("upgrade request with a body")
    writer.write(http.send(h11.InformationalResponse(status_code=101, headers=headers,
                                                     reason=b"Switching Protocols")))
    await writer.drain()
