"""Resolving a container's user from its rootfs, with containerd 1.6 CRI's rules (checked against it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import errdefs
from cri.api.runtime.v1 import api_pb2
from runtime.user import ResolvedUser, cri_user_string, parse_group, parse_passwd, resolve_in_root, resolve_user

PASSWD = """root:x:0:0:root:/root:/bin/sh
app:x:1000:1000::/home/app:/bin/sh
other:x:1001:1500::/:/bin/sh
"""
GROUP = """root:x:0:
app:x:1000:app
extra:x:2000:app,other
wheel:x:10:root
other2:x:3000:other
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return root


def sc(**fields: Any) -> api_pb2.LinuxContainerSecurityContext:
    return api_pb2.LinuxContainerSecurityContext(**fields)


def uid(value: int) -> api_pb2.Int64Value:
    return api_pb2.Int64Value(value=value)


def test_no_user_anywhere_is_root_with_roots_groups(rootfs: Path) -> None:
    assert resolve_user(rootfs) == ResolvedUser(0, 0, (0, 10), "root")


def test_image_user_name_takes_uid_and_gid_from_passwd(rootfs: Path) -> None:
    # Group memberships are looked up for the CRI user, which is uid 0 here: root's wheel, not app's extra.
    assert resolve_user(rootfs, "app") == ResolvedUser(1000, 1000, (10, 1000), "app")


def test_image_numeric_uid_takes_gid_from_passwd(rootfs: Path) -> None:
    assert resolve_user(rootfs, "1001").gid == 1500


def test_numeric_uid_without_entry_runs_with_gid_0(rootfs: Path) -> None:
    assert resolve_user(rootfs, "4242") == ResolvedUser(4242, 0, (0, 10), "")


def test_unknown_user_name_is_an_invalid_argument(rootfs: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="'nobody'"):
        resolve_user(rootfs, "nobody")


def test_user_name_without_passwd_file_is_an_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="'app'.*no /etc/passwd"):
        resolve_user(tmp_path, "app")


def test_numeric_user_needs_no_files(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, "7:8") == ResolvedUser(7, 8, (8,), "")
    assert resolve_user(tmp_path, "7") == ResolvedUser(7, 0, (0,), "")


@pytest.mark.parametrize(
    ("user", "ids"),
    [
        ("app:extra", (1000, 2000)),
        ("app:3000", (1000, 3000)),
        ("1001:wheel", (1001, 10)),
        ("5:6", (5, 6)),
        ("app:", (1000, 0)),  # an empty group part selects no group at all
    ],
)
def test_user_and_group(rootfs: Path, user: str, ids: tuple[int, int]) -> None:
    resolved = resolve_user(rootfs, user)
    assert (resolved.uid, resolved.gid) == ids


def test_unknown_group_is_an_invalid_argument(rootfs: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="group 'staff'"):
        resolve_user(rootfs, "app:staff")


def test_three_parts_is_an_invalid_argument(rootfs: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="invalid user 'a:b:c'"):
        resolve_user(rootfs, "a:b:c")


def test_negative_or_huge_ids_are_names(rootfs: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="'-1'"):
        resolve_user(rootfs, "-1")
    with pytest.raises(errdefs.InvalidArgument, match="'2147483648'"):
        resolve_user(rootfs, "2147483648")


def test_cri_run_as_user_overrides_the_image_user(rootfs: Path) -> None:
    resolved = resolve_user(rootfs, "app", sc(run_as_user=uid(1001)))
    # other's memberships: extra and other2; its primary gid from passwd.
    assert resolved == ResolvedUser(1001, 1500, (1500, 2000, 3000), "other")


def test_cri_run_as_user_0_overrides_the_image_user(rootfs: Path) -> None:
    assert resolve_user(rootfs, "app", sc(run_as_user=uid(0))).uid == 0


def test_cri_username_and_group(rootfs: Path) -> None:
    resolved = resolve_user(rootfs, "", sc(run_as_username="app", run_as_group=uid(0)))
    assert resolved == ResolvedUser(1000, 0, (0, 2000), "app")


def test_cri_username_wins_over_cri_uid(rootfs: Path) -> None:
    assert resolve_user(rootfs, "", sc(run_as_username="app", run_as_user=uid(1001))).uid == 1000


