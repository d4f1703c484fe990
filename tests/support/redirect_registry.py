"""A registry front on 127.0.0.1 that asks for basic auth and sends blob downloads to another server.

Manifests are proxied to a real registry; every blob GET is answered with a 307 to a second server, the
"third party", which answers 401 with its own bearer realm and records each Authorization header it is sent
(on blobs and on its token endpoint). That is how a registry with a CDN behaves, and how a hostile one would
try to collect the credentials a client was given for it.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.support.registry import Registry


@dataclass
class ThirdParty:
    seen: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization header or "")
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@dataclass
class RedirectingFront:
    username: str
    password: str
    third_party: ThirdParty
    servers: list[ThreadingHTTPServer]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.servers[0].server_address[1]}"

    @property
    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


def start_redirecting_front(backend: Registry, username: str, password: str) -> RedirectingFront:
    third = ThirdParty()
    third.server = _serve(_third_party_handler(third))
    front = RedirectingFront(username, password, third, [])
    front.servers = [_serve(_front_handler(front, backend)), third.server]
    return front


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def answer(self, code: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(code)
        headers = {"Content-Length": str(len(body)), **headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _front_handler(front: RedirectingFront, backend: Registry) -> type[BaseHTTPRequestHandler]:
    class Front(_Quiet):
        def do_GET(self) -> None:  # noqa: N802
            self._handle()

        def do_HEAD(self) -> None:  # noqa: N802
            self._handle()

        def _handle(self) -> None:
            if self.headers.get("Authorization") != front.basic:
                self.answer(401, {"WWW-Authenticate": 'Basic realm="front"'})
            elif "/blobs/" in self.path:
                self.answer(307, {"Location": front.third_party.url + self.path})
            else:
                upstream = httpx.request(self.command, backend.url + self.path, timeout=30,
                                         headers={"Accept": self.headers.get("Accept", "*/*")})
                keep = ("Content-Type", "Docker-Content-Digest", "Content-Length")
                headers = {k: upstream.headers[k] for k in keep if k in upstream.headers}
                self.answer(upstream.status_code, headers, upstream.content)

    return Front


def _third_party_handler(third: ThirdParty) -> type[BaseHTTPRequestHandler]:
    class Third(_Quiet):
        def do_GET(self) -> None:  # noqa: N802
            third.seen.append((self.path, self.headers.get("Authorization", "")))
            if self.path.startswith("/token"):
                self.answer(200, {"Content-Type": "application/json"}, b'{"token": "third-party-token"}')
            else:
                self.answer(401, {"WWW-Authenticate": f'Bearer realm="{third.url}/token",service="third"'})

    return Third
