"""The namespace a containerd API call acts in.

ctr and containerd's Go client send it in every call's gRPC metadata under
``containerd-namespace`` (``ctr -n k8s.io ...``). As in containerd, a call
that needs one fails with FailedPrecondition when it is missing or empty, and
with InvalidArgument when it is not a valid identifier.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from errdefs import FailedPrecondition, InvalidArgument

__all__ = ["LEASE_KEY", "NAMESPACE_KEY", "lease_from", "namespace_from", "required_namespace", "validate_identifier"]

NAMESPACE_KEY = "containerd-namespace"
# The lease a client holds while it writes content and snapshots it has not referenced yet.
LEASE_KEY = "containerd-lease"
# containerd's identifiers: alphanumerics joined by single '.', '_' or '-', at most 76 characters.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
_MAX_IDENTIFIER = 76


def namespace_from(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The first ``containerd-namespace`` value in gRPC metadata, None when there is none."""
    return _header(metadata, NAMESPACE_KEY)


def lease_from(context: Any) -> str | None:
    """The lease the call ``context`` serves runs in, None when it names none."""
    return _header(context.invocation_metadata(), LEASE_KEY) or None


def _header(metadata: Iterable[tuple[str, Any]] | None, name: str) -> str | None:
    for key, value in metadata or ():
        if key.lower() == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def required_namespace(context: Any) -> str:
    """The namespace of the call ``context`` serves; it must be there and valid."""
    namespace = namespace_from(context.invocation_metadata())
    if not namespace:
        raise FailedPrecondition("namespace is required")
    validate_identifier(namespace, "namespace")
    return namespace


def validate_identifier(value: str, what: str) -> None:
    if not value:
        raise InvalidArgument(f"{what}: identifier must not be empty")
    if len(value) > _MAX_IDENTIFIER:
        raise InvalidArgument(f"{what}: identifier {value!r} greater than maximum length "
                              f"({_MAX_IDENTIFIER} characters)")
    if not _IDENTIFIER.fullmatch(value):
        raise InvalidArgument(f"{what}: identifier {value!r} must match {_IDENTIFIER.pattern}")
