"""Fuzzing what a registry, a hosts.toml or a layer author controls: the only way to fail is crishim's own
InvalidArgument (or DataLoss for layers), never another exception, never a write outside the scratch root.

Bounded here (``FUZZ_EXAMPLES`` inputs per target, 200 by default); ``FUZZ_EXAMPLES=100000`` runs long.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cri.image_service.convert import user_of
from errdefs import DataLoss, InvalidArgument
from snapshotters.apply import apply_tar
from store.descriptor import ImageConfig, Index, Manifest
from store.reference import Reference
from store.remote.auth import parse_challenges
from store.remote.hosts import HostsConfig

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
digest_like = st.one_of(st.text(max_size=80), st.just("sha256:" + "a" * 64), st.just("sha256:" + "0" * 63))
descriptor_like = st.fixed_dictionaries(
    {}, optional={"mediaType": st.one_of(st.text(max_size=30), st.just("application/vnd.oci.image.layer.v1.tar")),
                  "digest": digest_like, "size": st.one_of(st.integers(), st.text(max_size=5), st.none()),
                  "annotations": json_values, "platform": json_values})
documents = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"schemaVersion": json_values, "config": descriptor_like | json_values,
                                        "layers": st.lists(descriptor_like | json_values, max_size=3),
                                        "manifests": st.lists(descriptor_like | json_values, max_size=3),
                                        "rootfs": json_values, "architecture": json_values, "os": json_values}),
)


def _bytes_of(doc: Any) -> bytes:
    return json.dumps(doc).encode()


@FUZZ
@given(documents | st.binary(max_size=200))
def test_image_documents_parse_or_are_invalid_argument(doc: Any) -> None:
    data = doc if isinstance(doc, bytes) else _bytes_of(doc)
    for parse in (lambda: Manifest.parse(MANIFEST, data), lambda: Index.parse(INDEX, data),
                  lambda: ImageConfig.parse(data)):
        with contextlib.suppress(InvalidArgument):
            parse()


@FUZZ
@given(st.text(max_size=300))
def test_references_parse_or_are_invalid_argument(text: str) -> None:
    try:
        ref = Reference.parse(text)
    except InvalidArgument:
        return
    assert Reference.parse(str(ref)) == ref  # a parsed reference survives its own printing


@FUZZ
@given(st.text(max_size=300))
def test_www_authenticate_never_raises(header: str) -> None:
    for challenge in parse_challenges(header):
        assert challenge.scheme in ("basic", "bearer")


@FUZZ
@given(st.text(max_size=40))
def test_image_users_are_uids_within_int64_or_names(user: str) -> None:
    uid, name = user_of(user)
    assert uid is None or -(2**63) <= uid < 2**63
    assert (uid is None) or name == ""


@FUZZ
@given(st.text(max_size=400))
def test_hosts_toml_loads_or_is_invalid_argument(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "registry.example"
        folder.mkdir()
        (folder / "hosts.toml").write_text(text)
        with contextlib.suppress(InvalidArgument):
            HostsConfig(Path(tmp)).hosts_for("registry.example")


names = st.one_of(st.sampled_from(["a", "a/b", "../x", "/abs", "a/../../y", ".wh.a", "a/.wh..wh..opq", "l", "l/z",
                                   "", ".", "a/./b"]), st.text(alphabet="ab/.l", max_size=12))
entries = st.tuples(names, st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE]),
                    names)


@pytest.mark.skipif(os.geteuid() != 0, reason="layer apply chowns and makes device nodes: needs root")
@settings(max_examples=max(EXAMPLES // 4, 25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries, max_size=8))
# Found by a long run: a directory replaced by a later file, whose times were then restored through it.
@example([("l/z", tarfile.DIRTYPE, ""), ("l", tarfile.REGTYPE, "")])
def test_layer_apply_stays_inside_its_root(members: list[tuple[str, bytes, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root, outside = Path(tmp) / "root", Path(tmp) / "outside"
        root.mkdir()
        outside.mkdir()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for name, kind, link in members:
                info = tarfile.TarInfo(name or ".")
                info.type = kind
                info.linkname = link if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
                if kind == tarfile.SYMTYPE and link.startswith("o"):
                    info.linkname = str(outside)
                archive.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
        buf.seek(0)
        with contextlib.suppress(InvalidArgument, DataLoss):
            apply_tar(buf, root, "delete")
        assert list(outside.iterdir()) == [], "a layer wrote outside its root"
