"""Registry authentication: anonymous, HTTP basic and the bearer-token flow.

The flow is an ``httpx.Auth``: a request goes out as it is (or with a token
already obtained for its scope); on a 401 the ``WWW-Authenticate`` challenge says
whether to answer with basic credentials or to fetch a token from the realm
(with the credentials, an identity token, or anonymously) and retry once.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import httpx

from errdefs import InvalidArgument, Unauthenticated

__all__ = ["Challenge", "Credentials", "RegistryAuth", "parse_challenges"]

_PARAM_RE = re.compile(r'([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
_TOKEN_CLIENT_ID = "crishim"


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    @classmethod
    def from_cri(cls, username: str = "", password: str = "", auth: str = "",
                 identity_token: str = "") -> Credentials | None:
        """From the fields of a CRI ``AuthConfig``; ``auth`` is base64 of ``user:password``."""
        if auth:
            try:
                username, _, password = base64.b64decode(auth, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise InvalidArgument("invalid auth: not base64 of user:password") from None
        if not (username or password or identity_token):
            return None
        return cls(username, password, identity_token)


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value (RFC 7235), e.g. ``Bearer realm="...",service="..."``."""
    challenges: list[Challenge] = []
    for match in re.finditer(r"(?:^|,)\s*(Basic|Bearer)\b", header, re.IGNORECASE):
        start = match.end()
        nxt = re.search(r",\s*(Basic|Bearer)\b", header[start:], re.IGNORECASE)
        body = header[start : start + nxt.start()] if nxt else header[start:]
        params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
                  for m in _PARAM_RE.finditer(body)}
        challenges.append(Challenge(match.group(1).lower(), params))
    return challenges


class RegistryAuth(httpx.Auth):
    """Answers a registry's 401 challenge once per request; tokens are cached per scope."""

    def __init__(self, registry: str, scope: str, credentials: Credentials | None,
                 token_client: httpx.Client) -> None:
        self._registry = registry
        self._scope = scope
        self._credentials = credentials
        self._token_client = token_client
        self._header: str | None = None
        self._lock = threading.Lock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        with self._lock:
            header = self._header
        if header:
            request.headers["Authorization"] = header
        response = yield request
        if response.status_code != 401:
            return
        # httpx follows redirects inside one step of this flow, so the 401 may come from a redirect target
        # (a CDN, or a third party a hostile registry names). It is not the host the credentials are for.
        if _origin(response.request.url) != _origin(request.url):
            raise Unauthenticated(f"authentication failed for {self._registry}: {response.request.url.host}, "
                                  "where it redirected, asked for credentials; none are sent there")
        header = self._answer(response.headers.get("WWW-Authenticate", ""))
        with self._lock:
            self._header = header
        request.headers["Authorization"] = header
        response = yield request
        if response.status_code == 401:
            raise Unauthenticated(f"authentication failed for {self._registry}: credentials were rejected")

    def _answer(self, header: str) -> str:
        challenges = parse_challenges(header)
        for challenge in challenges:
            if challenge.scheme == "bearer":
                return f"Bearer {self._fetch_token(challenge)}"
        if any(c.scheme == "basic" for c in challenges):
            return self._basic()
        raise Unauthenticated(f"authentication failed for {self._registry}: unsupported challenge {header!r}")

    def _basic(self) -> str:
        creds = self._credentials
        if creds is None or not creds.username:
            raise Unauthenticated(f"authentication failed for {self._registry}: no credentials given")
        raw = f"{creds.username}:{creds.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _fetch_token(self, challenge: Challenge) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise Unauthenticated(f"authentication failed for {self._registry}: bearer challenge without realm")
        params = {"scope": challenge.params.get("scope") or self._scope}
        if service := challenge.params.get("service"):
            params["service"] = service
        creds = self._credentials
        try:
            if creds and creds.identity_token:
                response = self._token_client.post(realm, data={
                    **params, "grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": _TOKEN_CLIENT_ID})
            else:
                auth = httpx.BasicAuth(creds.username, creds.password) if creds and creds.username else None
                response = self._token_client.get(realm, params=params, auth=auth)
        except httpx.HTTPError as exc:
            raise Unauthenticated(f"authentication failed for {self._registry}: token server: {exc}") from exc
        return _token_from(response, self._registry)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _token_from(response: httpx.Response, registry: str) -> str:
    if response.status_code in (401, 403):
        raise Unauthenticated(f"authentication failed for {registry}: token server refused the credentials")
    if response.status_code != 200:
        raise Unauthenticated(f"authentication failed for {registry}: token server answered "
                              f"{response.status_code}")
    try:
        doc: Any = response.json()
    except ValueError:
        doc = None
    token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise Unauthenticated(f"authentication failed for {registry}: token server sent no token")
    return token
