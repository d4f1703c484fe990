"""A CNI client: runs the plugins of a network config list against a pod's network namespace.

It follows libcni (CNI spec 1.0.0, with 0.3.x/0.4.0 configs too), as containerd's CRI uses it:

- The network is the first ``*.conf``, ``*.conflist`` or ``*.json`` file of the conf dir by name; a single
  ``.conf`` network is wrapped into a list of one plugin.
- ADD runs the plugins in order, each getting the previous one's result as ``prevResult``; DEL runs them in
  reverse with the result cached at ADD. Capabilities such as ``portMappings`` reach the plugins that declare
  them as ``runtimeConfig``.
- Results are cached in libcni's format (``cniCacheV1``), one file per network, container and interface, so
  DEL and CHECK work after a daemon restart and DEL uses the config the pod was set up with even when the
  conf dir has changed since.

Plugin failures become errdefs errors chosen by the CNI error code; a plugin that hangs is killed after
``timeout`` seconds.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from errdefs import (
    CrishimError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unimplemented,
)

__all__ = [
    "CNI",
    "DEFAULT_BIN_DIRS",
    "DNS",
    "CNIResult",
    "IPConfig",
    "Interface",
    "NetworkConfigList",
    "NetworkStatus",
    "PodRef",
    "PortMapping",
    "Route",
    "load_config_list",
]

log = structlog.get_logger(__name__)

DEFAULT_BIN_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
CONF_EXTENSIONS = (".conf", ".conflist", ".json")
_CACHE_KIND = "cniCacheV1"
# The CNI spec's pattern for container ids and network names; both end up in cache file names.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
_CHECK_SINCE = (0, 4, 0)
# CNI well-known error codes: 1 incompatible version, 2 unsupported field, 3 unknown container, 4 invalid
# environment, 5 I/O failure, 6 decoding failure, 7 invalid network config, 11 try again later.
_ERRORS: dict[int, type[CrishimError]] = {
    1: FailedPrecondition, 2: FailedPrecondition, 3: NotFound, 4: InvalidArgument, 5: Unavailable,
    6: InvalidArgument, 7: FailedPrecondition, 11: Unavailable,
}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _untimed(operation: str) -> AbstractContextManager[None]:
    return nullcontext()


@dataclass(frozen=True, slots=True)
class PodRef:
    name: str
    namespace: str
    uid: str


@dataclass(frozen=True, slots=True)
class PortMapping:
    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def runtime_config(self) -> dict[str, Any]:
        # The shape containerd passes to the portmap plugin (go-cni's PortMapping).
        entry: dict[str, Any] = {
            "hostPort": self.host_port, "containerPort": self.container_port, "protocol": self.protocol.lower(),
        }
        if self.host_ip:
            entry["hostIP"] = self.host_ip
        return entry


@dataclass(frozen=True, slots=True)
class NetworkConfigList:
    name: str
    cni_version: str
    plugins: tuple[Mapping[str, Any], ...]
    disable_check: bool
    source: Path
    raw: bytes  # the list as the plugins see it; cached so DEL runs with the config ADD ran with


@dataclass(frozen=True, slots=True)
class NetworkStatus:
    ready: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""  # the netns path for interfaces inside the pod, empty on the host side


@dataclass(frozen=True, slots=True)
class IPConfig:
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None  # index into CNIResult.interfaces


@dataclass(frozen=True, slots=True)
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None


@dataclass(frozen=True, slots=True)
class DNS:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CNIResult:
    cni_version: str
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = field(default_factory=DNS)
    raw: str = "{}"  # the final plugin's JSON, exactly as it was returned

    def pod_ips(self, ifname: str = "eth0") -> tuple[IPConfig, ...]:
        """The IPs on the pod's ``ifname`` inside its sandbox (what containerd reports as the pod IPs)."""
        if not any(ip.interface is not None for ip in self.ips):
            return self.ips  # pre-0.3.0 results name no interfaces
        return tuple(ip for ip in self.ips if ip.interface is not None and 0 <= ip.interface < len(self.interfaces)
                     and self.interfaces[ip.interface].name == ifname and self.interfaces[ip.interface].sandbox)


@dataclass(frozen=True, slots=True)
class _Invocation:
    """What one ADD/DEL/CHECK passes to every plugin besides its config."""

    netns: str
    container_id: str
    ifname: str
    args: tuple[tuple[str, str], ...]
    capabilities: Mapping[str, Any]


