"""Containers: an Active snapshot for the rootfs, an OCI bundle, and conmon supervising runc.

CreateContainer prepares the snapshot (key = container id, parent = the
image's top chain ID), mounts it as the bundle's rootfs, writes config.json
and has conmon run ``runc create``; each step registers its undo so a failure
leaves nothing behind. Live state comes from runc and conmon's exit files, so
it stays true across a daemon restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from cri.api.runtime.v1 import api_pb2
from errdefs import FailedPrecondition, InvalidArgument, NotFound
from runtime import namespaces
from runtime import spec as oci_spec
from runtime.cdi import CDIRegistry
from runtime.cgroups import CgroupDriver
from runtime.events import Event, EventBus
from runtime.exits import ExitWatcher
from runtime.handlers import Handler, Handlers
from runtime.image_volumes import ImageVolumes
from runtime.lifecycle import container_lifecycle
from runtime.namespaces import PodNamespaces
from runtime.oci import OCIRuntime
from runtime.parsed import ParsedRecords
from runtime.podfiles import files_of
from runtime.records import KIND_CONTAINER, ContainerRecord, ContainerState, SandboxRecord, SandboxState, encode
from runtime.resources import cri_resources, process_user
from runtime.undo import quietly
from runtime.user import resolve_user
from runtime.userns import idmapped_layers, idmapped_mount, pod_mapping, upper_dir, wants_idmap
from snapshotters.mount import mount_all, unmount, unmount_under
from snapshotters.snapshotter import Mount, Snapshotter
from store.descriptor import process_config
from store.locks import KeyedLocks
from store.metadata import MetadataDB

__all__ = ["ContainerManager", "ImageInfo", "container_name"]

log = structlog.get_logger(__name__)

# While a container is stopped: NotFound, it is gone already; FailedPrecondition, runc knows it but no conmon
# watches it any more.
_GONE = (NotFound, FailedPrecondition)
NO_LOG = Path("/dev/null")  # where conmon writes the output of a container that has no log


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What a container needs of its image."""

    id: str
    chain_id: str
    config: dict[str, Any]  # the image config JSON
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]


def _mount_rootfs(mounts: list[Mount], rootfs: Path, sandbox: SandboxRecord) -> None:
    mapping = pod_mapping(sandbox.config.linux.security_context.namespace_options)
    if mapping is None or not sandbox.userns:
        mount_all(mounts, rootfs)
        return
    with idmapped_layers(mounts, rootfs.parent / "idmapped-layers", Path(sandbox.userns)) as mapped:
        # The writable layer stays as it is on disk, owned by the pod's root as the host knows it, so what
        # the container writes lands there with the mapped ids.
        os.chown(upper_dir(mounts), mapping.uids.to_host(0), mapping.gids.to_host(0))
        mount_all(mapped, rootfs)


def _idmap_volumes(config: api_pb2.ContainerConfig, sandbox: SandboxRecord, folder: Path) -> dict[str, str]:
    """An idmapped mount of each CRI mount that asks for one (the caller's undo unmounts them on failure)."""
    pod = pod_mapping(sandbox.config.linux.security_context.namespace_options)
    staged: dict[str, str] = {}
    for index, mount in enumerate(config.mounts):
        if not wants_idmap(mount, pod):
            continue
        # As for any bind: a missing source is made a directory, and links are followed now. A file (kubelet's
        # /etc/hosts) is mounted onto a file.
        if not os.path.lexists(mount.host_path):
            os.makedirs(mount.host_path, mode=0o755)
        source = Path(os.path.realpath(mount.host_path))
        target = folder / str(index)
        folder.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            target.mkdir()
        else:
            target.touch()
        idmapped_mount(source, target, Path(sandbox.userns))
        staged[mount.container_path] = str(target)
    return staged


def _release(staged: dict[str, str]) -> None:
    for target in map(Path, staged.values()):
        unmount(target, detach=True)
        if target.is_dir():
            target.rmdir()
        else:
            target.unlink()


