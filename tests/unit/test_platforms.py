import pytest

from errdefs import InvalidArgument
from store.platforms import Platform


@pytest.mark.parametrize(("text", "expected"), [
    ("linux/amd64", Platform("linux", "amd64")),
    ("linux/x86_64", Platform("linux", "amd64")),
    ("Linux/aarch64", Platform("linux", "arm64")),
    ("linux/arm64/v8", Platform("linux", "arm64")),
    ("linux/arm", Platform("linux", "arm", "v7")),
    ("linux/arm/6", Platform("linux", "arm", "v6")),
])
def test_normalises(text: str, expected: Platform) -> None:
    assert Platform.parse(text) == expected


@pytest.mark.parametrize("text", ["linux", "linux/", "a/b/c/d", ""])
def test_rejects_malformed(text: str) -> None:
    with pytest.raises(InvalidArgument):
        Platform.parse(text)


def test_amd64_host_takes_only_amd64() -> None:
    host = Platform("linux", "amd64")
    assert host.rank(Platform("linux", "amd64")) == 0
    assert host.rank(Platform("linux", "arm64")) is None
    assert host.rank(Platform("windows", "amd64")) is None
    assert host.rank(Platform("linux", "amd64", "v3")) is None


def test_arm_variants_ranked_best_first() -> None:
    host = Platform("linux", "arm", "v7")
    assert host.rank(Platform("linux", "arm", "v7")) == 0
    assert host.rank(Platform("linux", "arm", "v6")) == 1
    assert host.rank(Platform("linux", "arm", "v8")) is None
    arm64 = Platform("linux", "arm64")
    assert arm64.rank(Platform("linux", "arm64")) == 0
    rank_v7 = arm64.rank(Platform("linux", "arm", "v7"))
    assert rank_v7 is not None and rank_v7 > 0


def test_from_spec_reads_oci_fields() -> None:
    spec = {"os": "linux", "architecture": "arm", "variant": "v6"}
    assert Platform.from_spec(spec) == Platform("linux", "arm", "v6")
    assert str(Platform.from_spec(spec)) == "linux/arm/v6"


def test_ranked_best_first_unnamed_matches_others_dropped() -> None:
    from store.platforms import ranked

    items = [("arm64", Platform("linux", "arm64")), ("v6", Platform("linux", "arm", "v6")),
             ("none", None), ("v7", Platform("linux", "arm", "v7"))]
    host = Platform("linux", "arm", "v7")
    assert [name for name, _ in ranked(host, items, lambda item: item[1])] == ["none", "v7", "v6"]
