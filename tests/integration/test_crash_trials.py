"""Seeded kill -9 trials: the daemon is killed at a random moment of an operation and restarted; once the
client has ended (ctr waits for the daemon to come back and carries on) and the restart's collection has
run, ``crishim check`` must find nothing, and the operation then repeats to success.

The operations: a pull, a removal (its collection runs after the answer), a blob written through
containerd's content service (``ctr content ingest``, resumed by the repeat), ``ctr images import`` (content
writes, then layers applied through the diff service), the diff service's applies alone (the import's
content already there) and ``crishim image import``. Trial i runs operation i modulo their number, so a
bounded run covers each; the moment of the kill is drawn from the seed. The suite runs a bounded number
of trials; ``CRISHIM_CRASH_TRIALS`` and ``CRISHIM_CRASH_SEED`` run more.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.archives import docker_archive
from tests.support.daemon import Crishim, python_executable
from tests.support.images import PushedImage
from tests.support.procs import wait_until
from tests.support.seed_image import SeedImage
from tests.support.tools import binary

TRIALS = int(os.environ.get("CRISHIM_CRASH_TRIALS", "12"))
SEED = int(os.environ.get("CRISHIM_CRASH_SEED", "20261201"))
NAMESPACE = "k8s.io"
TAGGED = "registry.test/crash/nginx:v1"
# Large enough that writing it through the content service takes about a second here.
BLOB_BYTES = 256 << 20
INGEST_REF = "crash-trial-blob"
IMPORT = ("images", "import", "--digests", "--snapshotter=overlayfs")


@dataclass(frozen=True)
class Inputs:
    big: str  # the seed image's reference
    small: str
    archive: Path  # the seed image as a docker-archive naming it TAGGED
    blob: Path
    blob_digest: str


@dataclass(frozen=True)
class Client:
    argv: list[str]
    stdin: Path | None = None


@dataclass(frozen=True)
class Operation:
    span: float  # about how long the part under trial takes here: the kill lands anywhere in [0, span)
    client: Callable[[Crishim, Inputs], Client]
    repeat: Callable[[Crishim, Inputs], None]  # after the restart: again, to success, and what it left
    prepare: Callable[[Crishim, Inputs], None] = lambda daemon, inputs: None
    # When the part under trial has begun (the span counts from then); None: at once.
    begun: Callable[[Crishim], bool] | None = None


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, seed_image: SeedImage,
           test_images: dict[str, PushedImage]) -> Inputs:
    workdir = tmp_path_factory.mktemp("crash-inputs")
    blob, rng, hasher = workdir / "blob", random.Random(SEED), hashlib.sha256()
    with blob.open("wb") as out:
        for _ in range(BLOB_BYTES >> 20):
            chunk = rng.randbytes(1 << 20)
            out.write(chunk)
            hasher.update(chunk)
    return Inputs(seed_image.pushed.ref, test_images["oci"].ref,
                  docker_archive(seed_image.ref, workdir / "seed.tar", TAGGED), blob, f"sha256:{hasher.hexdigest()}")


def _ctr(daemon: Crishim, *args: str) -> list[str]:
    return [str(binary("ctr")), "-a", str(daemon.socket), "-n", NAMESPACE, *args]


def _run(client: Client) -> subprocess.CompletedProcess[str]:
    with client.stdin.open("rb") if client.stdin else open(os.devnull, "rb") as stdin:
        return subprocess.run(client.argv, stdin=stdin, capture_output=True, text=True, timeout=300)


def _succeeds(client: Client) -> None:
    result = _run(client)
    assert result.returncode == 0, f"{' '.join(client.argv)}:\n{result.stderr}"


def _tags(daemon: Crishim) -> set[str]:
    return {tag for image in daemon.images() for tag in image["repoTags"]}


# --- the operations ------------------------------------------------------------------------------------


def _pull_client(daemon: Crishim, inputs: Inputs) -> Client:
    return Client(daemon.crictl_client.command("pull", inputs.big))


def _rmi_client(daemon: Crishim, inputs: Inputs) -> Client:
    return Client(daemon.crictl_client.command("rmi", inputs.big))


def _pull_again(daemon: Crishim, inputs: Inputs) -> None:
    daemon.crictl("pull", inputs.small)
    daemon.crictl("pull", inputs.big)
    assert {inputs.small, inputs.big} <= _tags(daemon)


def _ingest_client(daemon: Crishim, inputs: Inputs) -> Client:
    return Client(_ctr(daemon, "content", "ingest", "--expected-size", str(BLOB_BYTES), "--expected-digest",
                       inputs.blob_digest, INGEST_REF), inputs.blob)


def _ingest_again(daemon: Crishim, inputs: Inputs) -> None:
    active = _run(Client(_ctr(daemon, "content", "active"))).stdout.splitlines()[1:]
    print(f"  the ingest left: {active or 'nothing'}")
    _succeeds(_ingest_client(daemon, inputs))
    listed = _run(Client(_ctr(daemon, "content", "ls"))).stdout.split()
    assert inputs.blob_digest in listed


def _ctr_import_client(daemon: Crishim, inputs: Inputs) -> Client:
    return Client(_ctr(daemon, *IMPORT, "-"), inputs.archive)


def _ctr_import_content_only(daemon: Crishim, inputs: Inputs) -> None:
    _succeeds(Client(_ctr(daemon, *IMPORT, "--no-unpack", "-"), inputs.archive))


def _applying(daemon: Crishim) -> bool:
    """Whether ctr has prepared a snapshot to apply a layer onto (the import's content is all written)."""
    listed = _run(Client(_ctr(daemon, "snapshots", "--snapshotter", "overlayfs", "ls"))).stdout
    return "extract-" in listed


def _ctr_import_again(daemon: Crishim, inputs: Inputs) -> None:
    _succeeds(_ctr_import_client(daemon, inputs))
    assert TAGGED in _tags(daemon)


def _import_client(daemon: Crishim, inputs: Inputs) -> Client:
    return Client([str(python_executable()), "-m", "cri", "image", "import", "--address", str(daemon.socket),
                   str(inputs.archive)])


def _import_again(daemon: Crishim, inputs: Inputs) -> None:
    _succeeds(_import_client(daemon, inputs))
    assert TAGGED in _tags(daemon)


OPERATIONS = {
    "pull": Operation(3.0, _pull_client, _pull_again),
    "rmi": Operation(3.0, _rmi_client, _pull_again, prepare=lambda daemon, inputs: daemon.crictl("pull", inputs.big)),
    "content-ingest": Operation(1.5, _ingest_client, _ingest_again),
    "ctr-import": Operation(3.0, _ctr_import_client, _ctr_import_again),
    "diff-apply": Operation(1.6, _ctr_import_client, _ctr_import_again, prepare=_ctr_import_content_only,
                            begun=_applying),
    "crishim-import": Operation(2.5, _import_client, _import_again),
}


# --- the trials ----------------------------------------------------------------------------------------


def _check(daemon: Crishim) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python_executable()), "-m", "cri", "check", "--root", str(daemon.root),
                           "--state", str(daemon.state)], capture_output=True, text=True, timeout=120)


