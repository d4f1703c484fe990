import pytest

from errdefs import InvalidArgument
from store.digest import Digest
from store.reference import Reference

HEX = "a" * 64


@pytest.mark.parametrize(("text", "expected"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("user/app", "docker.io/user/app:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("quay.io/coreos/etcd:v3", "quay.io/coreos/etcd:v3"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/app:v1", "localhost:5000/app:v1"),
    ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t"),
    ("[::1]:5000/app:v1", "[::1]:5000/app:v1"),
    (f"busybox@sha256:{HEX}", f"docker.io/library/busybox@sha256:{HEX}"),
    (f"busybox:1.36@sha256:{HEX}", f"docker.io/library/busybox:1.36@sha256:{HEX}"),
    ("a__b/c-d.e_f:tag_1.0-x", "docker.io/a__b/c-d.e_f:tag_1.0-x"),
])
def test_normalises_like_docker(text: str, expected: str) -> None:
    assert str(Reference.parse(text)) == expected


def test_digest_reference_has_no_default_tag() -> None:
    ref = Reference.parse(f"busybox@sha256:{HEX}")
    assert ref.tag is None
    assert ref.digest == Digest("sha256", HEX)
    assert ref.object == f"sha256:{HEX}"


def test_tag_and_digest_fetches_by_digest() -> None:
    ref = Reference.parse(f"example.com/app:v1@sha256:{HEX}")
    assert (ref.domain, ref.path, ref.tag) == ("example.com", "app", "v1")
    assert ref.object == f"sha256:{HEX}"
    assert str(ref.with_digest(Digest("sha256", "b" * 64))) == f"example.com/app@sha256:{'b' * 64}"


@pytest.mark.parametrize("text", [
    "", "UPPER/case", "Busybox", "a:b:c@@", "busybox:", "busybox@sha256:abc", "busybox@md5:" + HEX,
    "-leading/dash", "a//b", "app:" + "t" * 129, "example.com/" + "a" * 260, "trailing/", "sp ace",
    "busybox:bad/tag",
])
def test_rejects_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument):
        Reference.parse(text)


@pytest.mark.parametrize(("text", "hostname"), [
    ("busybox", "docker.io"), ("127.0.0.1:5000/a", "127.0.0.1"), ("[::1]:5000/a", "[::1]"),
    ("registry.example/a", "registry.example"),
])
def test_hostname_drops_the_port(text: str, hostname: str) -> None:
    assert Reference.parse(text).hostname == hostname
