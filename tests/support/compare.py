"""Field-by-field comparison of what crishim and containerd report, with messages naming each field."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# The CRI Image fields kubelet relies on; spec/annotations are left out (containerd 1.6 does not set them).
IMAGE_FIELDS = ("id", "repoTags", "repoDigests", "size", "uid", "username", "pinned")
GRPC_CODE = re.compile(r"code = (\w+)")


def pick(record: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    return {f: record.get(f) for f in fields}


def field_differences(actual: dict[str, Any], expected: dict[str, Any], fields: Iterable[str]) -> list[str]:
    return [
        f"{f}: crishim={actual.get(f)!r} containerd={expected.get(f)!r}"
        for f in fields
        if actual.get(f) != expected.get(f)
    ]


def assert_same_fields(
    actual: dict[str, Any], expected: dict[str, Any], fields: Iterable[str], what: str
) -> None:
    differences = field_differences(actual, expected, fields)
    assert not differences, f"{what} differs from containerd:\n  " + "\n  ".join(differences)


def assert_same_images(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Both lists sorted by id, compared image by image."""
    assert [i["id"] for i in actual] == [i["id"] for i in expected], "image ids differ from containerd"
    for mine, theirs in zip(actual, expected, strict=True):
        assert_same_fields(mine, theirs, IMAGE_FIELDS, f"image {theirs['id']}")


def grpc_code(stderr: str) -> str | None:
    """The gRPC status code crictl printed ("rpc error: code = NotFound desc = ...")."""
    match = GRPC_CODE.search(stderr)
    return match.group(1) if match else None