def test_cri_group_without_user_is_an_invalid_argument(rootfs: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="group '5' is specified without user"):
        resolve_user(rootfs, "app", sc(run_as_group=uid(5)))


def test_cri_user_string() -> None:
    assert cri_user_string(sc()) == ""
    assert cri_user_string(sc(run_as_user=uid(0))) == "0"
    assert cri_user_string(sc(run_as_user=uid(5), run_as_group=uid(6))) == "5:6"
    assert cri_user_string(sc(run_as_username="app", run_as_group=uid(6))) == "app:6"


def test_supplemental_groups_are_merged_sorted_and_deduplicated(rootfs: Path) -> None:
    context = sc(run_as_user=uid(1001), run_as_group=uid(3000), supplemental_groups=[5, 7000, 3000])
    assert resolve_user(rootfs, "", context).additional_gids == (5, 2000, 3000, 7000)


def test_strict_keeps_the_image_groups_out(rootfs: Path) -> None:
    strict = api_pb2.SupplementalGroupsPolicy.Strict
    context = sc(run_as_user=uid(1001), run_as_group=uid(3000), supplemental_groups=[5, 7000],
                 supplemental_groups_policy=strict)
    # Merge would add 2000 ("extra" lists other as a member); Strict does not read /etc/group for that.
    assert resolve_user(rootfs, "", context).additional_gids == (5, 3000, 7000)


def test_a_group_named_like_the_user_is_not_a_supplemental_group(rootfs: Path) -> None:
    # app is listed in its own group "app" (gid 1000); only "extra" counts as a membership.
    resolved = resolve_user(rootfs, "", sc(run_as_username="app", run_as_group=uid(5)))
    assert resolved.additional_gids == (5, 2000)


def test_out_of_range_supplemental_group_is_an_invalid_argument(rootfs: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="supplemental group -1"):
        resolve_user(rootfs, "", sc(supplemental_groups=[-1]))


def test_absolute_symlinks_resolve_inside_the_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "real").mkdir()
    (root / "real" / "passwd").write_text("app:x:77:88::/:/bin/sh\n")
    (root / "etc" / "passwd").symlink_to("/real/passwd")
    # The host's /real/passwd, if any, must not be what is read.
    assert resolve_user(root, "app").uid == 77


def test_dotdot_symlinks_cannot_leave_the_rootfs(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("app:x:1:1::/:/bin/sh\n")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to("../../../../../outside/passwd")
    assert resolve_in_root(root, "/etc/passwd") == root / "outside" / "passwd"
    with pytest.raises(errdefs.InvalidArgument, match="no /etc/passwd"):
        resolve_user(root, "app")


def test_a_symlinked_etc_directory_is_followed_inside_the_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "usr" / "etc").mkdir(parents=True)
    (root / "usr" / "etc" / "passwd").write_text("app:x:5:6::/:/bin/sh\n")
    (root / "etc").symlink_to("usr/etc")
    assert resolve_in_root(root, "/etc/passwd") == root / "usr" / "etc" / "passwd"
    assert resolve_user(root, "app").uid == 5


def test_symlink_loops_are_an_invalid_argument(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to("passwd")
    with pytest.raises(errdefs.InvalidArgument, match="symbolic links"):
        resolve_user(root, "app")


def test_a_fifo_in_place_of_passwd_is_refused_without_blocking(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    os.mkfifo(root / "etc" / "passwd")
    with pytest.raises(errdefs.InvalidArgument, match="not a regular file"):
        resolve_user(root, "app")


def test_parsers_follow_runc() -> None:
    users = parse_passwd("\n  app:x:12:34::/home/app:/bin/sh  \nbad:x:notanumber:5\nshort\n")
    assert [(u.name, u.uid, u.gid, u.home) for u in users] == [
        ("app", 12, 34, "/home/app"), ("bad", 0, 5, ""), ("short", 0, 0, "")]
    groups = parse_group("# comment\nadm:x:4:root,adm\n\nempty:x:9:\n")
    assert [(g.name, g.gid, g.members) for g in groups] == [("adm", 4, ("root", "adm")), ("empty", 9, ())]
