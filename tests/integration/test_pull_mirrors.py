"""hosts.toml mirrors: tried in order, a dead one skipped, the image named after the reference, not the mirror."""

from __future__ import annotations

from collections.abc import Callable

from tests.support.crishim_store import stored_content
from tests.support.daemon import Crishim
from tests.support.images import PushedImage
from tests.support.procs import free_port
from tests.support.registry import Registry

UPSTREAM = "registry.invalid"


def test_pull_through_the_first_live_mirror(
    crishim_factory: Callable[..., Crishim], registry: Registry, test_images: dict[str, PushedImage]
) -> None:
    daemon = crishim_factory(trusted_hosts=[])
    dead = f"127.0.0.1:{free_port()}"
    folder = daemon.certs_dir / UPSTREAM
    folder.mkdir(parents=True)
    (folder / "hosts.toml").write_text(
        f'server = "http://{dead}"\n'
        f'[host."http://{dead}"]\n  capabilities = ["pull", "resolve"]\n'
        f'[host."http://{registry.host}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    image = test_images["oci"]
    ref = f"{UPSTREAM}/{image.repository}:{image.tag}"
    daemon.crictl("pull", ref)
    (entry,) = daemon.images()
    assert entry["id"] == image.config_digest
    assert entry["repoTags"] == [ref]
    assert entry["repoDigests"] == [f"{UPSTREAM}/{image.repository}@{image.digest}"]
    for record in stored_content(daemon.root).values():
        assert record.labels[f"containerd.io/distribution.source.{UPSTREAM}"] == image.repository


def test_no_live_host_fails_without_changes(
    crishim_factory: Callable[..., Crishim], test_images: dict[str, PushedImage]
) -> None:
    daemon = crishim_factory(trusted_hosts=[])
    dead = f"127.0.0.1:{free_port()}"
    (daemon.certs_dir / UPSTREAM).mkdir(parents=True)
    (daemon.certs_dir / UPSTREAM / "hosts.toml").write_text(f'server = "http://{dead}"\n')
    proc = daemon.crictl("pull", f"{UPSTREAM}/test/busybox-oci:v1", check=False)
    assert proc.returncode != 0
    assert "unreachable" in proc.stderr or "Unavailable" in proc.stderr, proc.stderr
    assert daemon.images() == [] and daemon.blobs() == set()
