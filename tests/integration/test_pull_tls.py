"""Pulls from a registry that serves HTTPS with a private CA, as hosts.toml configures it (containerd's keys:
``ca``, ``client``, ``skip_verify``), against Debian's docker-registry with real certificates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Crishim
from tests.support.images import PushedImage
from tests.support.registry import Registry, RegistryTLS, start_registry
from tests.support.tls import CertAuthority, make_ca


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tls_registry(tmp_path: Path, registry: Registry, ca: CertAuthority,
                 test_images: dict[str, PushedImage]) -> Iterator[Registry]:
    """HTTPS only, serving what the plain test registry holds."""
    served = start_registry(tmp_path / "tls-registry", storage=registry.storage,
                            tls=RegistryTLS(ca.server_cert, ca.server_key, ca.ca))
    yield served
    served.stop()


@pytest.fixture
def mtls_registry(tmp_path: Path, registry: Registry, ca: CertAuthority,
                  test_images: dict[str, PushedImage]) -> Iterator[Registry]:
    """HTTPS that also asks every client for a certificate the CA signed."""
    served = start_registry(tmp_path / "mtls-registry", storage=registry.storage,
                            tls=RegistryTLS(ca.server_cert, ca.server_key, ca.ca, (ca.client_cert, ca.client_key)))
    yield served
    served.stop()


def _hosts_toml(daemon: Crishim, registry: Registry, body: str) -> Path:
    folder = daemon.certs_dir / registry.host
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hosts.toml").write_text(f'server = "https://{registry.host}"\n{body}')
    return folder


def _pull(daemon: Crishim, registry: Registry, image: PushedImage) -> str:
    ref = f"{registry.host}/{image.repository}:{image.tag}"
    daemon.crictl("pull", ref)
    return ref


def test_a_private_ca_is_trusted_from_hosts_toml(
    crishim_factory: Callable[..., Crishim], tls_registry: Registry, ca: CertAuthority,
    test_images: dict[str, PushedImage],
) -> None:
    daemon = crishim_factory(trusted_hosts=[])
    _hosts_toml(daemon, tls_registry, f'ca = "{ca.ca}"\n')
    image = test_images["oci"]
    _pull(daemon, tls_registry, image)
    assert [entry["id"] for entry in daemon.images()] == [image.config_digest]


def test_relative_file_names_are_read_from_the_hosts_toml_folder(
    crishim_factory: Callable[..., Crishim], mtls_registry: Registry, ca: CertAuthority,
    test_images: dict[str, PushedImage],
) -> None:
    daemon = crishim_factory(trusted_hosts=[])
    folder = _hosts_toml(daemon, mtls_registry, 'ca = "ca.pem"\nclient = [["client.pem", "client.key"]]\n')
    for path in (ca.ca, ca.client_cert, ca.client_key):
        (folder / path.name).write_bytes(path.read_bytes())
    _pull(daemon, mtls_registry, test_images["oci"])
    assert len(daemon.images()) == 1


def test_an_unknown_ca_is_refused_and_nothing_is_stored(
    crishim_factory: Callable[..., Crishim], tls_registry: Registry, test_images: dict[str, PushedImage],
) -> None:
    daemon = crishim_factory(trusted_hosts=[])
    _hosts_toml(daemon, tls_registry, "")
    image = test_images["oci"]
    proc = daemon.crictl("pull", f"{tls_registry.host}/{image.repository}:{image.tag}", check=False)
    assert proc.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in proc.stderr, proc.stderr
    assert daemon.images() == [] and daemon.blobs() == set()


def test_skip_verify_accepts_any_certificate(
    crishim_factory: Callable[..., Crishim], tls_registry: Registry, test_images: dict[str, PushedImage],
) -> None:
    daemon = crishim_factory(trusted_hosts=[])
    _hosts_toml(daemon, tls_registry, "skip_verify = true\n")
    _pull(daemon, tls_registry, test_images["oci"])
    assert len(daemon.images()) == 1


def test_a_registry_asking_for_a_client_certificate(
    crishim_factory: Callable[..., Crishim], mtls_registry: Registry, ca: CertAuthority,
    test_images: dict[str, PushedImage],
) -> None:
    daemon = crishim_factory(trusted_hosts=[])
    image = test_images["oci"]
    _hosts_toml(daemon, mtls_registry, f'ca = "{ca.ca}"\n')
    refused = daemon.crictl("pull", f"{mtls_registry.host}/{image.repository}:{image.tag}", check=False)
    assert refused.returncode != 0 and daemon.images() == []
    _hosts_toml(daemon, mtls_registry, f'ca = "{ca.ca}"\nclient = [["{ca.client_cert}", "{ca.client_key}"]]\n')
    _pull(daemon, mtls_registry, image)
    assert [entry["id"] for entry in daemon.images()] == [image.config_digest]


def test_a_missing_ca_file_is_a_clear_error(
    crishim_factory: Callable[..., Crishim], tls_registry: Registry, test_images: dict[str, PushedImage],
    tmp_path: Path,
) -> None:
    daemon = crishim_factory(trusted_hosts=[])
    missing = tmp_path / "no-such-ca.pem"
    _hosts_toml(daemon, tls_registry, f'ca = "{missing}"\n')
    image = test_images["oci"]
    proc = daemon.crictl("pull", f"{tls_registry.host}/{image.repository}:{image.tag}", check=False)
    assert proc.returncode != 0
    assert str(missing) in proc.stderr and "InvalidArgument" in proc.stderr, proc.stderr
    assert daemon.images() == [] and daemon.blobs() == set()
