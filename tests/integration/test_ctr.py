"""Debian's ctr against crishim's socket prints what it prints against containerd 1.6, fed the same images.

Both sides pull through their CRI (crictl), so each holds what its CRI made: content with its labels, image
records, and layer snapshots keyed by chain ID. ctr's tables are compared column by column, AGE aside; sizes
are compared as ctr prints them.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.containerd import Containerd, start_containerd
from tests.support.daemon import Crishim
from tests.support.images import PULLABLE, PushedImage
from tests.support.mounts import overlay_capable_dir
from tests.support.procs import run
from tests.support.tools import binary, require_root

NAMESPACE = "k8s.io"
SNAPSHOTTER_TYPE = "io.containerd.snapshotter.v1"
# What containerd's unpacker labels each layer snapshot with: its chain ID.
SNAPSHOT_REF = "containerd.io/snapshot.ref"


# --- running ctr ---------------------------------------------------------------------------------------------


def ctr(socket: Path, *args: str, namespace: str = NAMESPACE, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(binary("ctr"), "-a", socket, "-n", namespace, *args, check=check)


def ctr_bytes(socket: Path, *args: str) -> bytes:
    proc = subprocess.run([binary("ctr"), "-a", str(socket), "-n", NAMESPACE, *args], capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def both(crishim: Crishim, oracle: Containerd, *args: str) -> tuple[str, str]:
    return ctr(crishim.socket, *args).stdout, ctr(oracle.socket, *args).stdout


def pull_both(crishim: Crishim, oracle: Containerd, images: list[PushedImage]) -> None:
    for image in images:
        oracle.crictl("pull", image.ref)
        crishim.crictl("pull", image.ref)


# --- reading ctr's tables ----------------------------------------------------------------------------------


def space_table(text: str) -> list[dict[str, str]]:
    """A table ctr aligns with spaces (tabwriter): each column starts where its header word does."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    rows = []
    for line in lines[1:]:
        cells = [line[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def tab_table(text: str) -> list[dict[str, str]]:
    """A table ctr separates with tabs (`content ls`)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    names = lines[0].split()
    return [dict(zip(names, re.split(r"\t+", line.strip()) + [""] * len(names), strict=False)) for line in lines[1:]]


def labels_of(text: str) -> dict[str, str]:
    """ctr's LABELS column: k=v joined by ',' ("-" for none); a piece without '=' continues a value."""
    labels: dict[str, str] = {}
    last = None
    for piece in ("" if text in ("", "-") else text).split(","):
        if "=" in piece:
            last, value = piece.split("=", 1)
            labels[last] = value
        elif last is not None and piece:
            labels[last] += "," + piece
    return labels


def content_rows(text: str) -> dict[str, tuple[str, dict[str, str]]]:
    return {row["DIGEST"]: (row["SIZE"], labels_of(row.get("LABELS", ""))) for row in tab_table(text)}


def image_rows(text: str) -> dict[str, dict[str, Any]]:
    return {row["REF"]: {**row, "LABELS": labels_of(row["LABELS"])} for row in space_table(text)}


def snapshot_rows(text: str) -> set[tuple[str, str, str]]:
    return {(row["KEY"], row["PARENT"], row["KIND"]) for row in space_table(text)}


def mismatches(mine: dict[str, Any], theirs: dict[str, Any], what: str) -> list[str]:
    lines = [f"{what} {key}: only in containerd: {theirs[key]}" for key in sorted(theirs.keys() - mine.keys())]
    lines += [f"{what} {key}: only in crishim: {mine[key]}" for key in sorted(mine.keys() - theirs.keys())]
    lines += [f"{what} {key}:\n    crishim    {mine[key]}\n    containerd {theirs[key]}"
              for key in sorted(mine.keys() & theirs.keys()) if mine[key] != theirs[key]]
    return lines



# --- listings ------------------------------------------------------------------------------------------------


def compare_listings(crishim: Crishim, oracle: Containerd) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """Differences in `images ls` and `snapshots ls`, and both sides' `content ls` rows."""
    differences = []
    mine, theirs = both(crishim, oracle, "images", "ls")
    differences += mismatches(image_rows(mine), image_rows(theirs), "image")
    mine, theirs = both(crishim, oracle, "snapshots", "ls")
    differences += mismatches({k: (p, kind) for k, p, kind in snapshot_rows(mine)},
                              {k: (p, kind) for k, p, kind in snapshot_rows(theirs)}, "snapshot")
    mine, theirs = both(crishim, oracle, "content", "ls")
    return differences, content_rows(mine), content_rows(theirs)


@pytest.mark.parametrize("name", ["oci", "multiarch"])
def test_listings_match_containerd(
    name: str, crishim: Crishim, oracle: Containerd, test_images: dict[str, PushedImage]
) -> None:
    # One image at a time: images sharing layers are the next test's subject.
    pull_both(crishim, oracle, [test_images[name]])
    differences, content_mine, content_theirs = compare_listings(crishim, oracle)
    assert not differences, "ctr output differs from containerd:\n" + "\n".join(differences)
    diff = mismatches(content_mine, content_theirs, "content")
    assert not diff, "ctr content ls differs from containerd:\n" + "\n".join(diff)


def test_listings_after_every_image_match_containerd(
    crishim: Crishim, oracle: Containerd, test_images: dict[str, PushedImage]
) -> None:
    """Images sharing layers (the same diff IDs under several compressions and repositories)."""
    pull_both(crishim, oracle, [test_images[name] for name in PULLABLE])
    differences, content_mine, content_theirs = compare_listings(crishim, oracle)
    assert not differences, "ctr output differs from containerd:\n" + "\n".join(differences)
    diff = mismatches(content_mine, content_theirs, "content")
    assert not diff, "ctr content ls differs from containerd:\n" + "\n".join(diff)


def test_filtered_listings_match_containerd(
    crishim: Crishim, oracle: Containerd, test_images: dict[str, PushedImage]
) -> None:
    image = test_images["oci"]
    pull_both(crishim, oracle, [image])
    queries = [
        ("images", "ls", f"name=={image.ref}"),
        ("images", "ls", f"target.digest=={image.digest}"),
        ("images", "ls", 'labels."io.cri-containerd.image"==managed'),
        ("images", "ls", "name~=^sha256:"),
        ("content", "ls", f"digest=={image.config_digest}"),
        ("snapshots", "ls", "kind==committed"),
        ("snapshots", "ls", f"name=={image.layer_digests[0]}"),
    ]
    for query in queries:
        mine, theirs = both(crishim, oracle, *query)
        if query[0] == "content":
            assert content_rows(mine).keys() == content_rows(theirs).keys(), query
        else:
            key = "REF" if query[0] == "images" else "KEY"
            assert [r[key] for r in space_table(mine)] == [r[key] for r in space_table(theirs)], query


# --- snapshots -----------------------------------------------------------------------------------------------


def _top_chain(socket: Path) -> tuple[str, str]:
    """The deepest committed snapshot and its parent."""
    rows = snapshot_rows(ctr(socket, "snapshots", "ls").stdout)
    parents = {parent for _, parent, _ in rows}
    key, parent, _ = next(row for row in sorted(rows) if row[0] not in parents and row[2] == "Committed")
    return key, parent


def _mount_shape(line: str, root: Path) -> tuple[str, ...]:
    """A printed mount command with the snapshotter's folders replaced by their position."""
    text = line.replace(str(root), "<root>")
    folders: dict[str, str] = {}

    def number(match: re.Match[str]) -> str:
        return "snapshots/" + folders.setdefault(match.group(1), f"#{len(folders)}")

    return tuple(re.sub(r"snapshots/(\d+)", number, text).split())


def test_snapshot_commands_match_containerd(
    crishim: Crishim, oracle: Containerd, test_images: dict[str, PushedImage], tmp_path: Path
) -> None:
    pull_both(crishim, oracle, [test_images["oci"]])
    top, parent = _top_chain(oracle.socket)
    assert _top_chain(crishim.socket) == (top, parent)
    target = str(tmp_path / "target")
    sides = {"crishim": (crishim.socket, crishim.root), "containerd": (oracle.socket, oracle.root)}
    out: dict[str, dict[str, Any]] = {}
    for side, (socket, root) in sides.items():
        out[side] = {
            "view": _mount_shape(ctr(socket, "snapshots", "view", "--target", target, "ctr-view", top).stdout, root),
            "prepare": _mount_shape(
                ctr(socket, "snapshots", "prepare", "--target", target, "ctr-active", parent).stdout, root),
            "mounts": _mount_shape(ctr(socket, "snapshots", "mounts", target, "ctr-active").stdout, root),
            "info": _info_fields(ctr(socket, "snapshots", "info", "ctr-view").stdout),
            "info_layer": _info_fields(ctr(socket, "snapshots", "info", top).stdout),
            "usage": space_table(ctr(socket, "snapshots", "usage", "-b", top, parent).stdout),
            "ls": snapshot_rows(ctr(socket, "snapshots", "ls").stdout),
            "rm_parent": grpc_error(ctr(socket, "snapshots", "rm", top, check=False)),
        }
        ctr(socket, "snapshots", "rm", "ctr-view", "ctr-active")
        out[side]["ls_after_rm"] = snapshot_rows(ctr(socket, "snapshots", "ls").stdout)
        out[side]["rm_missing"] = grpc_error(ctr(socket, "snapshots", "rm", "ctr-view", check=False))
    layer_mine, layer_theirs = out["crishim"].pop("info_layer"), out["containerd"].pop("info_layer")
    differences = mismatches(out["crishim"], out["containerd"], "ctr snapshots")
    assert not differences, "\n".join(differences)
    assert ("ctr-view", top, "View") in out["crishim"]["ls"]
    assert ("ctr-view", top, "View") not in out["crishim"]["ls_after_rm"]
    assert layer_mine == layer_theirs
    assert (layer_mine["Labels"] or {}).get(SNAPSHOT_REF) == layer_mine["Name"]


def _info_fields(text: str) -> dict[str, Any]:
    info = json.loads(text)
    return {key: info.get(key) for key in ("Kind", "Name", "Parent", "Labels")}


def grpc_error(proc: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    """Exit status and the errdefs kind ctr names at the end of its error ("...: not found")."""
    message = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    return proc.returncode, message.rsplit(": ", 1)[-1] if proc.returncode else ""


def test_unknown_snapshotter_is_refused_as_containerd_does(crishim: Crishim, containerd: Containerd) -> None:
    mine = grpc_error(ctr(crishim.socket, "snapshots", "--snapshotter", "nope", "ls", check=False))
    theirs = grpc_error(ctr(containerd.socket, "snapshots", "--snapshotter", "nope", "ls", check=False))
    assert mine == theirs
    assert mine[0] != 0


# --- content -------------------------------------------------------------------------------------------------


def test_content_get_returns_the_blobs(crishim: Crishim, test_images: dict[str, PushedImage]) -> None:
    image = test_images["multiarch"]
    crishim.crictl("pull", image.ref)
    digests = list(content_rows(ctr(crishim.socket, "content", "ls").stdout))
    assert {image.digest, image.config_digest, *image.layer_digests} <= set(digests)
    for digest in digests:
        data = ctr_bytes(crishim.socket, "content", "get", digest)
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        assert data == crishim.blob_path(digest).read_bytes()


def test_content_label_and_rm_match_containerd(
    crishim: Crishim, oracle: Containerd, test_images: dict[str, PushedImage]
) -> None:
    image = test_images["oci"]
    pull_both(crishim, oracle, [image])
    config = image.config_digest
    for socket in (crishim.socket, oracle.socket):
        ctr(socket, "content", "label", config, "crishim.test/a=1", "crishim.test/b=2")
        ctr(socket, "content", "label", config, "crishim.test/a=")
    mine, theirs = both(crishim, oracle, "content", "ls", f"digest=={config}")
    assert content_rows(mine)[config][1] == content_rows(theirs)[config][1]
    assert content_rows(mine)[config][1]["crishim.test/b"] == "2"
    assert "crishim.test/a" not in content_rows(mine)[config][1]
    missing = "sha256:" + "0" * 64
    assert grpc_error(ctr(crishim.socket, "content", "get", missing, check=False)) == grpc_error(
        ctr(oracle.socket, "content", "get", missing, check=False))


# --- images --------------------------------------------------------------------------------------------------


def test_image_rm_removes_like_containerd(
    crishim: Crishim, oracle: Containerd, test_images: dict[str, PushedImage]
) -> None:
    image = test_images["oci"]
    pull_both(crishim, oracle, [image])
    for side in (crishim, oracle):
        ctr(side.socket, "images", "rm", "--sync", image.ref)
    mine, theirs = both(crishim, oracle, "images", "ls", "-q")
    assert sorted(mine.split()) == sorted(theirs.split())
    assert image.ref not in mine.split()
    for side in (crishim, oracle):
        names = ctr(side.socket, "images", "ls", "-q").stdout.split()
        ctr(side.socket, "images", "rm", "--sync", *names)
    assert ctr(crishim.socket, "images", "ls", "-q").stdout.strip() == ""
    assert content_rows(ctr(crishim.socket, "content", "ls").stdout) == {}
    assert crishim.blobs() == set() == oracle.blobs()
    missing = grpc_error(ctr(crishim.socket, "images", "rm", image.ref, check=False))
    assert missing == grpc_error(ctr(oracle.socket, "images", "rm", image.ref, check=False))


def test_missing_namespace_fails_as_in_containerd(crishim: Crishim, containerd: Containerd) -> None:
    for args in (("images", "ls"), ("content", "ls"), ("leases", "ls")):
        mine = ctr(crishim.socket, *args, namespace="", check=False)
        theirs = ctr(containerd.socket, *args, namespace="", check=False)
        assert mine.returncode != 0, args
        assert grpc_error(mine) == grpc_error(theirs) == (mine.returncode, "failed precondition")
        assert "namespace is required" in mine.stderr


# --- namespaces and leases -----------------------------------------------------------------------------------


def test_namespaces_match_containerd(crishim: Crishim, oracle: Containerd, test_images: dict[str, PushedImage]) -> None:
    pull_both(crishim, oracle, [test_images["oci"]])
    results: dict[str, dict[str, Any]] = {}
    for side, socket in (("crishim", crishim.socket), ("containerd", oracle.socket)):
        ctr(socket, "namespaces", "create", "crishim-test", "a=1", "b=2")
        ctr(socket, "namespaces", "label", "crishim-test", "b=", "c=3")
        table = {row["NAME"]: labels_of(row["LABELS"]) for row in space_table(ctr(socket, "namespaces", "ls").stdout)}
        results[side] = {
            "listed": table.get("crishim-test"),
            "k8s.io listed": NAMESPACE in table,
            "create again": grpc_error(ctr(socket, "namespaces", "create", "crishim-test", check=False)),
            "rm busy": grpc_error(ctr(socket, "namespaces", "rm", NAMESPACE, check=False)),
            "rm": grpc_error(ctr(socket, "namespaces", "rm", "crishim-test", check=False)),
            "rm again": grpc_error(ctr(socket, "namespaces", "rm", "crishim-test", check=False)),
        }
    differences = mismatches(results["crishim"], results["containerd"], "ctr namespaces")
    assert not differences, "\n".join(differences)
    assert results["crishim"]["listed"] == {"a": "1", "c": "3"}


def test_leases_match_containerd(crishim: Crishim, containerd: Containerd) -> None:
    results: dict[str, dict[str, Any]] = {}
    for side, socket in (("crishim", crishim.socket), ("containerd", containerd.socket)):
        created = ctr(socket, "leases", "create", "--id", "crishim-test", "--expires", "0", "x=1").stdout
        table = {row["ID"]: labels_of(row["LABELS"]) for row in space_table(ctr(socket, "leases", "ls").stdout)}
        results[side] = {
            "created": created.strip(),
            "listed": table.get("crishim-test"),
            "again": grpc_error(ctr(socket, "leases", "create", "--id", "crishim-test", check=False)),
            "rm": grpc_error(ctr(socket, "leases", "rm", "crishim-test", check=False)),
            "rm again": grpc_error(ctr(socket, "leases", "rm", "crishim-test", check=False)),
        }
    differences = mismatches(results["crishim"], results["containerd"], "ctr leases")
    assert not differences, "\n".join(differences)


# --- plugins and version -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def all_plugins_containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """containerd with none of its plugins disabled, so every snapshotter reports how this host suits it."""
    require_root("containerd")
    base = overlay_capable_dir([tmp_path_factory.getbasetemp(), Path("/var/tmp")])
    if base is None:
        pytest.skip("no directory where an overlay mount works")
    # Under the same kind of folder as crishim's root, so the filesystem probes see the same filesystem.
    workdir = Path(tempfile.mkdtemp(prefix="containerd-plugins-", dir=base))
    daemon = start_containerd(workdir, [], disabled_plugins=())
    yield daemon
    daemon.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def test_plugin_ls_matches_containerd(crishim: Crishim, all_plugins_containerd: Containerd) -> None:
    theirs = {(r["TYPE"], r["ID"]): r for r in space_table(ctr(all_plugins_containerd.socket, "plugins", "ls").stdout)}
    mine = {(r["TYPE"], r["ID"]): r for r in space_table(ctr(crishim.socket, "plugins", "ls").stdout)}
    snapshotters = {"aufs", "btrfs", "devmapper", "native", "overlayfs", "zfs"}
    assert {(SNAPSHOTTER_TYPE, name) for name in snapshotters} <= theirs.keys()
    assert {(SNAPSHOTTER_TYPE, name) for name in {*snapshotters, "blockfile"}} <= mine.keys()
    shared = sorted(mine.keys() & theirs.keys())
    assert {("io.containerd.content.v1", "content"), ("io.containerd.grpc.v1", "cri")} <= set(shared)
    columns = ("PLATFORMS", "STATUS")
    differences = [f"{key}: crishim {mine[key]} containerd {theirs[key]}" for key in shared
                   if [mine[key][c] for c in columns] != [theirs[key][c] for c in columns]]
    assert not differences, "\n".join(differences)
    filtered = space_table(ctr(crishim.socket, "plugins", "ls", f"type=={SNAPSHOTTER_TYPE}").stdout)
    assert {r["TYPE"] for r in filtered} == {SNAPSHOTTER_TYPE}


def test_plugin_reasons_follow_containerd(crishim: Crishim) -> None:
    """`ctr plugins ls -d` shows containerd's reasons: skipped filesystems say why and end in "skip plugin"."""
    detailed = ctr(crishim.socket, "plugins", "ls", "-d").stdout
    assert "devmapper not configured" in detailed
    status = {r["ID"]: r["STATUS"] for r in space_table(ctr(crishim.socket, "plugins", "ls").stdout)
              if r["TYPE"] == SNAPSHOTTER_TYPE}
    for fs_type in ("btrfs", "zfs"):
        if status[fs_type] == "skip":
            assert f"must be a {fs_type} filesystem to be used with the {fs_type} snapshotter: skip plugin" in detailed


def test_version_answers(crishim: Crishim) -> None:
    text = ctr(crishim.socket, "version").stdout
    server = text.split("Server:", 1)[1]
    fields = dict(re.findall(r"^\s+(\w+):\s+(.*?)\s*$", server, flags=re.MULTILINE))
    assert fields["Version"]
    assert re.fullmatch(r"[0-9a-f-]{36}", fields["UUID"])
