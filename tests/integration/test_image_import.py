"""``crishim image import`` of OCI-layout and docker-archive tarballs gives what ``ctr images import`` gives
containerd 1.6 for the same tarball: the same image records, content with its labels, and layer snapshots
keyed by the same chain IDs."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.containerd import Containerd, containerd_under
from tests.support.daemon import Crishim, python_executable
from tests.support.images import PushedImage
from tests.support.procs import run
from tests.support.tools import binary


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory, test_images: dict[str, PushedImage]) -> dict[str, Path]:
    """Tarballs skopeo writes from the test registry: an OCI layout, a docker-archive, a multi-platform layout."""
    skopeo, folder = binary("skopeo"), tmp_path_factory.mktemp("archives")
    plan = {
        "oci": (test_images["oci"], [], "oci-archive:{path}:v1"),
        "docker": (test_images["docker"], [], "docker-archive:{path}:demo/busybox:v1"),
        "multiarch": (test_images["multiarch"], ["--all"], "oci-archive:{path}:v1"),
    }
    paths = {}
    for name, (image, extra, destination) in plan.items():
        path = folder / f"{name}.tar"
        run(skopeo, "--insecure-policy", "copy", "-q", "--src-tls-verify=false", *extra,
            f"docker://{image.ref}", destination.format(path=path))
        paths[name] = path
    return paths


def crishim_import(daemon: Crishim, *args: str, stdin: Path | None = None) -> subprocess.CompletedProcess[str]:
    with open(stdin or "/dev/null", "rb") as source:
        return subprocess.run([str(python_executable()), "-m", "cri", "-a", str(daemon.socket), "image", "import",
                               *args], stdin=source, capture_output=True, text=True, timeout=120)


def ctr(socket: Path, *args: str) -> str:
    return run(binary("ctr"), "-a", socket, "-n", "k8s.io", *args).stdout


def state(socket: Path) -> tuple[str, set[tuple[str, str, frozenset[str]]], set[str]]:
    """Image listing, content (digest, size, labels; not the age), snapshots (key, parent, kind) as ctr shows them."""
    content = set()
    for line in ctr(socket, "content", "ls").splitlines()[1:]:
        digest, size, _age, labels = re.split(r"\t+", line)
        content.add((digest, size, frozenset(labels.split(","))))
    snapshots = {" ".join(line.split()) for line in ctr(socket, "snapshots", "ls").splitlines()}
    return ctr(socket, "images", "ls"), content, snapshots


@pytest.fixture
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """A containerd of the test's own: containerd 1.6's CRI keeps a ghost of an image imported under a name it
    normalises (``--digests`` names), which later tests of the shared oracle would see."""
    with containerd_under(tmp_path_factory.getbasetemp(), []) as daemon:
        yield daemon


def settle(oracle: Containerd) -> None:
    """containerd collects what the import's lease held once a synchronous lease removal asks it to."""
    lease = oracle.ctr("leases", "create").split()[0]
    oracle.ctr("leases", "rm", "--sync", lease)


@pytest.mark.parametrize(("archive", "flags"), [("oci", []), ("docker", []),
                                                ("multiarch", ["--all-platforms", "--digests"])])
def test_import_equals_ctr_import(archives: dict[str, Path], crishim: Crishim, oracle: Containerd,
                                  archive: str, flags: list[str]) -> None:
    oracle.ctr("images", "import", *flags, str(archives[archive]))
    settle(oracle)
    proc = crishim_import(crishim, *flags, str(archives[archive]))
    assert proc.returncode == 0, proc.stderr
    assert "...done" in proc.stdout
    images, content, snapshots = state(crishim.socket)
    assert images.count("\n") >= 2, images
    assert images == ctr(oracle.socket, "images", "ls")
    assert state(crishim.socket) == state(oracle.socket)
    assert content and len(snapshots) > 1


def test_docker_archive_names_and_runs_from_the_cri(archives: dict[str, Path], crishim: Crishim) -> None:
    proc = crishim_import(crishim, "-", stdin=archives["docker"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("unpacking docker.io/demo/busybox:v1 (sha256:"), proc.stdout
    tags = [tag for image in crishim.images() for tag in image["repoTags"]]
    assert tags == ["docker.io/demo/busybox:v1"]
    status = crishim.crictl_json("inspecti", "docker.io/demo/busybox:v1")
    assert status["status"]["id"].startswith("sha256:")


def test_name_overrides_the_archive(archives: dict[str, Path], crishim: Crishim) -> None:
    proc = crishim_import(crishim, "--name", "demo/web:1", str(archives["oci"]))
    assert proc.returncode == 0, proc.stderr
    assert [tag for image in crishim.images() for tag in image["repoTags"]] == ["docker.io/demo/web:1"]


def test_not_an_archive_is_invalid_and_leaves_nothing(tmp_path: Path, crishim: Crishim) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tarball\n" * 100)
    proc = crishim_import(crishim, str(junk))
    assert proc.returncode == 1
    assert proc.stderr.startswith("crishim: not a tar archive"), proc.stderr
    assert ctr(crishim.socket, "images", "ls", "-q") == ""
    assert ctr(crishim.socket, "content", "ls", "-q") == ""
    assert ctr(crishim.socket, "leases", "ls", "-q") == ""
    assert crishim.blobs() == set()
