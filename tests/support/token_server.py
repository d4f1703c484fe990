"""A registry token server (the bearer-token flow of the distribution spec) on 127.0.0.1.

It signs RS256 JWTs with a self-signed certificate sent in the ``x5c`` header, which
docker-registry's ``auth.token`` verifies against ``rootcertbundle``. GET /token with
basic credentials and POST /token with ``grant_type=refresh_token`` (identity tokens)
are both served, as real token servers do.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ISSUER = "crishim-test-token-issuer"
SERVICE = "crishim-test-registry"


@dataclass
class TokenServer:
    username: str
    password: str
    identity_token: str
    cert_path: Path
    requests: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def start_token_server(workdir: Path, username: str, password: str) -> TokenServer:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _self_signed(key)
    cert_path = workdir / "token-cert.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    server = TokenServer(username, password, secrets.token_urlsafe(16), cert_path)
    x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server, key, x5c))
    server._server = httpd
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return server


def _self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))


def _handler(server: TokenServer, key: rsa.RSAPrivateKey, x5c: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            query = parse_qs(urlparse(self.path).query)
            server.requests.append("GET")
            if self.headers.get("Authorization") != _basic(server.username, server.password):
                self._answer(401, {"details": "bad credentials"})
                return
            self._issue(query.get("scope", [""])[0], "token")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            server.requests.append("POST")
            if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [server.identity_token]:
                self._answer(401, {"details": "bad refresh token"})
                return
            self._issue(form.get("scope", [""])[0], "access_token")

        def _issue(self, scope: str, field_name: str) -> None:
            access = []
            if scope.count(":") >= 2:
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
            now = dt.datetime.now(dt.UTC)
            claims = {"iss": ISSUER, "sub": server.username, "aud": SERVICE, "iat": now, "nbf": now,
                      "exp": now + dt.timedelta(minutes=5), "jti": secrets.token_hex(8), "access": access}
            token = jwt.encode(claims, key, algorithm="RS256", headers={"x5c": [x5c]})
            self._answer(200, {field_name: token, "expires_in": 300})

        def _answer(self, code: int, doc: dict[str, object]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
