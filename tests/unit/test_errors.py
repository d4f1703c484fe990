from __future__ import annotations

import grpc
import pytest

import errdefs
from cri import errors

TABLE = [
    (errdefs.NotFound, grpc.StatusCode.NOT_FOUND),
    (errdefs.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errdefs.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errdefs.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errdefs.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errdefs.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errdefs.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errdefs.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errdefs.DataLoss, grpc.StatusCode.DATA_LOSS),
    (errdefs.OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    (errdefs.Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
]


@pytest.mark.parametrize(("error", "code"), TABLE)
def test_table(error: type[errdefs.CrishimError], code: grpc.StatusCode) -> None:
    assert errors.status_code(error("x")) is code
    assert errors.status_of(error("image busybox not found")) == (code, "image busybox not found")


def test_every_error_class_is_mapped() -> None:
    exported = {getattr(errdefs, name) for name in errdefs.__all__} - {errdefs.CrishimError}
    assert set(errors.STATUS_CODES) == exported


def test_subclasses_map_like_their_base() -> None:
    class BlobNotFound(errdefs.NotFound):
        pass

    assert errors.status_code(BlobNotFound("sha256:...")) is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("exc", [ValueError("secret"), errdefs.CrishimError("bare base"), KeyError("k")])
def test_anything_else_is_internal_with_a_generic_message(exc: Exception) -> None:
    assert errors.status_of(exc) == (grpc.StatusCode.INTERNAL, errors.INTERNAL_MESSAGE)


def test_the_os_refusing_is_permission_denied_with_its_cause() -> None:
    exc = PermissionError(1, "Operation not permitted", "/var/lib/crishim/x")
    code, message = errors.status_of(exc)
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "Operation not permitted: /var/lib/crishim/x" in message


def test_a_read_only_root_is_a_failed_precondition_with_its_cause() -> None:
    code, message = errors.status_of(OSError(30, "Read-only file system", "/var/lib/crishim/x"))
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert "Read-only file system: /var/lib/crishim/x" in message and "writable" in message


def test_other_os_errors_stay_internal() -> None:
    assert errors.status_of(OSError(5, "Input/output error", "/x")) == (grpc.StatusCode.INTERNAL,
                                                                       errors.INTERNAL_MESSAGE)


def test_empty_message_falls_back_to_the_class_name() -> None:
    assert errors.status_of(errdefs.NotFound()) == (grpc.StatusCode.NOT_FOUND, "NotFound")


@pytest.mark.parametrize(("error", "code"), TABLE)
def test_from_status_reverses_the_table(error: type[errdefs.CrishimError], code: grpc.StatusCode) -> None:
    exc = errors.from_status(code, "message")
    assert type(exc) is error
    assert str(exc) == "message"


def test_from_status_outside_the_table() -> None:
    exc = errors.from_status(grpc.StatusCode.INTERNAL, "boom")
    assert type(exc) is errdefs.CrishimError
    assert str(exc) == "INTERNAL: boom"
