"""The one table between crishim's error vocabulary and gRPC status codes.

Handlers raise ``errdefs`` errors; the interceptor (``cri.instrument``) turns
them into status codes here. Clients of the daemon go the other way with
``from_status`` so a NOT_FOUND from the socket is an ``errdefs.NotFound`` again.
"""

from __future__ import annotations

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


def status_code(exc: BaseException) -> grpc.StatusCode:
    """The status code for ``exc``: from the table, else INTERNAL."""
    for cls in type(exc).__mro__:
        code = STATUS_CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and the message to send back for ``exc``."""
    code = status_code(exc)
    if code is grpc.StatusCode.INTERNAL:
        return code, INTERNAL_MESSAGE
    return code, str(exc) or type(exc).__name__


def from_status(code: grpc.StatusCode, message: str) -> errdefs.CrishimError:
    """The errdefs error a client should raise for a failed RPC.

    Codes outside the table (INTERNAL, UNKNOWN, CANCELLED...) come back as a
    plain CrishimError carrying the code's name.
    """
    error = _ERRORS_BY_CODE.get(code)
    if error is None:
        return errdefs.CrishimError(f"{code.name}: {message}")
    return error(message)
