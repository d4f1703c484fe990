"""TLS settings of a registry host as one ``ssl.SSLContext``, shared by every pull that talks to it.

Building a context loads the CA bundle, which costs ~20 ms of CPU: far more than a small layer's whole
download, so a context is made once per set of files and reused. A file changed on disk (a rotated CA or
client certificate) gives a new context, so hosts.toml edits still apply without a restart.
"""

from __future__ import annotations

import functools
import os
import ssl

import certifi

from errdefs import InvalidArgument

__all__ = ["tls_context"]


def tls_context(ca: tuple[str, ...], client_cert: tuple[str, str] | None, verify: bool) -> ssl.SSLContext:
    """The context for a host trusting ``ca`` (else the bundled roots), presenting ``client_cert``
    (certificate, key; the key may be in the certificate's file), checking the server unless not ``verify``."""
    files = [*ca, *(f for f in client_cert or () if f)]
    return _cached(ca, client_cert, verify, tuple(_version(f) for f in files))


def _version(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidArgument(f"TLS file {path}: {exc.strerror}") from exc
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=64)
def _cached(ca: tuple[str, ...], client_cert: tuple[str, str] | None, verify: bool,
            versions: tuple[tuple[int, int], ...]) -> ssl.SSLContext:
    try:
        if verify:
            context = ssl.create_default_context(cafile=None if ca else certifi.where())
            for path in ca:
                context.load_verify_locations(cafile=path)
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if client_cert is not None:
            certificate, key = client_cert
            context.load_cert_chain(certificate, key or None)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"TLS files {', '.join((*ca, *(client_cert or ())))}: {exc}") from exc
    return context
