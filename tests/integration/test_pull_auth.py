"""Pulling from the htpasswd-protected registry: credentials from crictl, from the config file, or none."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.compare import assert_same_images, grpc_code
from tests.support.containerd import Containerd
from tests.support.daemon import Crishim
from tests.support.images import AUTH, PushedImage
from tests.support.redirect_registry import RedirectingFront, start_redirecting_front
from tests.support.registry import Registry


def _creds(registry: Registry) -> str:
    return f"{registry.username}:{registry.password}"


def test_pull_with_creds_matches_containerd(
    crishim: Crishim, oracle: Containerd, auth_registry: Registry, test_images: dict[str, PushedImage]
) -> None:
    ref = test_images[AUTH].ref
    oracle.crictl("pull", "--creds", _creds(auth_registry), ref)
    crishim.crictl("pull", "--creds", _creds(auth_registry), ref)
    assert_same_images(crishim.images(), oracle.crictl_client.images())


@pytest.mark.parametrize("creds", ["none", "wrong password"])
def test_pull_without_valid_creds_fails_cleanly(
    crishim: Crishim, auth_registry: Registry, test_images: dict[str, PushedImage], creds: str
) -> None:
    extra = () if creds == "none" else ("--creds", f"{auth_registry.username}:not-{auth_registry.password}")
    proc = crishim.crictl("pull", *extra, test_images[AUTH].ref, check=False)
    assert proc.returncode != 0
    # containerd 1.6 only says "401 Unauthorized"; crishim names the cause.
    assert "authentication failed" in proc.stderr.lower(), proc.stderr
    assert crishim.images() == []
    assert crishim.blobs() == set()


def test_pull_with_credentials_from_config_file(
    crishim_factory: Callable[..., Crishim], auth_registry: Registry, test_images: dict[str, PushedImage]
) -> None:
    assert auth_registry.username and auth_registry.password
    daemon = crishim_factory(auths={auth_registry.host: (auth_registry.username, auth_registry.password)})
    image = test_images[AUTH]
    daemon.crictl("pull", image.ref)
    (entry,) = daemon.images()
    assert (entry["id"], entry["repoDigests"]) == (image.config_digest, [image.repo_digest])


def test_credentials_never_appear_in_logs_metrics_or_errors(
    crishim: Crishim, auth_registry: Registry, test_images: dict[str, PushedImage]
) -> None:
    assert auth_registry.password
    wrong = f"not-{auth_registry.password}"
    ref = test_images[AUTH].ref
    failed = crishim.crictl("pull", "--creds", f"{auth_registry.username}:{wrong}", ref, check=False)
    crishim.crictl("pull", "--creds", _creds(auth_registry), ref)
    metrics = httpx.get(crishim.metrics_url, timeout=10).text
    log = crishim.log_path.read_text(errors="replace")
    for secret in (auth_registry.password, wrong):
        assert secret not in failed.stderr
        assert secret not in metrics
        assert secret not in log


@pytest.fixture
def redirecting_front(registry: Registry, test_images: dict[str, PushedImage]) -> Iterator[RedirectingFront]:
    front = start_redirecting_front(registry, "front-user", secrets.token_urlsafe(12))
    yield front
    front.stop()


def test_credentials_never_follow_a_redirect_to_another_host(
    crishim: Crishim, redirecting_front: RedirectingFront, test_images: dict[str, PushedImage]
) -> None:
    front, image = redirecting_front, test_images["oci"]
    ref = f"{front.host}/{image.repository}:{image.tag}"
    failed = crishim.crictl("pull", "--creds", f"{front.username}:{front.password}", ref, check=False)
    assert failed.returncode != 0, failed.stdout
    assert front.third_party.seen, "the blob was never requested from the redirect target"
    leaked = [(path, header) for path, header in front.third_party.seen if header]
    assert not leaked, f"the redirect target was sent credentials: {leaked}"
    assert grpc_code(failed.stderr) == "Unauthenticated", failed.stderr
    assert crishim.images() == []
