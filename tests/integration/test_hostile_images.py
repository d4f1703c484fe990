"""Images a registry may serve that crishim must list and remove without one of them breaking the others."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pytest

from tests.support.containerd import Containerd
from tests.support.cri_configs import container_config
from tests.support.cri_env import CriEnv
from tests.support.daemon import Crishim
from tests.support.images import PushedImage
from tests.support.registry import Registry
from tests.support.registry_push import descriptor, push_blob, push_manifest, push_variant

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _one_file_layer() -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"hello\n"
        info = tarfile.TarInfo("hello")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    return gzip.compress(raw.getvalue(), mtime=0), diff_id


def push_image_with_config(registry: Registry, repository: str, config_fields: dict[str, object]) -> str:
    """Push a one-layer image whose config carries ``config_fields``; return its reference."""
    layer, diff_id = _one_file_layer()
    layer_digest = push_blob(registry, repository, layer)
    config_bytes = json.dumps({"architecture": "amd64", "os": "linux", "config": config_fields,
                               "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config = push_blob(registry, repository, config_bytes)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, config, len(config_bytes)),
                "layers": [descriptor(OCI_LAYER_GZIP, layer_digest, len(layer))]}
    push_manifest(registry, repository, "v1", OCI_MANIFEST, manifest)
    return f"{registry.host}/{repository}:v1"


@pytest.mark.parametrize(
    ("label", "user"),
    [("superscript", "²"), ("huge-uid", "1" * 23), ("arabic-digits", "١٢٣:0"), ("underscored", "1_000")],
)
def test_image_user_that_is_no_uid_is_a_username_and_breaks_no_listing(
    crishim: Crishim, oracle: Containerd, registry: Registry, test_images: dict[str, PushedImage],
    label: str, user: str,
) -> None:
    ref = push_image_with_config(registry, f"test/hostile-user-{label}", {"User": user})
    good = test_images["oci"].ref
    for daemon in (crishim.crictl_client, oracle.crictl_client):
        daemon.run("pull", good)
        daemon.run("pull", ref)
    mine = {i["repoTags"][0]: i for i in crishim.images()}
    theirs = {i["repoTags"][0]: i for i in oracle.crictl_client.images()}
    assert set(mine) == set(theirs) == {good, ref}
    assert (mine[ref].get("uid"), mine[ref]["username"]) == (theirs[ref].get("uid"), theirs[ref]["username"])
    assert mine[ref]["username"] == user.partition(":")[0]
    assert crishim.crictl_json("inspecti", ref)["status"]["username"] == mine[ref]["username"]
    crishim.crictl("rmi", ref)
    assert [i["repoTags"] for i in crishim.images()] == [[good]]


def test_an_image_config_of_null_is_an_empty_one_for_create_container(
    cri: CriEnv, registry: Registry, test_images: dict[str, PushedImage]
) -> None:
    base = test_images["oci"]
    ref = push_variant(registry, base.repository, base.tag, "test/hostile-config-null",
                       edit_config=lambda doc: doc.__setitem__("config", None))
    cri.crictl("pull", ref)
    pod_id = cri.runp()
    config = container_config("null-config", ref, command=["/bin/sh", "-c", "echo $PATH; exit 3"])
    container_id = cri.create(pod_id, config).stdout.strip()
    cri.start(container_id)
    status = cri.wait_state(container_id, "CONTAINER_EXITED")
    assert status["exitCode"] == 3
