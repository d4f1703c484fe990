"""Registry hosts configured the containerd way: ``<config dir>/<host>/hosts.toml``.

::

    server = "https://registry.example.com"
    [host."https://mirror.example.com"]
      capabilities = ["pull", "resolve"]
      ca = "/etc/certs/mirror.pem"
      skip_verify = false
      override_path = false
      [host."https://mirror.example.com".header]
        x-custom = "value"

Mirrors are tried in file order, the server last. Without a file, the registry
itself is the server over HTTPS; loopback registries fall back to plain HTTP.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from errdefs import InvalidArgument

__all__ = ["HostsConfig", "RegistryHost", "is_loopback"]

_DOCKER_HUB = "docker.io"
_DOCKER_HUB_SERVER = "https://registry-1.docker.io"
_ALL_CAPABILITIES = ("pull", "resolve", "push")


@dataclass(frozen=True, slots=True)
class RegistryHost:
    scheme: str
    host: str
    path: str = "/v2"
    capabilities: tuple[str, ...] = _ALL_CAPABILITIES
    ca: tuple[str, ...] = ()
    skip_verify: bool = False
    client_certs: tuple[tuple[str, str], ...] = ()
    headers: dict[str, str] = field(default_factory=dict, hash=False)
    # Plain HTTP is tried after HTTPS fails, as containerd does for loopback registries.
    http_fallback: bool = False

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"

    def as_plain_http(self) -> RegistryHost:
        return RegistryHost("http", self.host, self.path, self.capabilities, headers=self.headers)


class HostsConfig:
    def __init__(self, config_dir: Path | None) -> None:
        self.config_dir = config_dir

    def hosts_for(self, registry: str) -> list[RegistryHost]:
        """Hosts to try for ``registry`` (e.g. ``docker.io`` or ``127.0.0.1:5000``), in order."""
        doc, folder = self._load(registry)
        hosts = [_parse_host(url, spec, registry, folder) for url, spec in (doc.get("host") or {}).items()]
        server = doc.get("server")
        if server is not None:
            hosts.append(_parse_host(str(server), doc, registry, folder))
        else:
            hosts.append(_default_server(registry))
        return hosts

    def _load(self, registry: str) -> tuple[dict[str, Any], Path | None]:
        """The hosts.toml that applies to ``registry``, and its folder (where relative file names start)."""
        if self.config_dir is None:
            return {}, None
        for name in (_dir_name(registry), "_default"):
            path = self.config_dir / name / "hosts.toml"
            if path.is_file():
                try:
                    return tomllib.loads(path.read_text()), path.parent
                except tomllib.TOMLDecodeError as exc:
                    raise InvalidArgument(f"{path}: {exc}") from exc
        return {}, None


def _dir_name(registry: str) -> str:
    return registry.replace("[", "").replace("]", "") if registry.startswith("[") else registry


def _default_server(registry: str) -> RegistryHost:
    if registry == _DOCKER_HUB:
        return _parse_host(_DOCKER_HUB_SERVER, {}, registry, None)
    return RegistryHost("https", registry, http_fallback=is_loopback(registry))


def _parse_host(url: str, spec: dict[str, Any], registry: str, folder: Path | None) -> RegistryHost:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "https", url
    if scheme not in ("http", "https"):
        raise InvalidArgument(f"hosts.toml for {registry}: unsupported scheme in {url!r}")
    host, slash, path = rest.partition("/")
    path = "/" + path.rstrip("/") if slash and path else ""
    if not spec.get("override_path", False):
        path += "/v2"
    return RegistryHost(
        scheme=scheme,
        host=host,
        path=path,
        capabilities=tuple(spec.get("capabilities", _ALL_CAPABILITIES)),
        ca=tuple(_in(folder, f) for f in _strings(spec.get("ca"))),
        skip_verify=bool(spec.get("skip_verify", False)),
        client_certs=tuple((_in(folder, cert), _in(folder, key) if key else "")
                           for cert, key in _client_certs(spec.get("client"))),
        headers={str(k): _header_value(v) for k, v in (spec.get("header") or {}).items()},
    )


def _in(folder: Path | None, name: str) -> str:
    """A file named in hosts.toml: relative names are inside the hosts.toml's folder, as containerd reads them."""
    return str(folder / name) if folder is not None and not name.startswith("/") else name


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)


def _client_certs(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return ((value, ""),)
    pairs = []
    for item in value:
        pairs.append((str(item), "") if isinstance(item, str) else (str(item[0]), str(item[1])))
    return tuple(pairs)


def _header_value(value: Any) -> str:
    return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1, with or without a port."""
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