def container_name(meta: api_pb2.ContainerMetadata, pod: api_pb2.PodSandboxMetadata) -> str:
    """The name a container reserves, as containerd builds it."""
    return "_".join([meta.name, pod.name, pod.namespace, pod.uid, str(meta.attempt)])


class ContainerManager:
    def __init__(self, db: MetadataDB, namespace: str, oci: OCIRuntime, snapshotter: Snapshotter,
                 snapshotter_name: str, images: Callable[[str], ImageInfo], events: EventBus,
                 handlers: Handlers, host: oci_spec.HostFacts, cdi: CDIRegistry | None = None,
                 cgroup_driver: CgroupDriver = CgroupDriver.CGROUPFS) -> None:
        self._db = db
        self._host = host
        self._cdi = cdi or CDIRegistry(())
        self._cgroup_driver = cgroup_driver
        self._handlers = handlers
        self._namespace = namespace
        self._oci = oci
        self._sn = snapshotter
        self._sn_name = snapshotter_name
        self._images = images
        self._events = events
        self._locks = KeyedLocks()
        self._stop_signalled: set[str] = set()  # ids sent their stop signal already (containerd keeps it so too)
        self._lifecycle = container_lifecycle(db, namespace, self._on_moved)
        self._exits = ExitWatcher(self._conmon_exited)
        # StartContainer's start time while runc start runs, for an exit noticed before RUNNING is written.
        self._starting: dict[str, int] = {}
        self._image_volumes = ImageVolumes(oci.state_dir, snapshotter, self._image_volume_users)
        self._parsed = ParsedRecords(ContainerRecord.from_doc)

    # Queries: they only read. The state they see is kept current by exit notifications.
    def get(self, id_or_prefix: str) -> ContainerRecord:
        if not id_or_prefix:
            raise InvalidArgument("container id must not be empty")
        with self._db.read() as tx:
            try:
                doc = tx.get_object(self._namespace, KIND_CONTAINER, id_or_prefix)
            except NotFound:
                docs = [d for d in tx.list_objects(self._namespace, KIND_CONTAINER) if d["id"].startswith(id_or_prefix)]
                if not docs:
                    raise NotFound(f"container {id_or_prefix!r}: not found") from None
                if len(docs) > 1:
                    # As containerd's truncindex: an error, so RemoveContainer does not answer OK for nothing.
                    raise InvalidArgument(f"container id prefix {id_or_prefix!r} is ambiguous: "
                                          f"{len(docs)} containers match") from None
                doc = docs[0]
        return ContainerRecord.from_doc(doc)

    def _image_volume_users(self, image_id: str, leaving: str) -> bool:
        """Whether a container other than ``leaving`` has the image mounted as a volume."""
        return any(image_id in r.image_volumes and r.id != leaving for r in self.all())

    def all(self, sandbox_id: str = "") -> list[ContainerRecord]:
        with self._db.read() as tx:
            texts = tx.list_object_texts(self._namespace, KIND_CONTAINER)
        return [r for r in self._parsed.all(texts) if not sandbox_id or r.sandbox_id == sandbox_id]

    # Lifecycle.
    def create(self, sandbox: SandboxRecord, config: api_pb2.ContainerConfig) -> ContainerRecord:
        if sandbox.state != SandboxState.READY:
            raise FailedPrecondition(f"pod sandbox {sandbox.id} is not ready")
        if not config.metadata.name:
            raise InvalidArgument("container metadata needs a name")
        image = self._images(config.image.image)
        volumes = {m.container_path: self._images(m.image.image) for m in config.mounts if m.image.image}
        if volumes and sandbox.userns:
            # The shared view is an overlay, which the kernel does not idmap; its files would be nobody's.
            raise FailedPrecondition("image volumes are not supported in pods with their own user namespace")
        handler = self._handlers.get(sandbox.runtime_handler)
        container_id = secrets.token_hex(32)
        sandbox_config = sandbox.config
        bundle = self._oci.bundle_dir(self._namespace, container_id)
        log_path = _log_path(sandbox_config, config)
        output = log_path or NO_LOG
        record = ContainerRecord(
            id=container_id, name=container_name(config.metadata, sandbox_config.metadata),
            sandbox_id=sandbox.id, config_b64=encode(config), created_at=time.time_ns(),
            image_ref=config.image.image, image_id=image.id,
            image_repo_digest=image.repo_digests[0] if image.repo_digests else image.id,
            snapshot_key=container_id, snapshotter=self._sn_name, log_path=str(log_path or ""), bundle=str(bundle),
            stop_signal=str(process_config(image.config).get("StopSignal") or "SIGTERM"),
            image_volumes=tuple(sorted({v.id for v in volumes.values()})))
        _signal(record.stop_signal)  # an image whose stop signal is unknown could never be stopped gracefully
        with self._locks.hold(container_id), contextlib.ExitStack() as undo:
            self._insert(record)  # reserves the name
            undo.callback(quietly, self._forget, container_id)
            rootfs = bundle / "rootfs"
            undo.callback(quietly, shutil.rmtree, bundle, True)
            undo.callback(quietly, unmount_under, bundle)
            rootfs.mkdir(parents=True)
            mounts = self._sn.prepare(container_id, image.chain_id)
            undo.callback(quietly, self._sn.remove, container_id)
            undo.callback(quietly, unmount, rootfs, True)
            _mount_rootfs(mounts, rootfs, sandbox)
            idmapped = _idmap_volumes(config, sandbox, bundle / "idmapped-volumes")
            for image_id in record.image_volumes:
                undo.callback(quietly, self._image_volumes.release, image_id, container_id)
            made = {**idmapped, **self._mount_image_volumes(config, volumes)}
            cdi = self._cdi.options([device.name for device in config.CDI_devices])
            spec = oci_spec.container_spec(self._spec_inputs(record, sandbox, config, image, rootfs, handler, made),
                                           cdi)
            (bundle / "config.json").write_text(json.dumps(spec))
            record = record.replace(user=process_user(spec), resources_b64=encode(cri_resources(spec)))
            if log_path is not None:
                log_path.parent.mkdir(parents=True, exist_ok=True)
            # Registered first: from here on conmon and runc init may exist, and a failure in any later
            # step must not leave them running (delete of a container never created is no error).
            undo.callback(quietly, self._oci.delete, container_id, True)
            pid = self._oci.create(container_id, bundle, output, tty=config.tty, stdin=config.stdin,
                                   stdin_once=config.stdin_once, runtime=handler.name)
            # runc has bound them into the container's own mount namespace: the host needs them no more.
            _release(idmapped)
            created = self._lifecycle.transition(container_id, {ContainerState.CREATED}, ContainerState.CREATED,
                                                 pid=pid, user=record.user, resources_b64=record.resources_b64)
            if created is None:
                raise NotFound(f"container {container_id} was removed while it was being created")
            record = created
            undo.pop_all()
        self._exits.watch(container_id, self._oci.conmon_pidfd(container_id))
        self._publish(record, "created")
        log.info("container.created", container=container_id, name=record.name, image=image.id)
        return record

    def start(self, container_id: str) -> None:
        record = self.get(container_id)
        with self._locks.hold(record.id):
            record = self._load(record.id)  # as it is now, not before the lock
            if record.state != ContainerState.CREATED:
                raise FailedPrecondition(f"container {record.id} is {record.state}, not created")
            # Taken before runc start: a process that exits at once must not have finished before it started.
            started_at = time.time_ns()
            self._starting[record.id] = started_at
            try:
                self._oci.start(record.id)
                # Not RUNNING if its exit was noticed already: EXITED is final.
                self._lifecycle.transition(record.id, {ContainerState.CREATED}, ContainerState.RUNNING,
                                           started_at=started_at)
            finally:
                del self._starting[record.id]

    def stop(self, container_id: str, timeout: float) -> None:
        """The image's stop signal, up to ``timeout`` seconds of grace, then SIGKILL.

        The container's lock is held to send a signal, never while waiting for the exit: a second stop with
        a shorter timeout kills the container when its own grace ends, as containerd's does, and the stop
        signal goes out once however many stops ask for grace.
        """
        record = self.get(container_id)
        if timeout > 0:
            with self._locks.hold(record.id):
                try:
                    record = self._load(record.id)
                except NotFound:
                    return  # removed meanwhile
                if record.state == ContainerState.EXITED:
                    return
                if record.id not in self._stop_signalled:
                    with contextlib.suppress(*_GONE):
                        self._oci.kill(record.id, _signal(record.stop_signal))
                    self._stop_signalled.add(record.id)
            with contextlib.suppress(*_GONE):
                if self._oci.wait_exit(record.id, timeout) is not None:
                    self._conmon_exited(record.id)  # the exit it waited for, without waiting for the watcher
                    return
        with self._locks.hold(record.id):
            try:
                record = self._load(record.id)
            except NotFound:
                return  # removed meanwhile
            if record.state != ContainerState.EXITED:  # also UNKNOWN: its conmon is gone, runc may still run it
                self._kill(record)
                self._conmon_exited(record.id)

    def remove(self, container_id: str) -> None:
        try:
            record = self.get(container_id)
        except NotFound:
            return  # CRI: removing a removed container is not an error
        with self._locks.hold(record.id):
            try:
                record = self._load(record.id)  # as it is now, not before the lock
            except NotFound:
                return  # removed meanwhile
            if record.state != ContainerState.EXITED:
                self._kill(record)
            self._oci.delete(record.id, force=True)
            # The rootfs, and what a create cut short may have left mounted (idmapped layers and volumes).
            unmount_under(Path(record.bundle))
            with contextlib.suppress(NotFound):
                self._sn.remove(record.snapshot_key)
            shutil.rmtree(record.bundle, ignore_errors=True)
            self._forget(record.id)
            for image_id in record.image_volumes:
                self._image_volumes.release(image_id, record.id)
            self._stop_signalled.discard(record.id)
        self._publish(record, "deleted")
        log.info("container.removed", container=record.id)

    def stop_all(self, sandbox_id: str) -> None:
        for record in self.all(sandbox_id):
            if record.state in (ContainerState.RUNNING, ContainerState.CREATED):
                self.stop(record.id, 0)

    def remove_all(self, sandbox_id: str) -> None:
        for record in self.all(sandbox_id):
            self.remove(record.id)

    def exec_sync(self, container_id: str, argv: list[str], timeout: float) -> tuple[int, bytes, bytes]:
        record = self.get(container_id)
        if record.state != ContainerState.RUNNING:
            raise FailedPrecondition(f"container {record.id} is {record.state}, not running")
        result = self._oci.exec_sync(record.id, argv, timeout or None)
        return result.exit_code, result.stdout, result.stderr

    def update_resources(self, container_id: str, resources: api_pb2.LinuxContainerResources) -> None:
        record = self.get(container_id)
        linux_resources = oci_spec.linux_resources(resources, self._host).to_json()
        with self._locks.hold(record.id):
            record = self._load(record.id)
            if record.state in (ContainerState.RUNNING, ContainerState.CREATED):
                self._oci.update(record.id, linux_resources)
            # As containerd, the stored spec follows too, so an exited container answers OK; the status
            # reports what the spec now holds.
            spec = _update_bundle_resources(Path(record.bundle) / "config.json", linux_resources)
            if spec is not None:
                self._lifecycle.update(record.id, resources_b64=encode(cri_resources(spec)))

    def reopen_log(self, container_id: str) -> None:
        record = self.get(container_id)
        if record.state != ContainerState.RUNNING:
            raise FailedPrecondition(f"container {record.id} is not running")
        if not record.log_path:
            return  # no log to reopen; and conmon would rename a fresh file over /dev/null
        self._oci.reopen_log(record.id)

    # Internals.
    def _kill(self, record: ContainerRecord) -> None:
        """SIGKILL every process of the container and wait for conmon to see it exit."""
        with contextlib.suppress(*_GONE):
            self._oci.kill(record.id, signal.SIGKILL, all=True)
        with contextlib.suppress(*_GONE):
            self._oci.wait_exit(record.id, 10)

    def watch_exits(self) -> None:
        """Start noticing exits (until ``close``), beginning with those that happened while crishim was down."""
        self._exits.start()
        for record in self.all():
            if record.state != ContainerState.EXITED:
                self._exits.watch(record.id, self._oci.conmon_pidfd(record.id))

    def sweep_image_volumes(self) -> None:
        """At start: release the image volumes a crash left with no container using them."""
        if swept := self._image_volumes.sweep():
            log.info("image_volume.swept", images=swept)

    def close(self) -> None:
        self._exits.close()

    def _conmon_exited(self, container_id: str) -> None:
        """The exit notification: conmon is gone (or stop saw the exit); record what it left, once."""
        try:
            current = self._load(container_id)
        except NotFound:
            return  # removed meanwhile
        status = self._oci.exit_status(container_id)
        if status is not None:
            started_at = current.started_at or self._starting.get(container_id) or current.created_at
            # The exit time is the exit file's mtime, which the kernel stamps from a clock up to a tick
            # behind time.time_ns(): a process that exits as it starts must still not finish before it began.
            finished_at = max(status.finished_at_ns, started_at)
            self._lifecycle.transition(
                container_id, {ContainerState.CREATED, ContainerState.RUNNING, ContainerState.UNKNOWN},
                ContainerState.EXITED, exit_code=status.exit_code, finished_at=finished_at,
                reason=_exit_reason(status.exit_code, Path(current.bundle)), started_at=started_at)
        elif self._oci.conmon_pid(container_id) is None:
            self._lifecycle.transition(container_id, {ContainerState.RUNNING}, ContainerState.UNKNOWN,
                                       reason="Unknown",
                                       message="the container's conmon is gone and left no exit code")

    def _on_moved(self, old: ContainerRecord, new: ContainerRecord) -> None:
        if new.state == ContainerState.RUNNING or (
                # It exited before StartContainer could write RUNNING: it did start.
                old.state == ContainerState.CREATED and new.state == ContainerState.EXITED
                and new.id in self._starting):
            self._publish(new, "started")
        if new.state == ContainerState.EXITED:
            self._publish(new, "stopped")

    def _spec_inputs(self, record: ContainerRecord, sandbox: SandboxRecord, config: api_pb2.ContainerConfig,
                     image: ImageInfo, rootfs: Path, handler: Handler,
                     idmapped: dict[str, str]) -> oci_spec.SpecInputs:
        sandbox_config = sandbox.config
        return oci_spec.SpecInputs(
            container_id=record.id, sandbox_id=sandbox.id, config=config, sandbox_config=sandbox_config,
            image_config=process_config(image.config), rootfs=str(rootfs),
            user=resolve_user(rootfs, str(process_config(image.config).get("User") or ""),
                              config.linux.security_context),
            namespaces=PodNamespaces(
                net=Path(sandbox.netns) if sandbox.netns else None, ipc=Path(sandbox.ipcns) if sandbox.ipcns else None,
                uts=Path(sandbox.utsns) if sandbox.utsns else None, pid_holder=self._live_pid_holder(sandbox),
                user=Path(sandbox.userns) if sandbox.userns else None),
            files=files_of(Path(sandbox.files_dir)),
            image_name=image.repo_tags[0] if image.repo_tags else config.image.image,
            namespace=self._namespace,
            cgroup_driver=self._cgroup_driver,
            host=self._host,
            handler=handler.features,
            bind_sources=idmapped,
            # As containerd's restrict_oom_score_adj: a runtime without CAP_SYS_RESOURCE cannot lower it.
            restrict_oom_score_adj=True)

    def _mount_image_volumes(self, config: api_pb2.ContainerConfig, volumes: dict[str, ImageInfo]) -> dict[str, str]:
        return {m.container_path: self._image_volumes.acquire(volumes[m.container_path].id,
                                                             volumes[m.container_path].chain_id, m.image_sub_path)
                for m in config.mounts if m.image.image}

    def _live_pid_holder(self, sandbox: SandboxRecord) -> int | None:
        """The pod's PID-namespace holder, checked alive: a reused pid must never lend its namespace."""
        if not sandbox.pid_holder:
            return None
        if namespaces.load(self._oci.state_dir, sandbox.id).pid_holder != sandbox.pid_holder:
            raise FailedPrecondition(f"pod sandbox {sandbox.id} lost its shared PID namespace; recreate the pod")
        return sandbox.pid_holder

    def _load(self, container_id: str) -> ContainerRecord:
        with self._db.read() as tx:
            return ContainerRecord.from_doc(tx.get_object(self._namespace, KIND_CONTAINER, container_id))

    def _insert(self, record: ContainerRecord) -> None:
        with self._db.transaction() as tx:
            tx.put_object(self._namespace, KIND_CONTAINER, record.id, record.name, record.to_doc())

    def _forget(self, container_id: str) -> None:
        with self._db.transaction() as tx:
            tx.delete_object(self._namespace, KIND_CONTAINER, container_id)

    def _publish(self, record: ContainerRecord, kind: str) -> None:
        self._events.publish(Event(record.id, kind, time.time_ns(), record.sandbox_id))



