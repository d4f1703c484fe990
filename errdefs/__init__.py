"""crishim's one error vocabulary.

Every layer raises these with context; the gRPC boundary turns them into status
codes in one table (``cri.errors``), as containerd's errdefs does::

    CrishimError
    ├── NotFound               the thing asked for does not exist
    ├── AlreadyExists          a name or key is taken
    ├── InvalidArgument        the request itself is malformed
    ├── FailedPrecondition     the request is valid but the state forbids it
    ├── PermissionDenied       the daemon lacks a privilege the operation needs
    ├── Unavailable            a dependency (a registry, the disk) can't be reached
    ├── Unauthenticated        a registry refused the credentials, or none were given
    ├── DeadlineExceeded       no progress within the allowed time
    ├── DataLoss               content does not match its digest or size
    ├── OutOfRange             an offset past the end of the thing read
    ├── ResourceExhausted      a limit on concurrent work is reached
    ├── Cancelled              the caller gave up (cancelled the RPC, or its deadline passed)
    └── Unimplemented          the operation is not supported
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "Cancelled",
    "CrishimError",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
]


class CrishimError(Exception):
    """Base of every error crishim raises on purpose."""


class NotFound(CrishimError):
    pass


class AlreadyExists(CrishimError):
    pass


class InvalidArgument(CrishimError):
    pass


class FailedPrecondition(CrishimError):
    pass


class PermissionDenied(CrishimError):
    pass


class Unavailable(CrishimError):
    pass


class Unauthenticated(CrishimError):
    pass


class DeadlineExceeded(CrishimError):
    pass


class DataLoss(CrishimError):
    pass


class OutOfRange(CrishimError):
    pass


class Unimplemented(CrishimError):
    pass


class ResourceExhausted(CrishimError):
    pass


class Cancelled(CrishimError):
    pass
