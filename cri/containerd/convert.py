"""What every containerd service converts the same way: times, labels and their field masks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from errdefs import InvalidArgument

__all__ = ["MAX_LABEL_BYTES", "timestamp", "updated_labels", "validate_labels"]

# containerd's limit on one label's key and value together.
MAX_LABEL_BYTES = 4096


def timestamp(when: datetime | None) -> Timestamp:
    stamp = Timestamp()
    if when is not None:
        stamp.FromDatetime(when)
    return stamp


def validate_labels(labels: Mapping[str, str], what: str) -> None:
    for key, value in labels.items():
        if len(key) + len(value) > MAX_LABEL_BYTES:
            raise InvalidArgument(f"{what}.Labels: label key and value greater than maximum size "
                                  f"({MAX_LABEL_BYTES} bytes), key: {key[:10]}")


def updated_labels(current: Mapping[str, str], given: Mapping[str, str], paths: Iterable[str],
                   what: str) -> dict[str, str]:
    """containerd's label update under a field mask.

    No paths, or ``labels``: ``given`` replaces every label. ``labels.<key>``:
    that key takes its value in ``given``, and is removed when ``given`` lacks
    it. A label set to "" is removed. Any other path is InvalidArgument.
    """
    paths = list(paths)
    labels = dict(current) if paths else dict(given)
    for path in paths:
        if path == "labels":
            labels = dict(given)
        elif path.startswith("labels."):
            key = path.removeprefix("labels.")
            labels[key] = given.get(key, "")
        else:
            raise InvalidArgument(f"cannot update {path!r} field on {what}")
    validate_labels(labels, what)
    return {key: value for key, value in labels.items() if value}
