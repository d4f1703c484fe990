import json

import pytest

from errdefs import InvalidArgument
from store.descriptor import ImageConfig, Index, Manifest
from store.digest import Digest
from store.platforms import Platform

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def manifest(config_type: str = "application/vnd.oci.image.config.v1+json",
             layer_type: str = "application/vnd.oci.image.layer.v1.tar+gzip") -> bytes:
    return json.dumps({"schemaVersion": 2, "config": {"mediaType": config_type, "digest": D1, "size": 10},
                       "layers": [{"mediaType": layer_type, "digest": D2, "size": 20}]}).encode()


def test_manifest_parses() -> None:
    m = Manifest.parse(MANIFEST, manifest())
    assert m.config.digest == Digest.parse(D1)
    assert [layer.size for layer in m.layers] == [20]


@pytest.mark.parametrize("data", [b"{", b"[]", b"\xff", json.dumps({"config": {}}).encode(),
                                  json.dumps({"config": {"digest": D1, "size": -1}, "layers": []}).encode()])
def test_malformed_manifest(data: bytes) -> None:
    with pytest.raises(InvalidArgument, match="malformed"):
        Manifest.parse(MANIFEST, data)


def test_unsupported_media_types() -> None:
    with pytest.raises(InvalidArgument, match="unsupported media type"):
        Manifest.parse(MANIFEST, manifest(config_type="application/x-helm"))
    with pytest.raises(InvalidArgument, match="unsupported media type"):
        Manifest.parse(MANIFEST, manifest(layer_type="application/x-foreign"))


def test_index_keeps_platforms() -> None:
    doc = {"manifests": [{"mediaType": MANIFEST, "digest": D1, "size": 1,
                          "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
                         {"mediaType": MANIFEST, "digest": D2, "size": 2}]}
    index = Index.parse("application/vnd.oci.image.index.v1+json", json.dumps(doc).encode())
    assert [d.platform for d in index.manifests] == [Platform("linux", "arm", "v7"), None]


def test_image_config() -> None:
    doc = {"os": "linux", "architecture": "amd64", "config": {"User": "1000:1000"},
           "rootfs": {"type": "layers", "diff_ids": [D1, D2]}}
    config = ImageConfig.parse(json.dumps(doc).encode())
    assert config.user == "1000:1000"
    assert config.diff_ids == (Digest.parse(D1), Digest.parse(D2))
    with pytest.raises(InvalidArgument):
        ImageConfig.parse(json.dumps({"rootfs": {"diff_ids": ["sha256:short"]}}).encode())