def _update_bundle_resources(spec_path: Path, resources: dict[str, Any]) -> dict[str, Any] | None:
    """The bundle's spec with the new resources written into it; None when the bundle is gone."""
    try:
        spec: dict[str, Any] = json.loads(spec_path.read_text())
    except FileNotFoundError:
        return None
    current = spec.setdefault("linux", {}).setdefault("resources", {})
    for key, value in resources.items():
        # runc update leaves what the request does not name as it was; so does the spec, as containerd's.
        if isinstance(value, dict):
            current[key] = {**current.get(key, {}), **value}
        elif key != "devices":
            current[key] = value
    spec_path.write_text(json.dumps(spec))
    return spec


def _log_path(sandbox_config: api_pb2.PodSandboxConfig, config: api_pb2.ContainerConfig) -> Path | None:
    """The log file inside the pod's log directory; a path that leaves it is refused (conmon writes as root).

    None when the container or its pod names no log: as containerd, the output is dropped and the status
    reports an empty log path.
    """
    if not config.log_path or not sandbox_config.log_directory:
        return None
    directory = Path(sandbox_config.log_directory)
    if not directory.is_absolute():
        raise InvalidArgument(f"pod log directory {str(directory)!r} must be an absolute path")
    relative = Path(config.log_path)
    if relative.is_absolute() or ".." in relative.parts:
        raise InvalidArgument(f"container log path {config.log_path!r} must stay inside the pod's log directory")
    path = directory / relative
    _check_path_length(path, "container log path")
    return path


