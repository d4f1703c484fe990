"""Downloads resume with a Range request, against a small real HTTP server on loopback."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from errdefs import DataLoss, DeadlineExceeded, Unavailable
from store.content import ContentStore
from store.descriptor import Descriptor
from store.digest import sha256_of
from store.remote import RegistryClient, RegistryHost

BLOB = os.urandom(3 << 20)
LAYER = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", sha256_of(BLOB), len(BLOB))


class BlobServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.blob = BLOB
        self.cut_after: int | None = None  # drop the connection after this many bytes
        self.honour_range = True
        self.stall = threading.Event()  # set: send a little, then nothing until released
        self.sent: list[tuple[str | None, int]] = []  # (Range header, bytes sent)
        self.release = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    server: BlobServer

    def do_GET(self) -> None:  # noqa: N802
        start, header = 0, self.headers.get("Range")
        if header and self.server.honour_range:
            start = int(header.removeprefix("bytes=").rstrip("-"))
        body = self.server.blob[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.stall.is_set():
            self.wfile.write(body[:1000])
            self.wfile.flush()
            self.server.release.wait(10)
            return
        if self.server.cut_after is not None:
            body = body[: self.server.cut_after]
            self.server.cut_after = None
        self.wfile.write(body)
        self.server.sent.append((header, len(body)))
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[BlobServer]:
    srv = BlobServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def client(server: BlobServer, retries: int, progress_timeout: float) -> RegistryClient:
    host = RegistryHost("http", f"127.0.0.1:{server.server_address[1]}")
    return RegistryClient(host.host, "repo", [host], None, progress_timeout=progress_timeout, retries=retries,
                          backoff=0)


def fetch(store: ContentStore, server: BlobServer, retries: int, progress_timeout: float = 5) -> None:
    with client(server, retries, progress_timeout) as c, store.writer("layer", LAYER.digest, LAYER.size) as w:
        c.fetch(LAYER, w)


def test_a_new_pull_fetches_only_the_missing_bytes(tmp_path: Path, server: BlobServer) -> None:
    store = ContentStore(tmp_path).open()
    server.cut_after = 1 << 20
    with pytest.raises(Unavailable):
        fetch(store, server, retries=0)
    assert store.ingest_status("layer").offset == 1 << 20
    assert not store.exists(LAYER.digest)
    fetch(store, server, retries=0)
    assert server.sent == [(None, 1 << 20), (f"bytes={1 << 20}-", len(BLOB) - (1 << 20))]
    assert store.read(LAYER.digest) == BLOB


def test_a_retry_within_one_pull_resumes(tmp_path: Path, server: BlobServer) -> None:
    store = ContentStore(tmp_path).open()
    server.cut_after = 100
    fetch(store, server, retries=2)
    assert server.sent == [(None, 100), ("bytes=100-", len(BLOB) - 100)]
    assert store.read(LAYER.digest) == BLOB


def test_a_server_ignoring_range_restarts_the_ingest(tmp_path: Path, server: BlobServer) -> None:
    store = ContentStore(tmp_path).open()
    server.cut_after, server.honour_range = 1000, False
    fetch(store, server, retries=1)
    assert server.sent[-1] == ("bytes=1000-", len(BLOB))
    assert store.read(LAYER.digest) == BLOB


def test_corrupt_content_never_becomes_a_blob(tmp_path: Path, server: BlobServer) -> None:
    store = ContentStore(tmp_path).open()
    server.blob = BLOB[:-1] + bytes([BLOB[-1] ^ 1])
    with pytest.raises(DataLoss):
        fetch(store, server, retries=0)
    assert not store.exists(LAYER.digest)
    assert store.ingests() == []


def test_no_progress_cancels_and_keeps_what_arrived(tmp_path: Path, server: BlobServer) -> None:
    store = ContentStore(tmp_path).open()
    server.stall.set()
    with pytest.raises(DeadlineExceeded, match="no progress"):
        fetch(store, server, retries=3, progress_timeout=0.5)
    assert store.ingest_status("layer").offset == 1000
    assert len(server.sent) == 0 or server.sent[-1][1] == 1000