class CNI:
    """Runs CNI plugins from ``bin_dirs`` with the first network config of ``conf_dir``."""

    def __init__(self, conf_dir: Path, cache_dir: Path, bin_dirs: Sequence[Path] = DEFAULT_BIN_DIRS,
                 *, timeout: float = 60.0, timed: Callable[[str], AbstractContextManager[None]] = _untimed) -> None:
        self.conf_dir = conf_dir
        self.cache_dir = cache_dir
        self.bin_dirs = tuple(bin_dirs)
        self.timeout = timeout
        # Wraps each setup (ADD) and teardown (DEL), e.g. to count and time them.
        self._timed = timed

    def load(self) -> NetworkConfigList:
        """The network in use now; FailedPrecondition when there is none (read on every call, as it may change)."""
        return load_config_list(self.conf_dir)

    def status(self) -> NetworkStatus:
        """Ready when a valid network config exists and every plugin it names is installed."""
        try:
            config = self.load()
            for plugin in config.plugins:
                self._find(str(plugin["type"]))
        except CrishimError as e:
            return NetworkStatus(False, str(e))
        return NetworkStatus(True)

    def add(self, netns: Path, container_id: str, pod: PodRef, *, ifname: str = "eth0",
            port_mappings: Sequence[PortMapping] = (), capabilities: Mapping[str, Any] | None = None) -> CNIResult:
        """Attach the pod's network namespace; on failure whatever the plugins set up is torn down again."""
        with self._timed("setup"):
            return self._add(netns, container_id, pod, ifname, port_mappings, capabilities)

    def _add(self, netns: Path, container_id: str, pod: PodRef, ifname: str, port_mappings: Sequence[PortMapping],
             capabilities: Mapping[str, Any] | None) -> CNIResult:
        config = self.load()
        call = _invocation(str(netns), container_id, pod, ifname, port_mappings, capabilities)
        try:
            raw = self._run_list("ADD", config, call, config.plugins, None)
            result = parse_result(raw)
            self._write_cache(config, call, raw)
        except BaseException as e:
            self._rollback(config, call, e)
            raise
        return result

    def delete(self, netns: Path | None, container_id: str, pod: PodRef, *, ifname: str = "eth0",
               port_mappings: Sequence[PortMapping] = (), capabilities: Mapping[str, Any] | None = None) -> None:
        """Detach the pod; idempotent. Uses the config, args and result cached at ADD when there are some."""
        with self._timed("teardown"):
            self._delete(netns, container_id, pod, ifname, port_mappings, capabilities)

    def _delete(self, netns: Path | None, container_id: str, pod: PodRef, ifname: str,
                port_mappings: Sequence[PortMapping], capabilities: Mapping[str, Any] | None) -> None:
        call = _invocation(_netns_if_pinned(netns), container_id, pod, ifname, port_mappings, capabilities)
        cached = self._read_cache(container_id, ifname)
        if cached is not None:
            config, call, result = _from_cache(cached[1], call)
        else:
            try:
                config, result = self.load(), None
            except FailedPrecondition as e:
                # Nothing cached and no config: nothing of ours can be attached, so there is nothing to undo.
                log.warning("cni.del_without_config", container_id=container_id, reason=str(e))
                return
        prev = result if _version(config.cni_version) >= _CHECK_SINCE else None
        self._run_list("DEL", config, call, tuple(reversed(config.plugins)), prev)
        if cached is not None:
            cached[0].unlink(missing_ok=True)

    def check(self, netns: Path, container_id: str, pod: PodRef, *, ifname: str = "eth0") -> None:
        """Ask the plugins whether the pod's network is still as ADD left it (CNI 0.4.0 and later)."""
        call = _invocation(str(netns), container_id, pod, ifname, (), None)
        cached = self._read_cache(container_id, ifname)
        if cached is None:
            raise NotFound(f"no cached CNI result for container {container_id} interface {ifname}")
        config, call, result = _from_cache(cached[1], call)
        if _version(config.cni_version) < _CHECK_SINCE:
            raise Unimplemented(f"CNI version {config.cni_version} of network {config.name} has no CHECK")
        if not config.disable_check:
            self._run_list("CHECK", config, call, config.plugins, result)

    def cached_result(self, container_id: str, ifname: str = "eth0") -> CNIResult | None:
        """The result of the last successful ADD (to report pod IPs after a daemon restart)."""
        _check_call(container_id, ifname, PodRef("", "", ""))
        cached = self._read_cache(container_id, ifname)
        result = None if cached is None else cached[1].get("result")
        return parse_result(result) if isinstance(result, dict) else None

    def _run_list(self, command: str, config: NetworkConfigList, call: _Invocation,
                  plugins: Sequence[Mapping[str, Any]], prev: Mapping[str, Any] | None) -> Mapping[str, Any]:
        result = prev
        for plugin in plugins:
            stdin = _plugin_config(config, plugin, result, call.capabilities)
            out = self._exec(command, str(plugin["type"]), stdin, call)
            # ADD passes each result on; DEL and CHECK hand every plugin the same cached result.
            if command == "ADD" and out is not None:
                result = out
        return result if result is not None else {"cniVersion": config.cni_version}

    def _exec(self, command: str, plugin: str, stdin: Mapping[str, Any],
              call: _Invocation) -> Mapping[str, Any] | None:
        binary = self._find(plugin)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        env.update(CNI_COMMAND=command, CNI_CONTAINERID=call.container_id, CNI_NETNS=call.netns,
                   CNI_IFNAME=call.ifname, CNI_ARGS=";".join(f"{k}={v}" for k, v in call.args),
                   CNI_PATH=os.pathsep.join(str(d) for d in self.bin_dirs))
        try:
            proc = subprocess.run([str(binary)], input=json.dumps(stdin).encode(), capture_output=True, env=env,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            raise DeadlineExceeded(f"CNI plugin {plugin} {command} did not finish within {self.timeout}s") from e
        if proc.returncode != 0:
            raise _plugin_error(plugin, command, proc)
        return _decode_output(plugin, command, proc.stdout)

    def _find(self, plugin: str) -> Path:
        if not _NAME.fullmatch(plugin):
            raise FailedPrecondition(f"invalid CNI plugin type {plugin!r}")
        for folder in self.bin_dirs:
            candidate = folder / plugin
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        path = os.pathsep.join(str(d) for d in self.bin_dirs)
        raise FailedPrecondition(f'failed to find plugin "{plugin}" in path [{path}]')

    def _rollback(self, config: NetworkConfigList, call: _Invocation, cause: BaseException) -> None:
        # Plugins must accept DEL for anything half-made, so a failed ADD leaks no IP, veth or iptables rule.
        try:
            self._run_list("DEL", config, call, tuple(reversed(config.plugins)), None)
        except Exception as e:
            cause.add_note(f"tearing the half-made network down failed too: {e}")
            log.warning("cni.rollback_failed", container_id=call.container_id, error=str(e))

    def _write_cache(self, config: NetworkConfigList, call: _Invocation, result: Mapping[str, Any]) -> None:
        entry = {
            "kind": _CACHE_KIND, "containerId": call.container_id, "config": base64.b64encode(config.raw).decode(),
            "ifName": call.ifname, "networkName": config.name, "cniArgs": [list(a) for a in call.args],
            "capabilityArgs": dict(call.capabilities), "result": result,
        }
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.cache_dir / f"{config.name}-{call.container_id}-{call.ifname}"
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w") as f:
            json.dump(entry, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _read_cache(self, container_id: str, ifname: str) -> tuple[Path, dict[str, Any]] | None:
        # The network name is part of the file name and may have changed since ADD, so match on the rest.
        if not self.cache_dir.is_dir():
            return None
        suffix = f"-{container_id}-{ifname}"
        for path in sorted(p for p in self.cache_dir.iterdir() if p.name.endswith(suffix)):
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if (isinstance(entry, dict) and entry.get("kind") == _CACHE_KIND
                    and entry.get("containerId") == container_id and entry.get("ifName") == ifname):
                return path, entry
        return None


def load_config_list(conf_dir: Path) -> NetworkConfigList:
    """The first config file of ``conf_dir`` by name, as containerd loads it (an invalid first file is an error)."""
    files = sorted(p for p in conf_dir.glob("*") if p.suffix in CONF_EXTENSIONS and p.is_file()) \
        if conf_dir.is_dir() else []
    if not files:
        raise FailedPrecondition(f"no network config found in {conf_dir}")
    source = files[0]
    try:
        data = json.loads(source.read_bytes())
    except (OSError, ValueError) as e:
        raise FailedPrecondition(f"failed to load CNI config file {source}: {e}") from e
    if not isinstance(data, dict):
        raise FailedPrecondition(f"failed to load CNI config file {source}: not a JSON object")
    if source.suffix != ".conflist":
        data = _wrap_single(data, source)
    return _config_list(data, source)


def parse_result(raw: Mapping[str, Any]) -> CNIResult:
    """A plugin result of any spec version as one record (0.1.0/0.2.0 ``ip4``/``ip6`` included)."""
    try:
        version = str(raw.get("cniVersion", ""))
        if "ips" in raw or "interfaces" in raw or _version(version) >= (0, 3, 0):
            ips = tuple(_ip_config(i) for i in raw.get("ips") or ())
            routes = tuple(_route(r) for r in raw.get("routes") or ())
        else:
            legacy = [raw[k] for k in ("ip4", "ip6") if raw.get(k)]
            ips = tuple(IPConfig(ipaddress.ip_interface(v["ip"]), _address(v.get("gateway"))) for v in legacy)
            routes = tuple(_route(r) for v in legacy for r in v.get("routes") or ())
        interfaces = tuple(Interface(str(i.get("name", "")), str(i.get("mac", "")), str(i.get("sandbox", "")))
                           for i in raw.get("interfaces") or ())
        return CNIResult(version, interfaces, ips, routes, _dns(raw.get("dns") or {}), json.dumps(raw))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise Unavailable(f"malformed CNI result: {e}") from e


def _wrap_single(conf: dict[str, Any], source: Path) -> dict[str, Any]:
    # libcni's ConfListFromConf: a .conf holding a list is a mistake the type check catches.
    if not conf.get("type"):
        raise FailedPrecondition(f"network type not found in {source}")
    return {"cniVersion": conf.get("cniVersion", ""), "name": conf.get("name", ""), "plugins": [conf]}


def _config_list(data: dict[str, Any], source: Path) -> NetworkConfigList:
    name, version, plugins = data.get("name"), data.get("cniVersion", ""), data.get("plugins")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise FailedPrecondition(f"invalid network name {name!r} in {source}")
    if not isinstance(plugins, list) or not plugins:
        raise FailedPrecondition(f"CNI config list in config file {source} has no networks")
    for plugin in plugins:
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str) or not plugin["type"]:
            raise FailedPrecondition(f"a plugin in {source} has no type")
    try:
        _version(str(version))
    except ValueError as e:
        raise FailedPrecondition(f"invalid cniVersion {version!r} in {source}") from e
    return NetworkConfigList(name, str(version), tuple(plugins), bool(data.get("disableCheck", False)), source,
                             json.dumps(data).encode())


def _invocation(netns: str, container_id: str, pod: PodRef, ifname: str, port_mappings: Sequence[PortMapping],
                capabilities: Mapping[str, Any] | None) -> _Invocation:
    _check_call(container_id, ifname, pod)
    caps = dict(capabilities or {})
    mappings = [m.runtime_config() for m in port_mappings if m.host_port > 0]  # as containerd: hostPort 0 = none
    if mappings:
        caps["portMappings"] = mappings
    args = (("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", pod.namespace), ("K8S_POD_NAME", pod.name),
            ("K8S_POD_INFRA_CONTAINER_ID", container_id), ("K8S_POD_UID", pod.uid))
    return _Invocation(netns, container_id, ifname, args, caps)


def _check_call(container_id: str, ifname: str, pod: PodRef) -> None:
    if not _NAME.fullmatch(container_id):
        raise InvalidArgument(f"invalid container id {container_id!r} for CNI")
    # The kernel's rules for interface names (IFNAMSIZ, no separators).
    if not ifname or len(ifname) > 15 or ifname in (".", "..") or re.search(r"[/:\s]", ifname):
        raise InvalidArgument(f"invalid interface name {ifname!r}")
    for value in (pod.name, pod.namespace, pod.uid):
        if re.search(r"[;=\s]", value):
            raise InvalidArgument(f"pod field {value!r} cannot be passed in CNI_ARGS")


def _from_cache(entry: Mapping[str, Any],
                call: _Invocation) -> tuple[NetworkConfigList, _Invocation, Mapping[str, Any] | None]:
    try:
        raw = base64.b64decode(entry["config"])
        config = _config_list(json.loads(raw), Path(f"<cached {entry.get('networkName', '')}>"))
        args = tuple((str(k), str(v)) for k, v in entry.get("cniArgs") or call.args)
        caps = entry.get("capabilityArgs") or call.capabilities
        result = entry.get("result")
    except (KeyError, TypeError, ValueError) as e:
        raise Unavailable(f"corrupt CNI cache entry for container {call.container_id}: {e}") from e
    cached = _Invocation(call.netns, call.container_id, call.ifname, args, caps)
    return config, cached, result if isinstance(result, dict) else None


def _plugin_config(config: NetworkConfigList, plugin: Mapping[str, Any], prev: Mapping[str, Any] | None,
                   capabilities: Mapping[str, Any]) -> dict[str, Any]:
    # libcni's buildOneConfig: the list's name and version win, then prevResult and runtimeConfig are injected.
    stdin = {**plugin, "name": config.name, "cniVersion": config.cni_version}
    if prev is not None:
        stdin["prevResult"] = prev
    declared = plugin.get("capabilities") or {}
    runtime = {cap: value for cap, value in capabilities.items() if isinstance(declared, dict) and declared.get(cap)}
    if runtime:
        stdin["runtimeConfig"] = runtime
    return stdin


def _netns_if_pinned(netns: Path | None) -> str:
    # A pin that is gone (pod already torn down) is passed as no netns: plugins then only release what they
    # hold outside it (IPAM, iptables), which is exactly what is left to undo.
    if netns is None:
        return ""
    try:
        if netns.stat().st_dev == os.stat("/proc/self/ns/net").st_dev:
            return str(netns)
    except FileNotFoundError:
        pass
    return ""


def _decode_output(plugin: str, command: str, stdout: bytes) -> Mapping[str, Any] | None:
    if command != "ADD" or not stdout.strip():
        return None
    try:
        out = json.loads(stdout)
    except ValueError as e:
        raise Unavailable(f"CNI plugin {plugin} {command} returned invalid JSON: {e}") from e
    if not isinstance(out, dict):
        raise Unavailable(f"CNI plugin {plugin} {command} returned {type(out).__name__}, not an object")
    return out


def _plugin_error(plugin: str, command: str, proc: subprocess.CompletedProcess[bytes]) -> CrishimError:
    # The spec puts the error on stdout as {"code", "msg", "details"}; some plugins only write to stderr.
    try:
        err = json.loads(proc.stdout)
    except ValueError:
        err = None
    if isinstance(err, dict) and "msg" in err:
        code = int(err.get("code") or 0)
        details = f": {err['details']}" if err.get("details") else ""
        message = f"CNI plugin {plugin} {command} failed (code {code}): {err['msg']}{details}"
        return _ERRORS.get(code, Unavailable)(message)
    text = (proc.stderr or proc.stdout).decode(errors="replace").strip()[-2000:]
    return Unavailable(f"CNI plugin {plugin} {command} failed (exit status {proc.returncode}): {text}")


def _version(text: str) -> tuple[int, ...]:
    # A missing version means 0.1.0, as in libcni.
    if not text:
        return (0, 1, 0)
    if not re.fullmatch(r"\d+\.\d+\.\d+", text):
        raise ValueError(f"not a semantic version: {text!r}")
    return tuple(int(p) for p in text.split("."))


def _address(value: Any) -> IPAddress | None:
    return ipaddress.ip_address(value) if value else None


def _ip_config(entry: Mapping[str, Any]) -> IPConfig:
    index = entry.get("interface")
    return IPConfig(ipaddress.ip_interface(entry["address"]), _address(entry.get("gateway")),
                    int(index) if index is not None else None)


def _route(entry: Mapping[str, Any]) -> Route:
    return Route(ipaddress.ip_network(entry["dst"], strict=False), _address(entry.get("gw")))


def _dns(entry: Mapping[str, Any]) -> DNS:
    return DNS(tuple(entry.get("nameservers") or ()), str(entry.get("domain") or ""),
               tuple(entry.get("search") or ()), tuple(entry.get("options") or ()))
