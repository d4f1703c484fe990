"""Daemon configuration: a TOML file, with command-line flags on top.

Each setting is a field of the dataclasses below, its meaning in the docstring under it:
``cri.config_reference`` reads them to write docs/configuration.md and deploy/config.toml
(``python -m script.genconfig``), and a test fails when those files differ from what it writes.

An unknown key or a value of the wrong type is an ``errdefs.InvalidArgument``
naming the key. Secrets are left out of ``repr()`` so a logged or printed
config never shows them.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from errdefs import InvalidArgument

__all__ = [
    "CGROUP_DRIVERS",
    "DEFAULT_CONFIG_FILE",
    "CDISettings",
    "LOG_LEVELS",
    "Config",
    "ImageSettings",
    "RegistryAuth",
    "RegistryConfig",
    "RuntimeFeatureSettings",
    "RuntimeSettings",
    "StreamSettings",
    "from_dict",
    "load",
    "split_host_port",
]

DEFAULT_CONFIG_FILE = Path("/etc/crishim/config.toml")
SOCKET_NAME = "crishim.sock"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
CGROUP_DRIVERS = ("cgroupfs", "systemd")
_LEVEL_ALIASES = {"warn": "warning", "fatal": "critical"}
# sun_path in struct sockaddr_un holds 108 bytes including the final NUL.
_MAX_SOCKET_PATH = 107

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RegistryAuth:
    """Credentials for one registry host (containerd's ``registry.configs.<host>.auth``)."""

    username: str = ""
    """The user name for basic authentication (or for the token server of a bearer-token registry)."""
    password: str = field(default="", repr=False)
    """Its password."""
    auth: str = field(default="", repr=False)
    """base64 of "username:password", instead of the two above."""
    identity_token: str = field(default="", repr=False)
    """An OAuth2 refresh token for a bearer-token registry, instead of a user name and password."""


def _no_auths() -> Mapping[str, RegistryAuth]:
    return types.MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    config_path: Path = Path("/etc/crishim/certs.d")
    """containerd's hosts.toml layout: one folder per registry host, with mirrors, CAs and headers."""
    auths: Mapping[str, RegistryAuth] = field(default_factory=_no_auths)
    """Credentials by registry host as written in image references ("host:port"), used when the CRI request
    carries none."""


@dataclass(frozen=True, slots=True)
class ImageSettings:
    snapshotter: str = "overlayfs"
    """The snapshotter that unpacks layers and makes containers' root filesystems: overlayfs or native."""
    max_concurrent_downloads: int = 3
    """Layers one pull downloads at a time (containerd: max_concurrent_downloads)."""
    pull_progress_timeout: float = 300.0
    """Seconds a pull may go without receiving a byte before it is cancelled; 0 disables the check
    (containerd: image_pull_progress_timeout)."""

    def __post_init__(self) -> None:
        if not self.snapshotter:
            raise InvalidArgument("config: image.snapshotter must not be empty")
        if self.max_concurrent_downloads < 1:
            raise InvalidArgument("config: image.max_concurrent_downloads must be at least 1")
        if self.pull_progress_timeout < 0:
            raise InvalidArgument("config: image.pull_progress_timeout must not be negative")


@dataclass(frozen=True, slots=True)
class StreamSettings:
    address: str = "127.0.0.1"
    """Where the streaming server behind Exec, Attach and PortForward URLs listens
    (containerd: stream_server_address)."""
    port: int = 0
    """Its port; 0 picks a free one at start (containerd: stream_server_port)."""
    enable_tls: bool = False
    """Serve https; without the two files below a self-signed pair is made at start
    (containerd: enable_tls_streaming)."""
    tls_cert_file: str = ""
    """PEM certificate for TLS streaming; goes with tls_key_file."""
    tls_key_file: str = ""
    """PEM private key of that certificate."""
    idle_timeout: float = 4 * 3600.0
    """Seconds a streaming session may go without traffic before it is closed (containerd: stream_idle_timeout)."""
    creation_timeout: float = 30.0
    """Seconds a client gets to open its streams after connecting."""

    def __post_init__(self) -> None:
        if not self.address:
            raise InvalidArgument("config: stream.address must not be empty")
        if not 0 <= self.port <= 65535:
            raise InvalidArgument("config: stream.port must be between 0 and 65535")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise InvalidArgument("config: stream.tls_cert_file and stream.tls_key_file go together")
        if (self.tls_cert_file or self.tls_key_file) and not self.enable_tls:
            raise InvalidArgument("config: stream.tls_cert_file needs stream.enable_tls = true")
        if self.idle_timeout <= 0 or self.creation_timeout <= 0:
            raise InvalidArgument("config: stream timeouts must be positive")


@dataclass(frozen=True, slots=True)
class CDISettings:
    """Container Device Interface specs, for a container's CDI devices."""

    spec_dirs: str = "/etc/cdi:/var/run/cdi"
    """Colon-separated folders of CDI spec files (*.json, *.yaml); a later folder wins for a device named twice."""

    @property
    def folders(self) -> tuple[Path, ...]:
        return tuple(Path(d) for d in self.spec_dirs.split(":") if d)


@dataclass(frozen=True, slots=True)
class RuntimeFeatureSettings:
    recursive_read_only_mounts: bool = True
    """Offer recursive read-only mounts with this handler, if its probe at start makes one."""
    user_namespaces: bool = True
    """Offer user namespaces with this handler, if its probe at start passes."""


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """One runtime handler: an OCI runtime with runc's command line (runc, crun)."""

    binary: str = "runc"
    """The OCI runtime's executable, by name on PATH or by absolute path; it takes runc's command line."""
    root: str = ""
    """Its --root, where it keeps container state; "" means <state>/<handler name>."""
    features: RuntimeFeatureSettings = field(default_factory=RuntimeFeatureSettings)
    """Upper bounds of what the handler offers: a feature is reported only when its probe passes too."""
    optional: bool = False
    """true: left out quietly when the binary is not installed (as the built-in crun); false: reported."""


def _default_runtimes() -> Mapping[str, RuntimeSettings]:
    return types.MappingProxyType({"runc": RuntimeSettings("runc"), "crun": RuntimeSettings("crun", optional=True)})


@dataclass(frozen=True, slots=True)
class Config:
    root: Path = Path("/var/lib/crishim")
    """Data kept across reboots: content store, snapshots, metadata database (containerd: root)."""
    state: Path = Path("/run/crishim")
    """Data of this boot only: the socket, OCI bundles, runtime state, namespace pins (containerd: state)."""
    writable_layers_dir: str = ""
    """Where containers' writable layers live, a folder on a filesystem of its own, so that kubelet collects
    and evicts on the image disk and the container disk apart (a split image filesystem); "" keeps them under
    root with the image layers. Changing it moves no layer: existing containers keep theirs where they are."""
    address: str = ""
    """The unix socket kubelet and crictl connect to; "" means <state>/crishim.sock."""
    metrics_address: str = "127.0.0.1:1338"
    """HOST:PORT serving Prometheus metrics at /metrics ([brackets] around an IPv6 host); "" disables it."""
    log_level: str = "info"
    """debug, info, warning, error or critical (warn and fatal are read as warning and critical)."""
    cni_conf_dir: Path = Path("/etc/cni/net.d")
    """Where the pod network is configured: the first *.conf, *.conflist or *.json file by name is used."""
    cni_bin_dir: str = "/usr/lib/cni:/opt/cni/bin"
    """Colon-separated folders searched for CNI plugins."""
    cgroup_driver: str = "cgroupfs"
    """Who makes containers' cgroups: "cgroupfs" (runc, under the pod's cgroup parent) or "systemd" (systemd
    scopes in the pod's slice, runc --systemd-cgroup; needs systemd as init). RuntimeConfig reports it and
    kubelet follows (containerd: SystemdCgroup; CRI-O: cgroup_manager)."""
    stats_collect_period: float = 10.0
    """Seconds between measurements of what snapshots use on disk, which ImageFsInfo and the writable layers
    in container stats report; sooner after a pull or a removal (containerd: stats_collect_period)."""
    image: ImageSettings = field(default_factory=ImageSettings)
    """Pulling and unpacking images."""
    stream: StreamSettings = field(default_factory=StreamSettings)
    """The streaming server behind Exec, Attach and PortForward."""
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    """Registry hosts and credentials."""
    cdi: CDISettings = field(default_factory=CDISettings)
    """Where CDI device specs are read from."""
    default_runtime: str = "runc"
    """The runtime handler of pods whose RunPodSandbox names none; must have a [runtimes] table."""
    runtimes: Mapping[str, RuntimeSettings] = field(default_factory=_default_runtimes)
    """Runtime handlers by name (a RuntimeClass's handler). Tables given replace the built-in runc and crun."""

    def __post_init__(self) -> None:
        for name in ("root", "state"):
            if not getattr(self, name).is_absolute():
                raise InvalidArgument(f"config: {name} must be an absolute path")
        if self.writable_layers_dir and not Path(self.writable_layers_dir).is_absolute():
            raise InvalidArgument("config: writable_layers_dir must be an absolute path")
        if self.writable_layers is not None and self.writable_layers in (self.root, *self.root.parents):
            raise InvalidArgument("config: writable_layers_dir must be a folder of its own, not root or above it")
        if self.cgroup_driver not in CGROUP_DRIVERS:
            raise InvalidArgument(f"config: cgroup_driver must be one of {', '.join(CGROUP_DRIVERS)}")
        if self.stats_collect_period <= 0:
            raise InvalidArgument("config: stats_collect_period must be positive")
        if self.log_level not in LOG_LEVELS:
            raise InvalidArgument(f"config: log_level must be one of {', '.join(LOG_LEVELS)}")
        if self.metrics_address:
            split_host_port(self.metrics_address, key="metrics_address")
        if self.default_runtime not in self.runtimes:
            raise InvalidArgument(f"config: default_runtime {self.default_runtime!r} has no [runtimes] table")
        if any(not name or not settings.binary for name, settings in self.runtimes.items()):
            raise InvalidArgument("config: every [runtimes.NAME] needs a name and a binary")
        if len(bytes(self.socket)) > _MAX_SOCKET_PATH:
            raise InvalidArgument(f"config: address {str(self.socket)!r} is longer than a unix socket allows")

    @property
    def cni_bin_dirs(self) -> tuple[Path, ...]:
        return tuple(Path(d) for d in self.cni_bin_dir.split(":") if d)

    @property
    def writable_layers(self) -> Path | None:
        """The folder of containers' writable layers, if they have one apart from root."""
        return Path(self.writable_layers_dir) if self.writable_layers_dir else None

    @property
    def socket(self) -> Path:
        """The daemon's unix socket path."""
        if not self.address:
            return self.state / SOCKET_NAME
        return Path(self.address.removeprefix("unix://")).absolute()


def split_host_port(address: str, *, key: str = "address") -> tuple[str, int]:
    """``"127.0.0.1:1338"`` → ``("127.0.0.1", 1338)``; IPv6 hosts go in brackets."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InvalidArgument(f"config: {key} must be HOST:PORT, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def load(path: Path | None = None, overrides: Mapping[str, object] | None = None) -> Config:
    """Read ``path`` (defaults only when None), then apply top-level ``overrides``.

    Overrides whose value is None are skipped, so parsed flags can be passed as they are.
    """
    raw = _read_toml(path) if path is not None else {}
    raw.update({key: value for key, value in (overrides or {}).items() if value is not None})
    try:
        return from_dict(raw)
    except InvalidArgument as exc:
        if path is None:
            raise
        raise InvalidArgument(f"{path}: {exc}") from exc


def from_dict(raw: Mapping[str, object]) -> Config:
    """Build a Config from parsed TOML, checking every key and type."""
    normalised = dict(raw)
    level = normalised.get("log_level")
    if isinstance(level, str):
        normalised["log_level"] = _LEVEL_ALIASES.get(level.lower(), level.lower())
    return _build(Config, normalised, "")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise InvalidArgument(f"config: cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"config: {path} is not valid TOML: {exc}") from exc


def _build(cls: type[_T], raw: object, where: str) -> _T:
    """Construct the dataclass ``cls`` from a TOML table, naming any bad key."""
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"config: {where} must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in known:
            raise InvalidArgument(f"config: unknown key {_join(where, key)!r}")
    kwargs = {key: _convert(hints[key], value, _join(where, key)) for key, value in raw.items()}
    return cls(**kwargs)


def _convert(hint: Any, value: object, where: str) -> object:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if typing.get_origin(hint) is Mapping:
        _, item_type = typing.get_args(hint)
        table = _build_table(value, where)
        return types.MappingProxyType({k: _convert(item_type, v, _join(where, k)) for k, v in table.items()})
    return _scalar(hint, value, where)


def _build_table(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"config: {where} must be a table")
    return value


def _scalar(hint: Any, value: object, where: str) -> object:
    # bool is an int subclass in Python; TOML keeps them apart, so do we.
    if hint is str and isinstance(value, str):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is Path and isinstance(value, str) and value:
        return Path(value).absolute()
    expected = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
                Path: "a non-empty path"}[hint]
    raise InvalidArgument(f"config: {where} must be {expected}, got {type(value).__name__}")


def _join(where: str, key: str) -> str:
    # Keys such as registry hosts contain dots and colons: quote them as TOML does.
    part = key if key.replace("_", "").replace("-", "").isalnum() else f'"{key}"'
    return f"{where}.{part}" if where else part
