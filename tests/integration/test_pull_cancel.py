"""Pulls whose caller gave up stop; a trickling registry trips the progress timeout; hung pulls starve nothing."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
from tests.support.compare import grpc_code
from tests.support.daemon import Crishim, CrishimOptions
from tests.support.images import PushedImage
from tests.support.procs import wait_until
from tests.support.proxy_registry import Trickle, trickling_proxy
from tests.support.registry import Registry


@pytest.fixture
def trickle(registry: Registry) -> Iterator[Trickle]:
    with trickling_proxy(registry) as front:
        yield front


@pytest.fixture
def daemon(tmp_path: Path, registry: Registry) -> Iterator[Crishim]:
    started = Crishim(tmp_path / "crishim", CrishimOptions(
        [registry.host], extra_config="\n[image]\npull_progress_timeout = 4\n"))
    try:
        started.start()
        yield started
    finally:
        started.cleanup()


def _leases(daemon: Crishim) -> int:
    db = sqlite3.connect(f"file:{daemon.root}/io.containerd.metadata.v1.sqlite/meta.db?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM leases").fetchone()[0])
    finally:
        db.close()


def _ref(trickle: Trickle, image: PushedImage) -> str:
    return f"{trickle.host}/{image.repository}:{image.tag}"


def test_a_pull_whose_caller_gave_up_stops_downloading_and_drops_its_lease(
    crishim: Crishim, trickle: Trickle, test_images: dict[str, PushedImage]
) -> None:
    proc = crishim.crictl("pull", "--pull-timeout", "2s", _ref(trickle, test_images["oci"]), check=False)
    assert proc.returncode != 0
    assert trickle.served >= 1
    wait_until(lambda: trickle.active == 0, timeout=10, what="crishim to hang up on the download")
    wait_until(lambda: _leases(crishim) == 0, timeout=10, what="the pull's lease to go")
    assert crishim.images() == []
    crishim.crictl("pull", test_images["oci"].ref)  # and the next pull is not stuck behind it
    assert [i["id"] for i in crishim.images()] == [test_images["oci"].config_digest]


def test_a_registry_sending_a_byte_a_second_trips_the_progress_timeout(
    daemon: Crishim, trickle: Trickle, test_images: dict[str, PushedImage]
) -> None:
    started = time.monotonic()
    proc = daemon.crictl("pull", _ref(trickle, test_images["oci"]), check=False)
    took = time.monotonic() - started
    assert proc.returncode != 0
    assert grpc_code(proc.stderr) == "DeadlineExceeded", proc.stderr
    assert "bytes/s" in proc.stderr
    assert took < 30, f"the pull took {took:.0f}s to give up on a 1 byte/s registry (timeout 4s)"
    wait_until(lambda: trickle.active == 0, timeout=10, what="crishim to hang up on the download")


HUNG_PULLS = 140  # more than the daemon's 128 RPC threads


def test_hung_pulls_starve_no_other_call_and_stop_when_cancelled(
    crishim: Crishim, trickle: Trickle, test_images: dict[str, PushedImage]
) -> None:
    ref = _ref(trickle, test_images["oci"])
    with grpc.insecure_channel(f"unix://{crishim.socket}") as channel:
        images = api_pb2_grpc.ImageServiceStub(channel)
        runtime = api_pb2_grpc.RuntimeServiceStub(channel)
        calls = [images.PullImage.future(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref)))
                 for _ in range(HUNG_PULLS)]
        wait_until(lambda: trickle.served >= 1, timeout=20, what="the first download to start")
        time.sleep(1)
        started = time.monotonic()
        assert runtime.Version(api_pb2.VersionRequest(), timeout=5).runtime_name == "crishim"
        assert runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=5).containers == []
        assert time.monotonic() - started < 5
        refused = [c for c in calls if c.done() and c.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert refused, "every one of 140 hung pulls was accepted"
        for call in calls:
            call.cancel()
        wait_until(lambda: trickle.active == 0, timeout=20, what="crishim to hang up on every download")
        wait_until(lambda: _leases(crishim) == 0, timeout=20, what="the pulls' leases to go")
        crishim.crictl("pull", test_images["oci"].ref)
