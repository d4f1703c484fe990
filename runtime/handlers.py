"""Runtime handlers: the OCI runtimes a pod can name (RuntimeClass's handler), each probed on this host.

A handler is a binary with runc's command line (runc, crun) and a ``--root`` of its own. At start every
configured handler creates one throw-away container; a handler that cannot is unusable, and a pod naming it
is refused with the runtime's own error. A feature is reported only when the configuration allows it and a
probe container that uses it was created, so what Status says is what a pod gets on this host.

crun 1.8 refuses to run on a host that mounts cgroup v2 beside the v1 hierarchies while the v2 mount has
controllers ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"). There crun runs
through a shim that hides that v2 mount in a mount namespace of its own, so crun uses the v1 hierarchies, as
runc does; the host's mounts are left as they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog

from errdefs import CrishimError, FailedPrecondition, NotFound
from runtime import namespaces
from runtime.features import DEFAULT_HANDLER, HandlerFeatures
from runtime.runc import Runc, child_env, error_text
from runtime.spec import options as o
from runtime.spec.model import IDMapping, Namespace, Resources, Spec
from runtime.spec.model import Mount as SpecMount
from runtime.userns import probe_idmap
from snapshotters.mount import mount_all, unmount
from snapshotters.snapshotter import Mount

__all__ = ["Handler", "HandlerSpec", "Handlers", "probe_container", "probe_handlers"]

log = structlog.get_logger(__name__)

_PROBE_TIMEOUT = 30.0
_SHIM = """#!/bin/sh
# crun refuses cgroup v2 beside v1 when v2 has controllers: hide that mount in a mount namespace of crun's own.
exec unshare --mount --propagation unchanged -- /bin/sh -c \\
  'mount --make-private /sys/fs/cgroup && umount /sys/fs/cgroup/unified && exec "$0" "$@"' {crun} "$@"
"""
_UNIFIED = Path("/sys/fs/cgroup/unified")
_PROBE_POD = "handlers-probe"
_PROBE_HOST_ID, _PROBE_SIZE = 100000, 65536
_PROBE_MAP = f"0 {_PROBE_HOST_ID} {_PROBE_SIZE}\n"


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A handler as configured: ``allowed`` bounds the features probing may find."""

    name: str
    binary: str
    root: Path
    allowed: HandlerFeatures
    optional: bool = False  # left out quietly when the binary is not installed


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    runc: Runc
    features: HandlerFeatures
    unusable: str = ""  # why this host cannot run containers with it; "" when it can


class Handlers:
    """The handlers by name; ``""`` names the default one."""

    def __init__(self, handlers: Iterable[Handler], default: str) -> None:
        self._handlers = {h.name: h for h in handlers}
        self.default = default

    def get(self, name: str) -> Handler:
        """The handler a pod names: NotFound when none has that name, FailedPrecondition when it cannot run."""
        handler = self._handlers.get(name or self.default)
        if handler is None:
            raise NotFound(f"runtime handler {name!r}: not found (configured: {', '.join(self._handlers)})")
        if handler.unusable:
            raise FailedPrecondition(f"runtime handler {name!r} cannot run containers here: {handler.unusable}")
        return handler

    def usable(self) -> list[Handler]:
        return [h for h in self._handlers.values() if not h.unusable]

    def reported(self) -> list[tuple[str, HandlerFeatures]]:
        """What Status lists: the default as "" and then every usable handler by name."""
        usable = self.usable()
        default = [(DEFAULT_HANDLER, h.features) for h in usable if h.name == self.default]
        return default + [(h.name, h.features) for h in usable]

    def runtimes(self) -> Mapping[str, Runc]:
        """Every handler's command line, usable or not: containers an earlier start made are still reached."""
        return {h.name: h.runc for h in self._handlers.values()}


def probe_handlers(specs: Iterable[HandlerSpec], default: str, state: Path, layers: Path, *,
                   systemd_cgroup: bool = False) -> Handlers:
    """Every configured handler, probed; an optional one whose binary is not installed is left out.

    ``layers`` is a folder on the filesystem of the image layers, which pods with user namespaces see
    through idmapped mounts. ``systemd_cgroup``: every handler is driven with ``--systemd-cgroup``, the
    probes too.
    """
    present = [(spec, binary) for spec in specs
               if (binary := shutil.which(spec.binary)) is not None or not spec.optional]
    # Every probe container at once: each takes a runtime start, and the daemon waits for them all.
    with _probe_user_namespace(state, layers) as userns, ThreadPoolExecutor(max_workers=8) as pool:
        handlers = [_probe(spec, binary, state, userns, pool, systemd_cgroup) for spec, binary in present]
    for handler in handlers:
        if handler.unusable:
            log.warning("runtime handler unusable", handler=handler.name, error=handler.unusable)
    return Handlers(handlers, default)


def _probe(spec: HandlerSpec, binary: str | None, state: Path, userns: Path | None,
           pool: ThreadPoolExecutor, systemd_cgroup: bool) -> Handler:
    if binary is None:
        return Handler(spec.name, Runc(spec.binary, spec.root, systemd_cgroup=systemd_cgroup), HandlerFeatures(),
                       f"{spec.binary}: not found")
    runc = Runc(_shimmed(spec.name, binary, state), spec.root, systemd_cgroup=systemd_cgroup)
    folder = state / "handlers" / spec.name
    plain = pool.submit(probe_container, runc, folder)
    rro = pool.submit(probe_container, runc, folder, recursive_read_only=True)
    users = pool.submit(probe_container, runc, folder, userns=userns) if userns is not None else None
    unusable = plain.result()
    features = HandlerFeatures(
        recursive_read_only_mounts=not unusable and spec.allowed.recursive_read_only_mounts and not rro.result(),
        user_namespaces=not unusable and spec.allowed.user_namespaces and users is not None and not users.result())
    return Handler(spec.name, runc, features, unusable)


