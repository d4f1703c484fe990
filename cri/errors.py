"""The one table between crishim's error vocabulary and gRPC status codes.

Handlers raise ``errdefs`` errors; the interceptor (``cri.instrument``) turns
them into status codes here. Clients of the daemon go the other way with
``from_status`` so a NOT_FOUND from the socket is an ``errdefs.NotFound`` again.
"""

from __future__ import annotations

import errno
import types
from collections.abc import Mapping

import grpc

import errdefs

__all__ = ["INTERNAL_MESSAGE", "STATUS_CODES", "from_status", "status_code", "status_of"]

STATUS_CODES: Mapping[type[errdefs.CrishimError], grpc.StatusCode] = types.MappingProxyType(
    {
        errdefs.NotFound: grpc.StatusCode.NOT_FOUND,
        errdefs.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
        errdefs.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
        errdefs.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
        errdefs.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
        errdefs.Unavailable: grpc.StatusCode.UNAVAILABLE,
        errdefs.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
        errdefs.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
        errdefs.DataLoss: grpc.StatusCode.DATA_LOSS,
        errdefs.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
        errdefs.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
        errdefs.Cancelled: grpc.StatusCode.CANCELLED,
        errdefs.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    }
)

_ERRORS_BY_CODE: Mapping[grpc.StatusCode, type[errdefs.CrishimError]] = types.MappingProxyType(
    {code: error for error, code in STATUS_CODES.items()}
)

# What a client sees for a bug: the details stay in the daemon's log, where the
# traceback is, and out of the reply, where they might leak paths or data.
INTERNAL_MESSAGE = "internal error"


# Refusals by the host, not bugs: the operator can act on them, so they reach the client with their cause.
_HOST_REFUSALS: Mapping[int, tuple[grpc.StatusCode, str]] = types.MappingProxyType({
    errno.EPERM: (grpc.StatusCode.PERMISSION_DENIED, "crishim needs root with its usual capabilities"),
    errno.EACCES: (grpc.StatusCode.PERMISSION_DENIED, "crishim needs root with its usual capabilities"),
    errno.EROFS: (grpc.StatusCode.FAILED_PRECONDITION, "crishim's root and state must be writable"),
})


def status_code(exc: BaseException) -> grpc.StatusCode:
    """The status code for ``exc``: from the table, the host's refusals by their errno, else INTERNAL."""
    for cls in type(exc).__mro__:
        code = STATUS_CODES.get(cls)
        if code is not None:
            return code
    refusal = _refusal(exc)
    return refusal[0] if refusal else grpc.StatusCode.INTERNAL


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and the message to send back for ``exc``."""
    code = status_code(exc)
    if code is grpc.StatusCode.INTERNAL:
        return code, INTERNAL_MESSAGE
    refusal = _refusal(exc)
    if refusal and isinstance(exc, OSError):
        # The socket is root's, so the path in the message reaches no one who could not read it anyway.
        where = f": {exc.filename}" if exc.filename else ""
        return code, f"the system refused the daemon: {exc.strerror or exc}{where} ({refusal[1]})"
    return code, str(exc) or type(exc).__name__


def _refusal(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    if isinstance(exc, errdefs.CrishimError) or not isinstance(exc, OSError) or exc.errno is None:
        return None
    return _HOST_REFUSALS.get(exc.errno)


def from_status(code: grpc.StatusCode, message: str) -> errdefs.CrishimError:
    """The errdefs error a client should raise for a failed RPC.

    Codes outside the table (INTERNAL, UNKNOWN, CANCELLED...) come back as a
    plain CrishimError carrying the code's name.
    """
    error = _ERRORS_BY_CODE.get(code)
    if error is None:
        return errdefs.CrishimError(f"{code.name}: {message}")
    return error(message)
