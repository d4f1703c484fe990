"""`ctr images import` against crishim, as `kind load` runs it inside a node, does what it does against containerd.

ctr writes the archive's blobs through the content service (resumable writes, verified commits, the call's
lease), creates the image records, and unpacks client-side: it prepares snapshots, asks the diff service to
apply each layer onto their mounts and commits them under their chain IDs. Both daemons are fed the same
archives (made with skopeo from the test registry, so independent of crishim's code) and ctr's listings
are compared; the imported image then runs in a pod. Hostile writes and applies change nothing.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cri.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from cri.api.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from cri.api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from cri.api.containerd.types import descriptor_pb2, mount_pb2
from tests.integration.test_ctr import NAMESPACE, compare_listings, ctr
from tests.support.archives import docker_archive
from tests.support.containerd import Containerd, containerd_under
from tests.support.cri_env import CriEnv
from tests.support.daemon import Crishim
from tests.support.images import PushedImage
from tests.support.procs import run
from tests.support.seed_image import SeedImage
from tests.support.tools import binary

IMPORT = ("images", "import", "--all-platforms", "--digests", "--snapshotter=overlayfs", "-")
LAYER = "application/vnd.oci.image.layer.v1.tar"


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory, test_images: dict[str, PushedImage],
             seed_image: SeedImage) -> dict[str, tuple[Path, str]]:
    """name -> (docker-archive tarball, the image name inside it), as `docker save` writes them."""
    workdir = tmp_path_factory.mktemp("archives")
    made = {}
    for name, ref, tagged in [("busybox", test_images["docker"].ref, "registry.test/import/busybox:v1"),
                              ("seed", seed_image.ref, "registry.test/import/nginx:stable")]:
        made[name] = (docker_archive(ref, workdir / f"{name}.tar", tagged), tagged)
    return made


def ctr_import(socket: Path, archive: Path) -> subprocess.CompletedProcess[str]:
    with archive.open("rb") as stdin:
        return subprocess.run([binary("ctr"), "-a", str(socket), "-n", NAMESPACE, *IMPORT], stdin=stdin,
                              capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """A containerd of the test's own (see ``containerd_under``): containerd 1.6's CRI keeps a ghost of an
    imported image whose name (ctr's ``import-DATE@sha256:...``) it normalises, even after every name is
    removed, and later tests of the shared oracle would see it."""
    with containerd_under(tmp_path_factory.getbasetemp(), []) as daemon:
        yield daemon


@pytest.mark.parametrize("name", ["busybox", "seed"])
def test_import_lists_as_containerd_does(name: str, crishim: Crishim, oracle: Containerd,
                                         archives: dict[str, tuple[Path, str]]) -> None:
    archive, tagged = archives[name]
    for socket in (crishim.socket, oracle.socket):
        result = ctr_import(socket, archive)
        assert result.returncode == 0, result.stderr
    # The archive's own files (manifest.json, repositories) are written as blobs nothing refers to; each
    # daemon collects them once the import's lease is gone, containerd a moment later on its scheduler.
    deadline = time.monotonic() + 15
    differences, mine, theirs = compare_listings(crishim, oracle)
    while (differences or mine != theirs) and time.monotonic() < deadline:
        time.sleep(0.5)
        differences, mine, theirs = compare_listings(crishim, oracle)
    assert differences == []
    assert mine == theirs
    assert tagged in ctr(crishim.socket, "images", "ls", "-q").stdout.split()
    # Nothing of the import is left in flight: no ingest, and only committed layer snapshots.
    assert ctr(crishim.socket, "content", "active").stdout.splitlines()[1:] == []
    assert crishim.crictl("inspecti", tagged).returncode == 0


def test_a_second_import_writes_nothing_again(crishim: Crishim, archives: dict[str, tuple[Path, str]]) -> None:
    archive, _ = archives["busybox"]
    assert ctr_import(crishim.socket, archive).returncode == 0
    written = {d: crishim.blob_path(d).stat().st_mtime_ns for d in crishim.blobs()}
    result = ctr_import(crishim.socket, archive)
    assert result.returncode == 0, result.stderr
    assert {d: crishim.blob_path(d).stat().st_mtime_ns for d in crishim.blobs()} == written


def test_an_imported_image_runs_in_a_pod(cri: CriEnv, archives: dict[str, tuple[Path, str]]) -> None:
    # The seed image: nothing the environment pulled shares its id, so the container can only run from the import.
    archive, tagged = archives["seed"]
    result = ctr_import(cri.daemon.socket, archive)
    assert result.returncode == 0, result.stderr
    image = cri.json("inspecti", tagged)["status"]
    pod_id = cri.runp()
    config = cri.container("imported", command=["sh", "-c", "cat /etc/debian_version; sleep 1000"])
    config["image"] = {"image": tagged}
    container_id = cri.run(pod_id, config)
    cri.wait_log(container_id, "12.")
    assert cri.status(container_id)["imageRef"] in [image["id"], *image["repoDigests"]]


# --- hostile writes and applies ------------------------------------------------------------------------------


@pytest.fixture
def channel(crishim: Crishim) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"unix://{crishim.socket}") as chan:
        yield chan


METADATA = (("containerd-namespace", NAMESPACE),)


def _write(channel: grpc.Channel, *requests: content_pb2.WriteContentRequest) -> list[content_pb2.WriteContentResponse]:
    stub = content_pb2_grpc.ContentStub(channel)
    return list(stub.Write(iter(requests), metadata=METADATA, timeout=30))


def test_a_blob_whose_bytes_do_not_match_its_digest_is_refused_and_not_kept(crishim: Crishim,
                                                                          channel: grpc.Channel) -> None:
    data = b"not what the digest says"
    claimed = "sha256:" + hashlib.sha256(b"something else entirely").hexdigest()
    with pytest.raises(grpc.RpcError) as refused:
        _write(channel, content_pb2.WriteContentRequest(action=content_pb2.COMMIT, ref="hostile-1",
                                                        total=len(data), expected=claimed, data=data))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert claimed not in crishim.blobs()
    assert ctr(crishim.socket, "content", "ls", "-q").stdout.split() == []
    assert ctr(crishim.socket, "content", "active").stdout.splitlines()[1:] == []


def test_a_write_resumes_at_its_offset_and_commits_with_labels(crishim: Crishim, channel: grpc.Channel) -> None:
    data = b"0123456789" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    first = _write(channel,
                   content_pb2.WriteContentRequest(action=content_pb2.STAT, ref="resume", total=len(data),
                                                   expected=digest),
                   content_pb2.WriteContentRequest(action=content_pb2.WRITE, ref="resume", data=data[:4000]))
    assert [r.offset for r in first] == [0, 4000]
    with pytest.raises(grpc.RpcError) as skipped:
        _write(channel, content_pb2.WriteContentRequest(action=content_pb2.WRITE, ref="resume", total=len(data),
                                                        expected=digest, offset=5000, data=data[5000:]))
    assert skipped.value.code() == grpc.StatusCode.OUT_OF_RANGE
    done = _write(channel, content_pb2.WriteContentRequest(
        action=content_pb2.COMMIT, ref="resume", total=len(data), expected=digest, offset=4000, data=data[4000:],
        labels={"containerd.io/gc.root": "yes"}))
    assert done[-1].offset == len(data) and done[-1].digest == digest
    info = ctr(crishim.socket, "content", "ls").stdout
    assert digest in info and "containerd.io/gc.root=yes" in info
    with pytest.raises(grpc.RpcError) as again:
        _write(channel, content_pb2.WriteContentRequest(action=content_pb2.STAT, ref="resume-2", total=len(data),
                                                        expected=digest))
    assert again.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_a_layer_is_applied_only_onto_an_active_snapshot_of_the_daemon(crishim: Crishim, channel: grpc.Channel,
                                                                       tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    layer = _tar_with_one_file(tmp_path)
    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    _write(channel, content_pb2.WriteContentRequest(action=content_pb2.COMMIT, ref="layer", total=len(layer),
                                                    expected=digest, data=layer,
                                                    labels={"containerd.io/gc.root": "yes"}))
    diff = diff_pb2_grpc.DiffStub(channel)
    descriptor = descriptor_pb2.Descriptor(media_type=LAYER, digest=digest, size=len(layer))
    with pytest.raises(grpc.RpcError) as refused:
        diff.Apply(diff_pb2.ApplyRequest(diff=descriptor, mounts=[
            mount_pb2.Mount(type="bind", source=str(outside), options=["rbind", "rw"])]), metadata=METADATA)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(outside.iterdir()) == []

    snapshots = snapshots_pb2_grpc.SnapshotsStub(channel)
    prepared = snapshots.Prepare(snapshots_pb2.PrepareSnapshotRequest(snapshotter="overlayfs", key="apply-here"),
                                 metadata=METADATA)
    applied = diff.Apply(diff_pb2.ApplyRequest(diff=descriptor, mounts=prepared.mounts), metadata=METADATA)
    assert applied.applied.digest == digest  # an uncompressed layer is its own diff
    assert applied.applied.size == len(layer)
    upper = Path(prepared.mounts[0].source)
    assert (upper / "greeting").read_text() == "hello\n"


def _tar_with_one_file(workdir: Path) -> bytes:
    source = workdir / "layer-source"
    source.mkdir()
    (source / "greeting").write_text("hello\n")
    archive = workdir / "layer.tar"
    run("tar", "-C", source, "--numeric-owner", "--owner=0", "--group=0", "-cf", archive, "greeting")
    return archive.read_bytes()
