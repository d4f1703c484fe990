"""script/imagetar.py writes image archives byte for byte the same from the same inputs, and skopeo (not crishim's
own reader) finds in them the image, config and layers written."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import sys
import tarfile
from pathlib import Path
from types import ModuleType

from tests.support.procs import run
from tests.support.tools import binary

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("imagetar", REPO / "script" / "imagetar.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["imagetar"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


imagetar = _load()
CAPABILITY = b"\x01\x00\x00\x02\x00\x04\x00\x00" + bytes(12)


def sample_tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho tool\n")
    (root / "bin" / "tool").chmod(0o4755)
    os.link(root / "bin" / "tool", root / "bin" / "alias")
    (root / "bin" / "sh").symlink_to("tool")
    os.mkfifo(root / "bin" / "pipe")
    os.utime(root / "bin" / "tool", (1, 1))
    return root


def members_of(layer_path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer_path.read_bytes()))) as tar:
        return tar.getmembers()


def test_a_layer_is_the_same_bytes_whenever_it_is_written(tmp_path: Path) -> None:
    root = sample_tree(tmp_path / "root")
    first = imagetar.write_layer(tmp_path / "a.tar.gz", imagetar.tree(root), "tree")
    os.utime(root / "bin" / "tool", (2000000000, 2000000000))  # times never reach the layer
    second = imagetar.write_layer(tmp_path / "b.tar.gz", imagetar.tree(root), "tree")
    assert first.digest == second.digest
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    assert first.digest == "sha256:" + hashlib.sha256((tmp_path / "a.tar.gz").read_bytes()).hexdigest()
    plain = gzip.decompress((tmp_path / "a.tar.gz").read_bytes())
    assert first.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert first.size == len((tmp_path / "a.tar.gz").read_bytes())


def test_a_tree_keeps_modes_links_and_hard_links_and_leaves_out_fifos(tmp_path: Path) -> None:
    root = sample_tree(tmp_path / "root")
    layer = imagetar.write_layer(tmp_path / "l.tar.gz", imagetar.tree(root, "opt/"), "tree")
    members = {m.name: m for m in members_of(layer.path)}
    assert sorted(members) == ["opt", "opt/bin", "opt/bin/alias", "opt/bin/sh", "opt/bin/tool"]
    # Sorted, alias comes first: it holds the data and tool is the hard link.
    assert members["opt/bin/alias"].isreg() and members["opt/bin/alias"].mode == 0o4755
    assert members["opt/bin/tool"].islnk() and members["opt/bin/tool"].linkname == "opt/bin/alias"
    assert members["opt/bin/sh"].issym() and members["opt/bin/sh"].linkname == "tool"
    assert {(m.mtime, m.uname, m.gname) for m in members.values()} == {(imagetar.MTIME, "", "")}


def test_a_file_capability_travels_as_a_pax_xattr(tmp_path: Path) -> None:
    member = imagetar.Member("coredns", 0o755, data=b"binary", xattrs={"security.capability": CAPABILITY})
    layer = imagetar.write_layer(tmp_path / "l.tar.gz", [member], "COPY coredns")
    (entry,) = members_of(layer.path)
    value = entry.pax_headers["SCHILY.xattr.security.capability"]
    assert value.encode("utf-8", "surrogateescape") == CAPABILITY


def test_skopeo_reads_the_image_written(tmp_path: Path) -> None:
    skopeo = binary("skopeo")
    base = imagetar.write_layer(tmp_path / "base.tar.gz", [imagetar.Member("etc", 0o755, directory=True),
                                                          imagetar.Member("etc/passwd", data=b"root:x:0:0::/:\n")],
                                "base")
    tool = imagetar.write_layer(tmp_path / "tool.tar.gz", [imagetar.Member("tool", 0o755, data=b"x")], "COPY tool")
    config = imagetar.RunConfig(env=("PATH=/bin",), entrypoint=("/tool",), cmd=("-v",), user="nonroot:nonroot",
                                working_dir="/", exposed_ports=("53/udp",))
    name = "registry.example/team/tool:v1.2"
    archive = tmp_path / "tool.tar"
    manifest_digest = imagetar.write_image(archive, imagetar.Image(name, (base, tool, base), config, "amd64"))

    # A copy checks every digest and size on the way.
    run(skopeo, "--insecure-policy", "copy", "-q", f"oci-archive:{archive}", f"oci:{tmp_path / 'copy'}:v1.2")
    inspected = json.loads(run(skopeo, "inspect", "--raw", f"oci-archive:{archive}").stdout)
    assert [layer["digest"] for layer in inspected["layers"]] == [base.digest, tool.digest, base.digest]
    assert "sha256:" + hashlib.sha256(run(skopeo, "inspect", "--raw", f"oci-archive:{archive}").stdout.encode()
                                      ).hexdigest() == manifest_digest
    image_config = json.loads(run(skopeo, "inspect", "--config", f"oci-archive:{archive}").stdout)
    assert image_config["config"] == {"Env": ["PATH=/bin"], "Entrypoint": ["/tool"], "Cmd": ["-v"],
                                      "User": "nonroot:nonroot", "WorkingDir": "/", "ExposedPorts": {"53/udp": {}}}
    assert image_config["rootfs"]["diff_ids"] == [base.diff_id, tool.diff_id, base.diff_id]
    assert (image_config["architecture"], image_config["os"]) == ("amd64", "linux")
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        names = tar.getnames()
    assert index["manifests"][0]["annotations"] == {"io.containerd.image.name": name,
                                                    "org.opencontainers.image.ref.name": "v1.2"}
    assert names.count(f"blobs/sha256/{base.digest.removeprefix('sha256:')}") == 1


def test_an_image_archive_is_the_same_bytes_whenever_it_is_written(tmp_path: Path) -> None:
    layer = imagetar.write_layer(tmp_path / "l.tar.gz", [imagetar.Member("tool", 0o755, data=b"x")], "COPY tool")
    image = imagetar.Image("localhost/tool:1", (layer,), imagetar.RunConfig(env=("PATH=/bin",)), "amd64")
    imagetar.write_image(tmp_path / "a.tar", image)
    imagetar.write_image(tmp_path / "b.tar", image)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
