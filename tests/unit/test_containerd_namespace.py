"""The containerd-namespace gRPC metadata key, read as containerd reads it."""

from __future__ import annotations

from typing import Any

import pytest

from cri.containerd.namespace import NAMESPACE_KEY, namespace_from, required_namespace, validate_identifier
from errdefs import FailedPrecondition, InvalidArgument


class Context:
    def __init__(self, *metadata: tuple[str, Any]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._metadata


def test_the_key_is_containerds() -> None:
    assert NAMESPACE_KEY == "containerd-namespace"


def test_the_first_value_wins() -> None:
    metadata = [("user-agent", "ctr"), (NAMESPACE_KEY, "k8s.io"), (NAMESPACE_KEY, "default")]
    assert namespace_from(metadata) == "k8s.io"
    assert namespace_from([("Containerd-Namespace", b"default")]) == "default"


def test_absent_is_none() -> None:
    assert namespace_from([("user-agent", "ctr")]) is None
    assert namespace_from(None) is None


def test_required_namespace_comes_from_the_call() -> None:
    assert required_namespace(Context((NAMESPACE_KEY, "k8s.io"))) == "k8s.io"


@pytest.mark.parametrize("metadata", [(), ((NAMESPACE_KEY, ""),)])
def test_missing_or_empty_is_failed_precondition(metadata: tuple[tuple[str, Any], ...]) -> None:
    with pytest.raises(FailedPrecondition, match="namespace is required"):
        required_namespace(Context(*metadata))


@pytest.mark.parametrize("name", ["-leading", "trailing.", "two..dots", "spa ce", "slash/ed", "x" * 77])
def test_invalid_identifiers_are_invalid_arguments(name: str) -> None:
    with pytest.raises(InvalidArgument):
        required_namespace(Context((NAMESPACE_KEY, name)))


@pytest.mark.parametrize("name", ["k8s.io", "default", "a", "moby_1-2.x", "x" * 76])
def test_valid_identifiers(name: str) -> None:
    validate_identifier(name, "namespace")
