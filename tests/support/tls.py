"""A private certificate authority for tests: a CA, a server certificate for 127.0.0.1 and a client one,
made by the openssl command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import run


@dataclass(frozen=True)
class CertAuthority:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_ca(folder: Path, name: str = "crishim-test") -> CertAuthority:
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} CA",
        "-keyout", ca_key, "-out", ca)
    server = _signed(folder, "server", ca, ca_key, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    client = _signed(folder, "client", ca, ca_key, "extendedKeyUsage=clientAuth")
    return CertAuthority(ca, *server, *client)


def _signed(folder: Path, name: str, ca: Path, ca_key: Path, extensions: str) -> tuple[Path, Path]:
    cert, key, request, ext = (folder / f"{name}{suffix}" for suffix in (".pem", ".key", ".csr", ".ext"))
    ext.write_text(extensions + "\n")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", key,
        "-out", request)
    run("openssl", "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
        "-extfile", ext, "-out", cert)
    return cert, key