# The kernel's limits (NAME_MAX, PATH_MAX): a longer name is the request's fault, not a failure inside.
_NAME_MAX = 255
_PATH_MAX = 4095


def _check_path_length(path: Path, what: str) -> None:
    if len(os.fsencode(path)) > _PATH_MAX:
        raise InvalidArgument(f"{what} is longer than the {_PATH_MAX} bytes a path may have")
    if any(len(os.fsencode(part)) > _NAME_MAX for part in path.parts):
        raise InvalidArgument(f"{what} has a name longer than the {_NAME_MAX} bytes a file name may have")


def _signal(name: str) -> int:
    """A signal as images name it: ``SIGTERM``, ``TERM``, ``15``, or ``SIGRTMIN+3`` (systemd images)."""
    text = name.upper().removeprefix("SIG")
    if text.isdigit():
        return int(text)
    for base, sign in (("RTMIN+", 1), ("RTMAX-", -1)):
        if text.startswith(base) and text[len(base):].isdigit():
            value = int(signal.SIGRTMIN if sign > 0 else signal.SIGRTMAX) + sign * int(text[len(base):])
            if signal.SIGRTMIN <= value <= signal.SIGRTMAX:
                return value
    try:
        return int(signal.Signals[f"SIG{text}"])
    except KeyError:
        raise InvalidArgument(f"unknown stop signal {name!r}") from None


def _exit_reason(exit_code: int, bundle: Path) -> str:
    if (bundle / "oom").exists():
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"

