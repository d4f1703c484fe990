"""Applying layer tars: every file type kept, whiteouts stored for overlay, hostile entries refused."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterable
from pathlib import Path

import pytest

from errdefs import InvalidArgument
from snapshotters.apply import apply_tar
from tests.support.tools import require_root


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root("applying layers (chown, mknod, trusted xattrs)")


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"",
          **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1_600_000_000
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def tar(entries: Iterable[tuple[tarfile.TarInfo, bytes]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    buf.seek(0)
    return buf


def snapshot_of(path: Path) -> dict[str, tuple[int, int, bytes]]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = Path(p).read_bytes() if stat.S_ISREG(st.st_mode) else b""
            found[p] = (st.st_mode, st.st_mtime_ns, data)
    return found


def test_keeps_types_modes_owners_times_and_xattrs(tmp_path: Path) -> None:
    long_name = "d/" + "n" * 200
    apply_tar(tar([
        entry("d/", tarfile.DIRTYPE, mode=0o1777, uid=5, gid=6),
        entry("d/file", data=b"hello", mode=0o4755, uid=1000, gid=1000,
              pax_headers={"SCHILY.xattr.user.note": "v", "SCHILY.xattr.trusted.bin": "\x01\x00"}),
        entry("d/link", tarfile.SYMTYPE, linkname="/nowhere/at/all"),
        entry("d/hard", tarfile.LNKTYPE, linkname="d/file", mode=0o4755, uid=1000, gid=1000),
        entry("d/fifo", tarfile.FIFOTYPE),
        entry("d/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        entry("d/blk", tarfile.BLKTYPE, devmajor=7, devminor=0, mode=0o660),
        entry("d/ünïcødé", data=b"u"),
        entry(long_name, data=b"long"),
    ]), tmp_path)
    d = tmp_path / "d"
    st = os.lstat(d)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o1777, 5, 6)
    assert st.st_mtime_ns == 1_600_000_000 * 10**9
    f = os.lstat(d / "file")
    assert (stat.S_IMODE(f.st_mode), f.st_uid, f.st_nlink) == (0o4755, 1000, 2)
    assert os.getxattr(d / "file", "user.note") == b"v"
    assert "trusted.bin" not in os.listxattr(d / "file")  # never taken from a layer, as in containerd
    assert os.readlink(d / "link") == "/nowhere/at/all"
    assert os.lstat(d / "hard").st_ino == f.st_ino
    assert stat.S_ISFIFO(os.lstat(d / "fifo").st_mode)
    null = os.lstat(d / "null")
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    assert stat.S_ISBLK(os.lstat(d / "blk").st_mode)
    assert (d / "ünïcødé").read_bytes() == b"u"
    assert (tmp_path / long_name).read_bytes() == b"long"


def test_overlay_whiteouts(tmp_path: Path) -> None:
    apply_tar(tar([
        entry("etc/", tarfile.DIRTYPE),
        entry("etc/.wh.passwd"),
        entry("opaque/", tarfile.DIRTYPE),
        entry("opaque/.wh..wh..opq"),
        entry("opaque/new", data=b"n"),
    ]), tmp_path, "overlay")
    wh = os.lstat(tmp_path / "etc/passwd")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == os.makedev(0, 0)
    assert not (tmp_path / "etc/.wh.passwd").exists()
    assert os.getxattr(tmp_path / "opaque", "trusted.overlay.opaque") == b"y"
    assert os.listdir(tmp_path / "opaque") == ["new"]


def test_delete_whiteouts(tmp_path: Path) -> None:
    apply_tar(tar([entry("etc/", tarfile.DIRTYPE), entry("etc/passwd", data=b"x"),
                   entry("etc/group", data=b"g"), entry("keep/", tarfile.DIRTYPE), entry("keep/old", data=b"o")]),
              tmp_path, "delete")
    apply_tar(tar([entry("etc/.wh.passwd"), entry("keep/new", data=b"n"), entry("keep/.wh..wh..opq")]),
              tmp_path, "delete")
    assert sorted(os.listdir(tmp_path / "etc")) == ["group"]
    assert sorted(os.listdir(tmp_path / "keep")) == ["new"]


def test_dir_replaced_by_file_and_back(tmp_path: Path) -> None:
    apply_tar(tar([entry("x/", tarfile.DIRTYPE), entry("x/inner", data=b"i")]), tmp_path)
    apply_tar(tar([entry("x", data=b"file now")]), tmp_path)
    assert (tmp_path / "x").read_bytes() == b"file now"
    apply_tar(tar([entry("x/", tarfile.DIRTYPE), entry("x/again", data=b"a")]), tmp_path)
    assert os.listdir(tmp_path / "x") == ["again"]


HOSTILE = {
    "dotdot": [entry("../escaped", data=b"x")],
    "deep dotdot": [entry("a/../../escaped", data=b"x")],
    "symlink parent": [entry("evil", tarfile.SYMTYPE, linkname="../outside"), entry("evil/planted", data=b"x")],
    "absolute symlink parent": [entry("evil", tarfile.SYMTYPE, linkname=None), entry("evil/planted", data=b"x")],
    "hardlink outside": [entry("h", tarfile.LNKTYPE, linkname="../outside/sentinel")],
    "write through symlink": [entry("s", tarfile.SYMTYPE, linkname="../outside/sentinel"),
                              entry("s", data=b"overwritten")],
    "whiteout through symlink": [entry("w", tarfile.SYMTYPE, linkname="../outside"), entry("w/.wh.sentinel")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layers_change_nothing_outside(tmp_path: Path, case: str) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "sentinel").write_bytes(b"original")
    entries = [(info, data) for info, data in HOSTILE[case]]
    for info, _ in entries:
        if info.linkname is None:
            info.linkname = str(outside)
    before = snapshot_of(outside)
    siblings = set(os.listdir(tmp_path))
    try:
        apply_tar(tar(entries), root)
    except InvalidArgument as exc:
        assert repr(entries[-1][0].name)[1:-1] in str(exc) or entries[0][0].name in str(exc)
    assert snapshot_of(outside) == before
    assert set(os.listdir(tmp_path)) == siblings
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                assert os.path.realpath(p).startswith(str(root))


def test_symlinks_inside_resolve_within_root(tmp_path: Path) -> None:
    apply_tar(tar([entry("real/", tarfile.DIRTYPE), entry("abs", tarfile.SYMTYPE, linkname="/real"),
                   entry("abs/inside", data=b"ok")]), tmp_path)
    assert (tmp_path / "real/inside").read_bytes() == b"ok"


def test_malformed_tar_is_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        apply_tar(io.BytesIO(b"not a tar" * 100), tmp_path)


def test_missing_parents_take_their_attributes_from_lower_layers(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    apply_tar(tar([entry("etc/", tarfile.DIRTYPE, mode=0o750, uid=7, gid=8), entry("etc/doomed", data=b"x")]), lower)
    os.setxattr(lower / "etc", "trusted.overlay.opaque", b"y")
    os.setxattr(lower / "etc", "user.kept", b"k")
    apply_tar(tar([entry("etc/.wh.doomed"), entry("new/deep/file", data=b"n")]), upper, "overlay", [lower])
    st = os.lstat(upper / "etc")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 7, 8)
    assert os.getxattr(upper / "etc", "user.kept") == b"k"
    assert "trusted.overlay.opaque" not in os.listxattr(upper / "etc")
    assert stat.S_ISCHR(os.lstat(upper / "etc/doomed").st_mode)
    assert stat.S_IMODE(os.lstat(upper / "new/deep").st_mode) == 0o755


def test_huge_extended_header_is_refused_without_reading_it(tmp_path: Path) -> None:
    name = "x" * (2 << 20)
    with pytest.raises(InvalidArgument, match="extended header"):
        apply_tar(tar([entry(name, data=b"")]), tmp_path)


def test_directory_times_never_follow_a_parent_swapped_for_a_symlink(tmp_path: Path) -> None:
    root, victim = tmp_path / "root", tmp_path / "victim"
    root.mkdir()
    (victim / "b").mkdir(parents=True)
    os.utime(victim / "b", ns=(123, 123))
    apply_tar(tar([entry("a/", tarfile.DIRTYPE), entry("a/b/", tarfile.DIRTYPE, mtime=1_000_000),
                   entry("a", tarfile.SYMTYPE, linkname=str(victim))]), root)
    assert os.lstat(victim / "b").st_mtime_ns == 123


CHAIN = 250
FILES = 2000


def test_entries_under_a_long_symlink_chain_cost_one_resolution_not_one_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hostile layer: a 250-hop chain of symlinks to a directory, then thousands of files through it.
    entries = [entry("d", tarfile.DIRTYPE)]
    entries += [entry(f"l{i}", tarfile.SYMTYPE, linkname=f"l{i + 1}" if i + 1 < CHAIN else "d")
                for i in range(CHAIN)]
    entries += [entry(f"l0/f{i}", data=b"x") for i in range(FILES)]
    readlinks = 0
    real_readlink = os.readlink

    def counting_readlink(path: str) -> str:
        nonlocal readlinks
        readlinks += 1
        return real_readlink(path)

    monkeypatch.setattr(os, "readlink", counting_readlink)
    apply_tar(tar(entries), tmp_path)
    assert len(os.listdir(tmp_path / "d")) == FILES
    assert readlinks <= 4 * CHAIN, f"{readlinks} symlinks followed for {FILES} entries"


def test_a_cached_parent_is_not_used_after_a_symlink_in_its_path_changed(tmp_path: Path) -> None:
    entries = [entry("a", tarfile.DIRTYPE), entry("b", tarfile.DIRTYPE),
               entry("p", tarfile.SYMTYPE, linkname="a"), entry("p/one", data=b"1"),
               entry("p", tarfile.SYMTYPE, linkname="b"), entry("p/two", data=b"2")]
    apply_tar(tar(entries), tmp_path)
    assert sorted(os.listdir(tmp_path / "a")) == ["one"]
    assert sorted(os.listdir(tmp_path / "b")) == ["two"]


def test_a_directory_a_later_entry_replaces_with_a_file_is_no_error(tmp_path: Path) -> None:
    # Found by fuzzing: the directory times restored at the end were looked up through the file.
    apply_tar(tar([entry("l/z", tarfile.DIRTYPE), entry("l", data=b"now a file")]), tmp_path, "delete")
    assert (tmp_path / "l").read_bytes() == b"now a file"


def test_a_symlink_through_a_file_is_no_parent_directory(tmp_path: Path) -> None:
    layer = tar([entry("f", data=b"x"), entry("l", tarfile.SYMTYPE, linkname="f/sub"), entry("l/y", data=b"y")])
    with pytest.raises(InvalidArgument, match="l/y"):
        apply_tar(layer, tmp_path, "delete")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "l"]