def _wait_clean(daemon: Crishim, when: str) -> None:
    try:
        wait_until(lambda: _check(daemon).returncode == 0, timeout=60, what="crishim check to find nothing")
    except TimeoutError:
        pytest.fail(f"{when}:\n{_check(daemon).stdout}")


@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_9_during_an_operation_leaves_a_consistent_node(
    crishim_factory: Callable[..., Crishim], inputs: Inputs, trial: int,
) -> None:
    name = sorted(OPERATIONS)[trial % len(OPERATIONS)]
    operation = OPERATIONS[name]
    delay = random.Random(SEED * 1000 + trial).uniform(0.0, operation.span)
    daemon = crishim_factory()
    operation.prepare(daemon, inputs)
    print(f"trial {trial}: kill -9 {delay:.2f}s into {name} (seed {SEED})")
    client = operation.client(daemon, inputs)
    said = daemon.workdir / "client.stderr"
    with client.stdin.open("rb") if client.stdin else open(os.devnull, "rb") as stdin, said.open("wb") as stderr:
        victim = subprocess.Popen(client.argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        if operation.begun is not None:
            wait_until(lambda: operation.begun(daemon) or victim.poll() is not None, timeout=60,
                       what=f"{name} to begin")
        time.sleep(delay)
        daemon.kill()
        # Before the client has ended: ctr takes a refused connection for a ref another writer holds and
        # retries until the daemon is back, then carries on against the restarted one.
        daemon.start()
        victim.wait(timeout=120)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    last = said.read_text(errors="replace").strip().splitlines()[-1:] or [""]
    print(f"  the client ended with {victim.returncode}: {last[0][:200]}")
    _wait_clean(daemon, f"after kill -9 {delay:.2f}s into {name}")
    operation.repeat(daemon, inputs)
    _wait_clean(daemon, f"after {name} was repeated")
    # Passed: its root goes now, not with the session (the full run would fill the disk).
    daemon.cleanup()
    shutil.rmtree(daemon.root, ignore_errors=True)
