"""A registry front on 127.0.0.1 that serves chosen documents in place of what the real registry holds.

docker-registry validates manifests on push; a hostile registry does not. Paths listed in ``overrides``
are answered with the given bytes (and their digest), everything else is passed through to the backend.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.support.registry import Registry

__all__ = ["Trickle", "overriding_proxy", "trickling_proxy"]


@contextmanager
def overriding_proxy(backend: Registry, overrides: dict[str, tuple[str, bytes]]) -> Iterator[str]:
    """Run the front while the block runs; yields its host (``127.0.0.1:PORT``).

    A document given for ``/v2/<repo>/manifests/<tag>`` is served by its digest too, as clients fetch it.
    """
    overrides = dict(overrides)
    for path, (media_type, body) in list(overrides.items()):
        repo_path, _, _ = path.rpartition("/")
        overrides[f"{repo_path}/sha256:{hashlib.sha256(body).hexdigest()}"] = (media_type, body)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(backend, overrides))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _handler(backend: Registry, overrides: dict[str, tuple[str, bytes]]) -> type[BaseHTTPRequestHandler]:
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            self._handle()

        def do_HEAD(self) -> None:  # noqa: N802
            self._handle()

        def _handle(self) -> None:
            if self.path in overrides:
                media_type, body = overrides[self.path]
                headers = {"Content-Type": media_type,
                           "Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()}
                status = 200
            else:
                upstream = httpx.request(self.command, backend.url + self.path, timeout=30,
                                         headers={"Accept": self.headers.get("Accept", "*/*")})
                keep = ("Content-Type", "Docker-Content-Digest", "Content-Length")
                headers = {k: upstream.headers[k] for k in keep if k in upstream.headers}
                status, body = upstream.status_code, upstream.content
            headers.setdefault("Content-Length", str(len(body)))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Proxy


@dataclass
class Trickle:
    """A front whose blob downloads send one byte a second; it counts the downloads still connected."""

    host: str
    active: int = 0
    served: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def trickling_proxy(backend: Registry) -> Iterator[Trickle]:
    trickle = Trickle("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _trickle_handler(backend, trickle))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    trickle.host = f"127.0.0.1:{server.server_address[1]}"
    try:
        yield trickle
    finally:
        server.shutdown()
        server.server_close()


def _trickle_handler(backend: Registry, trickle: Trickle) -> type[BaseHTTPRequestHandler]:
    passthrough = _handler(backend, {})

    class Slow(passthrough):  # type: ignore[misc, valid-type]
        def _handle(self) -> None:
            if self.command != "GET" or "/blobs/" not in self.path:
                super()._handle()
                return
            upstream = httpx.get(backend.url + self.path, timeout=30)
            self.send_response(200)
            self.send_header("Content-Length", str(len(upstream.content)))
            self.end_headers()
            with trickle.lock:
                trickle.active += 1
                trickle.served += 1
            try:
                for i in range(len(upstream.content)):
                    self.wfile.write(upstream.content[i:i + 1])
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:
                pass  # the client hung up
            finally:
                with trickle.lock:
                    trickle.active -= 1

    return Slow