@contextlib.contextmanager
def _probe_user_namespace(state: Path, layers: Path) -> Iterator[Path | None]:
    """A pinned user namespace, if this host makes one and idmapped mounts of ``layers``; None otherwise."""
    try:
        pinned = namespaces.pin(state, _PROBE_POD, {"user"}, id_maps=(_PROBE_MAP, _PROBE_MAP))
    except CrishimError as exc:
        log.warning("user namespaces unavailable", error=str(exc))
        yield None
        return
    try:
        assert pinned.user is not None  # pinned just above
        error = probe_idmap(layers, pinned.user, state / "handlers" / "idmap-probe")
        if error:
            log.warning("idmapped mounts unavailable", folder=str(layers), error=error)
        yield None if error else pinned.user
    finally:
        namespaces.unpin(state, _PROBE_POD)
        namespaces.release_dirs(state)


def _shimmed(name: str, binary: str, state: Path) -> str:
    if os.path.basename(binary) != "crun" or not _hybrid_with_controllers():
        return binary
    shim = state / "handlers" / f"{name}-shim"
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text(_SHIM.format(crun=binary))
    shim.chmod(0o755)
    return str(shim)


def _hybrid_with_controllers() -> bool:
    try:
        return bool((_UNIFIED / "cgroup.controllers").read_text().split())
    except OSError:
        return False


def probe_container(runc: Runc, folder: Path, *, recursive_read_only: bool = False,
                    userns: Path | None = None) -> str:
    """"" when the runtime created a container (with a recursive read-only bind of /dev, or in the pinned
    user namespace, if asked), else why not.

    The container is created and deleted, never started: creating it is where runc and crun set up mounts.
    """
    folder.mkdir(parents=True, exist_ok=True)
    container_id = f"crishim-probe-{secrets.token_hex(6)}"
    with tempfile.TemporaryDirectory(dir=folder) as bundle_dir:
        bundle = Path(bundle_dir)
        bundle.chmod(0o755)  # reached by the root of a user namespace too
        rootfs = bundle / "rootfs"
        rootfs.mkdir()
        # A root filesystem mounted for the container, as a real one is (an overlay): state may be a noexec
        # tmpfs (docker's --tmpfs /run in a kind node), whose flags a folder in it would carry.
        mount_all([Mount("tmpfs", "tmpfs", ("mode=755",))], rootfs)
        try:
            _write_probe_bundle(bundle, recursive_read_only, userns)
            error = _create(runc, container_id, bundle, bundle / "runtime.log")
            if not error and recursive_read_only:
                error = _writable_under(runc, container_id, "/rro")
            return error
        finally:
            subprocess.run(runc.command("delete", "--force", container_id), capture_output=True,
                           stdin=subprocess.DEVNULL, env=child_env(), timeout=_PROBE_TIMEOUT, check=False)
            unmount(rootfs, detach=True)


def _write_probe_bundle(bundle: Path, recursive_read_only: bool, userns: Path | None) -> None:
    rootfs = bundle / "rootfs"
    for folder in ("rro", "proc", "dev"):
        (rootfs / folder).mkdir()
    program = rootfs / "probe"
    program.write_bytes(b"")
    program.chmod(0o755)  # looked up at create, never run
    (bundle / "config.json").write_text(json.dumps(_probe_spec(recursive_read_only, userns).to_json()))


def _probe_spec(recursive_read_only: bool, userns: Path | None) -> Spec:
    mounts = [SpecMount("/proc", "proc", "proc"), SpecMount("/dev", "tmpfs", "tmpfs", ("nosuid", "mode=755"))]
    if recursive_read_only:
        mounts.append(SpecMount("/rro", "bind", "/dev", ("rbind", "rprivate", "rro")))
    spaces = [Namespace("mount"), Namespace("pid")]
    # No cgroup settings: the runtime's defaults, which any host it runs on accepts.
    options = [o.with_process_args(["/probe"]), o.with_readonly_rootfs, o.with_mounts(mounts),
               o.with_resources(Resources(devices=None))]
    if userns is not None:
        mapping = IDMapping(0, _PROBE_HOST_ID, _PROBE_SIZE)
        spaces.insert(0, Namespace("user", str(userns)))
        options.append(o.with_id_mappings(mapping, mapping))
    return o.build([*options, o.with_namespaces(spaces)])


def _create(runc: Runc, container_id: str, bundle: Path, log_file: Path) -> str:
    argv = runc.command("create", "--bundle", str(bundle), container_id, log=log_file)
    # The container's stdio stays open while it waits to start: a file, not a pipe, so nothing waits on it.
    with (bundle / "output").open("wb") as output:
        try:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, env=child_env(),
                                    timeout=_PROBE_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
    if result.returncode == 0:
        return ""
    logged = error_text(log_file.read_text(errors="replace")) if log_file.exists() else ""
    return logged or (bundle / "output").read_text(errors="replace").strip() or f"exit {result.returncode}"


def _writable_under(runc: Runc, container_id: str, point: str) -> str:
    """"" when every mount at or under ``point`` in the container is read-only, else the first that is not."""
    try:
        pid = runc.state(container_id).pid
        lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    except (OSError, CrishimError) as exc:
        return f"cannot read the probe container's mounts: {exc}"
    for line in lines:
        fields = line.split()
        target, options = fields[4], fields[5].split(",")
        if (target == point or target.startswith(point + "/")) and "ro" not in options:
            return f"{target} is mounted {fields[5]} in a container asking for rro"
    return ""
