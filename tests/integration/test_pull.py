"""Pulling each test image with crictl into crishim and into containerd, then comparing what both report.

Every expected value comes from containerd 1.6 fed the same image, not from constants.
"""

from __future__ import annotations

import stat

from tests.support.compare import IMAGE_FIELDS, assert_same_fields, assert_same_images
from tests.support.content import file_digest
from tests.support.pull_pair import PullPair

STATUS_FIELDS = IMAGE_FIELDS


def test_image_list_entry_matches_containerd(pulled: PullPair) -> None:
    assert len(pulled.crishim_images) == 1, pulled.crishim_images
    assert_same_images(pulled.crishim_images, pulled.oracle_images)


def test_image_id_and_repo_digest_come_from_the_registry(pulled: PullPair) -> None:
    # Also checked against the registry directly, so a shared misreading cannot hide behind the oracle.
    (entry,) = pulled.crishim_images
    assert entry["id"] == pulled.image.config_digest
    assert entry["repoTags"] == [pulled.image.ref]
    assert entry["repoDigests"] == [pulled.image.repo_digest]


def test_image_status_matches_containerd(pulled: PullPair) -> None:
    assert_same_fields(
        pulled.crishim_inspect["status"], pulled.oracle_inspect["status"], STATUS_FIELDS, "inspecti status"
    )


def test_verbose_info_matches_containerd(pulled: PullPair) -> None:
    """ImageStatus verbose info: containerd 1.6 returns {"chainID": ..., "imageSpec": <OCI config>}."""
    mine, theirs = pulled.crishim_inspect.get("info", {}), pulled.oracle_inspect["info"]
    assert mine.get("chainID") == theirs["chainID"]
    assert mine.get("imageSpec") == theirs["imageSpec"]


def test_content_digests_match_containerd(pulled: PullPair) -> None:
    # Both start empty, so they must have fetched exactly the same blobs (for an index: only one platform).
    assert set(pulled.crishim_content) == set(pulled.oracle_content)


def test_content_labels_match_containerd(pulled: PullPair) -> None:
    differences = []
    for digest, theirs in sorted(pulled.oracle_content.items()):
        mine = pulled.crishim_content.get(digest)
        expected = dict(sorted(theirs.labels.items()))
        actual = None if mine is None else dict(sorted(mine.labels.items()))
        if actual != expected:
            differences.append(f"{digest}:\n    crishim    {actual}\n    containerd {expected}")
    assert not differences, "content labels differ:\n  " + "\n  ".join(differences)


def test_content_sizes_match_containerd_blobs(pulled: PullPair) -> None:
    for digest, record in pulled.crishim_content.items():
        assert record.size == pulled.oracle.blob_path(digest).stat().st_size, digest


def test_blobs_on_disk_are_read_only_and_verified(pulled: PullPair) -> None:
    for digest, record in pulled.crishim_content.items():
        path = pulled.crishim.blob_path(digest)
        assert path.is_file(), f"{digest} has a record but no blob at {path}"
        mode = path.stat().st_mode
        assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), f"{path} is writable: {oct(mode)}"
        assert path.stat().st_size == record.size, digest
        assert file_digest(path) == digest


def test_every_blob_on_disk_has_a_record(pulled: PullPair) -> None:
    assert pulled.crishim.blobs() == set(pulled.crishim_content)
