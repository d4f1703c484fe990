"""Layers unpacked while they download, side by side: what a failure leaves, what concurrent pulls share."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.compare import grpc_code
from tests.support.daemon import Crishim, python_executable
from tests.support.layout import OCI_CONFIG, OCI_MANIFEST
from tests.support.procs import run
from tests.support.registry import Registry
from tests.support.registry_push import descriptor, push_blob, push_manifest
from tests.support.tools import binary

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _layer(name: str, size: int) -> tuple[bytes, str]:
    """A gzip layer of one file of random bytes (so compression keeps it large); returns it and its diff ID."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = size
        archive.addfile(info, io.BytesIO(os.urandom(size)))
    return gzip.compress(raw.getvalue(), compresslevel=1), "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()


def push_image(registry: Registry, repository: str, sizes: list[int],
               wrong_diff_id: int | None = None) -> tuple[str, list[str]]:
    """Push an image of one-file layers; with ``wrong_diff_id`` that layer's diff ID in the config is wrong."""
    layers, diff_ids = [], []
    for i, size in enumerate(sizes):
        blob, diff_id = _layer(f"file{i}", size)
        layers.append(descriptor(LAYER, push_blob(registry, repository, blob), len(blob)))
        diff_ids.append("sha256:" + "0" * 64 if i == wrong_diff_id else diff_id)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, push_blob(registry, repository, config), len(config)),
                "layers": layers}
    push_manifest(registry, repository, "v1", OCI_MANIFEST, manifest)
    return f"{registry.host}/{repository}:v1", [str(layer["digest"]) for layer in layers]


def _listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def test_a_diff_id_mismatch_stops_the_pull_and_leaves_nothing_of_it(crishim: Crishim, registry: Registry) -> None:
    ref, digests = push_image(registry, "test/pipeline-mismatch", [8 << 20, 64 << 10, 8 << 20], wrong_diff_id=1)
    snapshots = crishim.root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots"
    ingests = crishim.root / "io.containerd.content.v1.content" / "ingest"
    images, blobs, folders = crishim.images(), crishim.blobs(), _listing(snapshots)
    proc = crishim.crictl("pull", ref, check=False)
    assert proc.returncode != 0
    assert grpc_code(proc.stderr) == "DataLoss", proc.stderr
    assert f"layer 1 ({digests[1]})" in proc.stderr and "diff ID" in proc.stderr, proc.stderr
    assert crishim.images() == images
    assert crishim.blobs() == blobs
    assert _listing(snapshots) == folders, "a half-made snapshot was left"
    assert _listing(ingests) == [], "an ingest of the failed pull was left"


@contextmanager
def counting_front(backend: Registry, blob_delay: float) -> Iterator[tuple[str, Counter[str]]]:
    """A front that counts every request by method and path and holds each blob back ``blob_delay`` seconds,
    so pulls asked for together overlap."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    class Front(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            self._pass()

        def do_HEAD(self) -> None:  # noqa: N802
            self._pass()

        def _pass(self) -> None:
            with lock:
                seen[f"{self.command} {self.path}"] += 1
            if "/blobs/" in self.path:
                time.sleep(blob_delay)
            upstream = httpx.request(self.command, backend.url + self.path, timeout=30,
                                     headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
            self.send_response(upstream.status_code)
            for key in ("Content-Type", "Docker-Content-Digest", "Content-Length"):
                if key in upstream.headers:
                    self.send_header(key, upstream.headers[key])
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(upstream.content)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_identical_pulls_at_once_share_one_pull(crishim: Crishim, registry: Registry) -> None:
    _, digests = push_image(registry, "test/pipeline-shared", [1 << 20, 1 << 20, 1 << 20])
    with counting_front(registry, blob_delay=2.0) as (front, seen):
        ref = f"{front}/test/pipeline-shared:v1"
        clients = [subprocess.Popen(crishim.crictl_client.command("pull", ref), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(20)]
        outputs = [client.communicate(timeout=120) for client in clients]
    assert [client.returncode for client in clients] == [0] * 20, outputs
    ids = {out.strip().rsplit(" ", 1)[-1] for out, _ in outputs}
    assert len(ids) == 1, ids
    for digest in digests:
        assert seen[f"GET /v2/test/pipeline-shared/blobs/{digest}"] == 1, seen
    resolves = [path for path in seen.elements() if path.endswith("/manifests/v1")]
    assert len(resolves) == 1, seen


def _samples(daemon: Crishim) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(daemon.metrics_url, timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_each_layer_and_the_bytes_of_each_registry(crishim: Crishim, registry: Registry) -> None:
    ref, _ = push_image(registry, "test/pipeline-metrics", [256 << 10, 512 << 10])
    before = _samples(crishim)
    crishim.crictl("pull", ref)
    after = _samples(crishim)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("crishim_image_layer_download_duration_seconds_count") == 2
    assert delta("crishim_image_layer_unpack_duration_seconds_count") == 2
    assert delta("crishim_image_pull_bytes_total", registry=registry.host) > 768 << 10
    assert after[("crishim_image_pulls_in_progress", ())] == 0


def test_ctr_content_active_shows_the_downloads_in_flight(crishim: Crishim, registry: Registry) -> None:
    _, digests = push_image(registry, "test/pipeline-active", [256 << 10, 256 << 10])
    with counting_front(registry, blob_delay=3.0) as (front, _):
        pull = subprocess.Popen(crishim.crictl_client.command("pull", f"{front}/test/pipeline-active:v1"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while pull.poll() is None and time.monotonic() < deadline:
            listing = run(binary("ctr"), "-a", crishim.socket, "-n", "k8s.io", "content", "active").stdout
            seen |= {line.split()[0] for line in listing.splitlines()[1:] if line.strip()}
            time.sleep(0.2)
        _, stderr = pull.communicate(timeout=60)
    assert pull.returncode == 0, stderr
    assert {f"layer-{digest}" for digest in digests} <= seen, seen


def test_crishim_image_pull_prints_each_layers_phases_when_not_on_a_terminal(
        crishim: Crishim, registry: Registry) -> None:
    _, digests = push_image(registry, "test/pipeline-progress", [256 << 10, 256 << 10])
    with counting_front(registry, blob_delay=1.5) as (front, _):
        proc = subprocess.run([str(python_executable()), "-m", "cri", "-a", str(crishim.socket), "image", "pull",
                               f"{front}/test/pipeline-progress:v1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for digest in digests:
        started = next(i for i, line in enumerate(lines) if line.startswith(f"layer-{digest}: downloading "))
        # The pull may end before the next look at the downloads, so the unpacking line is not always there.
        unpacking = [i for i, line in enumerate(lines) if line == f"layer-{digest}: unpacking"]
        assert all(i > started for i in unpacking), proc.stdout
    assert "\x1b[" not in proc.stdout, "terminal control codes in plain output"
