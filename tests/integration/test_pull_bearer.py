"""The bearer-token flow against docker-registry with token auth, and plain HTTP found without any hosts.toml."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.support.daemon import Crishim
from tests.support.images import PushedImage
from tests.support.registry import Registry, start_registry
from tests.support.token_server import ISSUER, SERVICE, TokenServer, start_token_server


@dataclass
class TokenRegistry:
    registry: Registry
    tokens: TokenServer


@pytest.fixture(scope="module")
def token_registry(registry: Registry, tmp_path_factory: pytest.TempPathFactory,
                   test_images: dict[str, PushedImage]) -> Iterator[TokenRegistry]:
    workdir = tmp_path_factory.mktemp("token-registry")
    tokens = start_token_server(workdir, "reader", secrets.token_urlsafe(12))
    token = {"realm": tokens.realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(tokens.cert_path)}
    # Serves the same storage as the open registry, so every test image is there behind tokens.
    protected = start_registry(workdir, token=token, storage=registry.storage)
    yield TokenRegistry(protected, tokens)
    protected.stop()
    tokens.stop()


def ref_on(host: str, image: PushedImage) -> str:
    return f"{host}/{image.repository}:{image.tag}"


def test_pull_with_basic_credentials_for_a_token(
    crishim: Crishim, token_registry: TokenRegistry, test_images: dict[str, PushedImage]
) -> None:
    tokens, image = token_registry.tokens, test_images["oci"]
    before = len(tokens.requests)
    crishim.crictl("pull", "--creds", f"{tokens.username}:{tokens.password}",
                   ref_on(token_registry.registry.host, image))
    assert tokens.requests[before:] == ["GET"]  # one token, reused for every blob of the pull
    (entry,) = crishim.images()
    assert entry["id"] == image.config_digest


def test_pull_with_identity_token_from_config(
    crishim_factory: Callable[..., Crishim], token_registry: TokenRegistry, test_images: dict[str, PushedImage]
) -> None:
    host, tokens = token_registry.registry.host, token_registry.tokens
    daemon = crishim_factory(auth_fields={host: {"identity_token": tokens.identity_token}})
    before = len(tokens.requests)
    daemon.crictl("pull", ref_on(host, test_images["docker"]))
    assert tokens.requests[before:] == ["POST"]
    assert [e["id"] for e in daemon.images()] == [test_images["docker"].config_digest]


@pytest.mark.parametrize("creds", ["none", "wrong"])
def test_token_refused_fails_cleanly(
    crishim: Crishim, token_registry: TokenRegistry, test_images: dict[str, PushedImage], creds: str
) -> None:
    extra = ("--creds", f"{token_registry.tokens.username}:wrong") if creds == "wrong" else ()
    proc = crishim.crictl("pull", *extra, ref_on(token_registry.registry.host, test_images["oci"]), check=False)
    assert proc.returncode != 0
    assert "authentication failed" in proc.stderr.lower(), proc.stderr
    assert crishim.images() == []
    assert crishim.blobs() == set()


def test_loopback_registry_needs_no_hosts_toml(
    crishim_factory: Callable[..., Crishim], test_images: dict[str, PushedImage]
) -> None:
    daemon = crishim_factory(trusted_hosts=[])
    assert not any(daemon.certs_dir.iterdir())
    image = test_images["oci"]
    daemon.crictl("pull", image.ref)
    assert [e["id"] for e in daemon.images()] == [image.config_digest]
