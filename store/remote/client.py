"""An OCI distribution (v2) client for one repository: resolve tags, fetch blobs.

Every fetched byte goes into a content-store writer, which hashes it; a resumed
ingest continues with an HTTP Range request. Transport errors, 429 and 5xx are
retried with exponential backoff. A transfer that receives less than
``MIN_BYTES_PER_SECOND`` on average over any ``progress_timeout`` seconds (a read
that yields nothing for that long included) is cancelled, so a registry trickling
one byte a second cannot hold a pull forever. A set ``cancel`` token stops it at
the next chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import httpx
import structlog

from errdefs import CrishimError, DeadlineExceeded, InvalidArgument, NotFound, Unauthenticated, Unavailable
from store import mediatypes
from store.cancel import Cancellation
from store.content import Writer
from store.descriptor import Descriptor
from store.digest import Digest, sha256_of
from store.remote.auth import Credentials, RegistryAuth
from store.remote.hosts import RegistryHost
from store.remote.tls import tls_context

__all__ = ["MIN_BYTES_PER_SECOND", "RegistryClient"]

log = structlog.get_logger(__name__)

_T = TypeVar("_T")
_MAX_MANIFEST = 4 << 20
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MANIFEST_TYPES = mediatypes.INDEX_TYPES | mediatypes.MANIFEST_TYPES
# The slowest transfer worth waiting for; below it, over a whole progress window, the pull gives up.
MIN_BYTES_PER_SECOND = 1024


class RegistryClient:
    def __init__(self, registry: str, repository: str, hosts: list[RegistryHost],
                 credentials: Credentials | None, *, progress_timeout: float | None, retries: int = 3,
                 backoff: float = 0.5, on_bytes: Callable[[str, int], None] | None = None,
                 cancel: Cancellation | None = None) -> None:
        self.registry = registry
        self.repository = repository
        self._hosts = hosts
        self._credentials = credentials
        self._timeout = httpx.Timeout(connect=30.0, read=progress_timeout, write=30.0, pool=30.0)
        self._progress_timeout = progress_timeout
        self._retries = retries
        self._backoff = backoff
        self._on_bytes = on_bytes or (lambda host, n: None)
        self._cancel = cancel or Cancellation()
        self._token_client = httpx.Client(verify=tls_context((), None, True), timeout=self._timeout,
                                          follow_redirects=True)
        self._clients: dict[RegistryHost, httpx.Client] = {}
        self._schemes: dict[RegistryHost, RegistryHost] = {}
        self._unreachable: set[RegistryHost] = set()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._token_client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve(self, obj: str) -> Descriptor:
        """The descriptor of a tag or digest in this repository."""
        return self._each_host("resolve", lambda host: self._resolve_on(host, obj))

    def fetch(self, desc: Descriptor, writer: Writer) -> None:
        """Download ``desc`` into ``writer`` (resuming at its offset) and commit it."""
        self._each_host("pull", lambda host: self._fetch_on(host, desc, writer))
        writer.commit()

    def _each_host(self, capability: str, action: Callable[[RegistryHost], _T]) -> _T:
        hosts = [h for h in self._hosts if capability in h.capabilities]
        if not hosts:
            raise Unavailable(f"no registry host of {self.registry} can {capability}")
        error: CrishimError | None = None
        for host in hosts:
            if host in self._unreachable:
                continue
            try:
                return action(host)
            except (NotFound, Unavailable) as exc:
                log.debug("registry.host_failed", host=host.host, error=str(exc))
                error = exc
        raise error or Unavailable(f"registry {self.registry} unreachable: no host of it answers")

    def _resolve_on(self, host: RegistryHost, obj: str) -> Descriptor:
        path = f"/{self.repository}/manifests/{obj}"
        headers = {"Accept": mediatypes.MANIFEST_ACCEPT}
        response = self._request(host, "HEAD", path, headers)
        digest_header = response.headers.get("Docker-Content-Digest")
        size_header = response.headers.get("Content-Length")
        if not (digest_header and size_header) or response.status_code != 200:
            return self._with_retries(host, lambda: self._get_manifest(host, path, headers, obj))
        return self._descriptor(response, obj, None)

    def _get_manifest(self, host: RegistryHost, path: str, headers: dict[str, str], obj: str) -> Descriptor:
        """GET a manifest, reading no more than its bound: a registry may send an endless body."""
        too_large = InvalidArgument(f"{self.registry}/{self.repository}:{obj}: manifest larger than "
                                    f"{_MAX_MANIFEST} bytes")
        with self._stream(host, path, headers) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdecimal() and int(declared) > _MAX_MANIFEST:
                raise too_large
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > _MAX_MANIFEST:
                    raise too_large
            return self._descriptor(response, obj, bytes(body))

    def _with_retries(self, host: RegistryHost, action: Callable[[], _T]) -> _T:
        """``action``, again after a backoff while it fails with Unavailable (5xx, 429, a dropped stream)."""
        for attempt in range(self._retries):
            try:
                return action()
            except Unavailable:
                if host in self._unreachable:
                    raise
                self._sleep(attempt)
        return action()

    def _descriptor(self, response: httpx.Response, obj: str, body: bytes | None) -> Descriptor:
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in _MANIFEST_TYPES:
            raise InvalidArgument(f"{self.registry}/{self.repository}:{obj}: unsupported media type "
                                  f"{media_type!r}")
        if ":" in obj:  # a tag never holds a colon; a digest always does
            digest = Digest.parse(obj)
        elif body is not None:
            digest = Digest.parse(response.headers.get("Docker-Content-Digest") or str(sha256_of(body)))
        else:
            digest = Digest.parse(response.headers["Docker-Content-Digest"])
        size = len(body) if body is not None else int(response.headers["Content-Length"])
        return Descriptor(media_type, digest, size)

    def _fetch_on(self, host: RegistryHost, desc: Descriptor, writer: Writer) -> None:
        kind = "manifests" if desc.media_type in _MANIFEST_TYPES else "blobs"
        path = f"/{self.repository}/{kind}/{desc.digest}"
        for attempt in range(self._retries + 1):
            try:
                self._stream_into(host, path, desc, writer)
                return
            except Unavailable:
                if attempt == self._retries or host in self._unreachable:
                    raise
                self._sleep(attempt)

    def _stream_into(self, host: RegistryHost, path: str, desc: Descriptor, writer: Writer) -> None:
        if writer.offset >= desc.size:
            return
        headers = {"Accept": desc.media_type or "*/*"}
        if writer.offset:
            headers["Range"] = f"bytes={writer.offset}-"
        self._cancel.check()
        floor = _RateFloor(self._progress_timeout, f"{self.registry}{path}")
        with self._stream(host, path, headers) as response:
            if response.status_code == 200 and writer.offset:
                writer.truncate()  # the server ignored the Range: start over
            for chunk in response.iter_raw():
                self._cancel.check()
                writer.write(chunk)
                self._on_bytes(host.host, len(chunk))
                floor.add(len(chunk))

    @contextmanager
    def _stream(self, host: RegistryHost, path: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
        client, url = self._client(host), self._url(host, path)
        try:
            with client.stream("GET", url, headers=headers) as response:
                _check(response, self.registry, path)
                yield response
        except httpx.TimeoutException as exc:
            raise DeadlineExceeded(f"{self.registry}{path}: no progress for {self._progress_timeout}s") from exc
        except httpx.ConnectError as exc:
            raise self._mark_unreachable(host, exc) from exc
        except httpx.TransportError as exc:
            raise Unavailable(f"{self.registry}{path}: {exc}") from exc

    def _request(self, host: RegistryHost, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
        for attempt in range(self._retries + 1):
            self._cancel.check()
            try:
                response = self._client(host).request(method, self._url(host, path), headers=headers)
            except httpx.TimeoutException as exc:
                raise DeadlineExceeded(f"{self.registry}{path}: no answer for {self._progress_timeout}s") from exc
            except httpx.ConnectError as exc:
                raise self._mark_unreachable(host, exc) from exc
            except httpx.TransportError as exc:
                if attempt == self._retries:
                    raise Unavailable(f"registry {self.registry} unreachable: {exc}") from exc
                self._sleep(attempt)
                continue
            if response.status_code in _RETRY_STATUS and attempt < self._retries:
                self._sleep(attempt)
                continue
            _check(response, self.registry, path)
            return response
        raise AssertionError("unreachable")

    def _mark_unreachable(self, host: RegistryHost, exc: httpx.ConnectError) -> Unavailable:
        """A host that refuses connections is skipped for the rest of this pull instead of retried."""
        self._unreachable.add(host)
        return Unavailable(f"registry {self.registry} unreachable at {host.host}: {exc}")

    def _url(self, host: RegistryHost, path: str) -> str:
        return self._effective(host).base_url + path

    def _effective(self, host: RegistryHost) -> RegistryHost:
        """A loopback registry that does not speak TLS is used over plain HTTP, as containerd does."""
        if host not in self._schemes:
            self._schemes[host] = host.as_plain_http() if host.http_fallback and not self._speaks_tls(host) else host
        return self._schemes[host]

    def _speaks_tls(self, host: RegistryHost) -> bool:
        try:
            self._client(host).get(host.base_url + "/", timeout=5.0, auth=None)
        except (httpx.ConnectError, httpx.TimeoutException) as exc:
            log.debug("registry.http_fallback", host=host.host, error=str(exc))
            return False
        return True

    def _client(self, host: RegistryHost) -> httpx.Client:
        client = self._clients.get(host)
        if client is None:
            context = tls_context(host.ca, host.client_certs[0] if host.client_certs else None,
                                  not host.skip_verify)
            # The registry's credentials go to the registry only, never to a mirror.
            credentials = self._credentials if _is_upstream(host.host, self.registry) else None
            auth = RegistryAuth(self.registry, f"repository:{self.repository}:pull", credentials,
                                self._token_client)
            client = httpx.Client(verify=context, headers=host.headers, auth=auth, timeout=self._timeout,
                                  follow_redirects=True)
            self._clients[host] = client
        return client

    def _sleep(self, attempt: int) -> None:
        self._cancel.sleep(self._backoff * (2**attempt))


class _RateFloor:
    """Fails a transfer whose bytes over a window of ``window`` seconds average below the floor."""

    def __init__(self, window: float | None, what: str) -> None:
        self._window = window
        self._what = what
        self._started = time.monotonic()
        self._bytes = 0

    def add(self, n: int) -> None:
        if self._window is None:
            return
        self._bytes += n
        elapsed = time.monotonic() - self._started
        if elapsed < self._window:
            return
        if self._bytes < MIN_BYTES_PER_SECOND * elapsed:
            raise DeadlineExceeded(f"{self._what}: {self._bytes} bytes in {elapsed:.0f}s, below "
                                   f"{MIN_BYTES_PER_SECOND} bytes/s")
        self._started, self._bytes = time.monotonic(), 0


def _check(response: httpx.Response, registry: str, path: str) -> None:
    code = response.status_code
    if code in (200, 206):
        return
    if code == 404:
        raise NotFound(f"{registry}{path}: not found")
    if code in (401, 403):
        raise Unauthenticated(f"authentication failed for {registry}: {code} on {path}")
    raise Unavailable(f"{registry}{path}: registry answered {code}")


def _is_upstream(host: str, registry: str) -> bool:
    return host == registry or (registry == "docker.io" and host == "registry-1.docker.io")


