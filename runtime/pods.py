"""Pod sandboxes without a pause image: pinned namespaces, CNI networking and the files containers share.

Running a pod reserves its name, pins its network/IPC/UTS namespaces (a
catatonit holder for a shared PID namespace), writes its hostname, hosts,
resolv.conf and shm, then attaches the network. Each step registers its undo,
so a failure leaves nothing behind. Stopping detaches the network and stops
every container; removing deletes what is left. Both are idempotent.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from cri.api.runtime.v1 import api_pb2
from errdefs import FailedPrecondition, InvalidArgument, NotFound
from runtime import lsm, namespaces
from runtime.cgroups import CgroupDriver, validate_parent
from runtime.cni import CNI, PodRef, PortMapping
from runtime.events import Event, EventBus
from runtime.handlers import Handlers
from runtime.lifecycle import sandbox_lifecycle
from runtime.parsed import ParsedRecords
from runtime.podfiles import remove_pod_files, write_pod_files
from runtime.records import KIND_SANDBOX, SandboxRecord, SandboxState, encode
from runtime.undo import quietly
from runtime.userns import PodMapping, pod_mapping
from store.locks import KeyedLocks
from store.metadata import MetadataDB

__all__ = ["PodManager", "sandbox_name"]

log = structlog.get_logger(__name__)

NODE = api_pb2.NamespaceMode.NODE
POD = api_pb2.NamespaceMode.POD


def sandbox_name(meta: api_pb2.PodSandboxMetadata) -> str:
    """The name a pod reserves, as containerd builds it; a second pod with it is ALREADY_EXISTS."""
    return "_".join([meta.name, meta.namespace, meta.uid, str(meta.attempt)])


@dataclass(frozen=True, slots=True)
class _Modes:
    host_network: bool
    host_ipc: bool
    pid: int


class PodManager:
    def __init__(self, db: MetadataDB, namespace: str, state: Path, cni: CNI, handlers: Handlers, events: EventBus,
                 cgroup_driver: CgroupDriver = CgroupDriver.CGROUPFS) -> None:
        self._db = db
        self._events = events
        self._cgroup_driver = cgroup_driver
        self._handlers = handlers
        self._namespace = namespace
        self._state = state
        self._cni = cni
        self._locks = KeyedLocks()
        self._lifecycle = sandbox_lifecycle(db, namespace, self._on_moved)
        self._parsed = ParsedRecords(SandboxRecord.from_doc)  # kubelet lists every pod each second
        # Set by the container side: stop and remove a pod's containers before the pod goes.
        self.stop_containers: Callable[[str], None] = lambda sandbox_id: None
        self.remove_containers: Callable[[str], None] = lambda sandbox_id: None

    # Queries.
    def get(self, id_or_prefix: str) -> SandboxRecord:
        if not id_or_prefix:
            raise InvalidArgument("pod sandbox id must not be empty")
        with self._db.read() as tx:
            try:
                return SandboxRecord.from_doc(tx.get_object(self._namespace, KIND_SANDBOX, id_or_prefix))
            except NotFound:
                docs = tx.list_objects(self._namespace, KIND_SANDBOX)
        matches = [d for d in docs if d["id"].startswith(id_or_prefix)]
        if not matches:
            raise NotFound(f"pod sandbox {id_or_prefix!r}: not found")
        if len(matches) > 1:
            raise InvalidArgument(f"pod sandbox id prefix {id_or_prefix!r} is ambiguous: {len(matches)} pods match")
        return SandboxRecord.from_doc(matches[0])

    def all(self) -> list[SandboxRecord]:
        with self._db.read() as tx:
            texts = tx.list_object_texts(self._namespace, KIND_SANDBOX)
        return self._parsed.all(texts)

    # Lifecycle.
    def run(self, config: api_pb2.PodSandboxConfig, runtime_handler: str) -> SandboxRecord:
        meta = config.metadata
        if not (meta.name and meta.namespace and meta.uid):
            raise InvalidArgument("pod sandbox metadata needs a name, a namespace and a uid")
        handler = self._handlers.get(runtime_handler)
        validate_parent(self._cgroup_driver, config.linux.cgroup_parent)
        mapping = _user_namespace(config, handler.features.user_namespaces)
        lsm.check_selinux(config.linux.security_context.selinux_options, "the pod")
        lsm.check_pod_apparmor(config.linux.security_context)
        sandbox_id = secrets.token_hex(32)
        modes = _modes(config)
        # As containerd: a pod that names no hostname gets the node's, in its UTS namespace and /etc/hostname.
        hostname = config.hostname or socket.gethostname()
        record = SandboxRecord(
            id=sandbox_id, name=sandbox_name(meta), config_b64=encode(config), created_at=time.time_ns(),
            runtime_handler=runtime_handler, cgroup_parent=config.linux.cgroup_parent,
            files_dir=str(self._state / "sandboxes" / sandbox_id), state=SandboxState.NOTREADY)
        with self.locked(sandbox_id), contextlib.ExitStack() as undo:
            # Saved not ready first: it reserves the name, and a crash part-way leaves a pod kubelet will stop
            # and remove (the paths saved before each step tell those what to undo).
            self._insert(record)
            undo.callback(quietly, self._forget, sandbox_id)
            undo.callback(quietly, namespaces.unpin, self._state, sandbox_id)
            pinned = namespaces.pin(self._state, sandbox_id, _pinned_kinds(modes) | ({"user"} if mapping else set()),
                                    hostname=None if modes.host_network else hostname,
                                    id_maps=(mapping.uids.line(), mapping.gids.line()) if mapping else None)
            undo.callback(quietly, remove_pod_files, Path(record.files_dir))
            write_pod_files(Path(record.files_dir), config, hostname, modes.host_ipc)
            record = self._moved(sandbox_id, SandboxState.NOTREADY, netns=_text(pinned.net),
                                 ipcns=_text(pinned.ipc), utsns=_text(pinned.uts), userns=_text(pinned.user),
                                 pid_holder=pinned.pid_holder or 0)
            if not modes.host_network:
                undo.callback(quietly, self._detach, record)
                result = self._cni.add(Path(record.netns), sandbox_id, _pod_ref(meta), port_mappings=_ports(config))
                record = self._moved(sandbox_id, SandboxState.NOTREADY,
                                     ips=[str(ip.address.ip) for ip in result.pod_ips()])
            record = self._moved(sandbox_id, SandboxState.READY)
            undo.pop_all()
        log.info("pod.ran", sandbox=sandbox_id, name=record.name, ips=list(record.ips))
        return record

    def stop(self, sandbox_id: str) -> None:
        found = self.get(sandbox_id)
        with self.locked(found.id):
            try:
                record = self._load(found.id)  # as it is now: a remove may have run while we waited
            except NotFound:
                return
            self.stop_containers(record.id)
            if not _modes(record.config).host_network:
                self._detach(record)  # from CNI's cache, so also after the netns is gone
            namespaces.stop_pid_holder(self._state, record.id)
            # The IPs went back to IPAM with the CNI DEL: containerd reports none for a stopped pod either.
            # Never brings back a pod removed meanwhile: the transition writes only a record that exists.
            self._lifecycle.transition(record.id, {SandboxState.READY, SandboxState.NOTREADY},
                                       SandboxState.NOTREADY, pid_holder=0, ips=())
        log.info("pod.stopped", sandbox=record.id)

    def remove(self, sandbox_id: str) -> None:
        try:
            record = self.get(sandbox_id)
        except NotFound:
            return  # CRI: "If there are no resources to remove, this call must not fail"
        self.stop(record.id)
        with self.locked(record.id):
            try:
                record = self._load(record.id)
            except NotFound:
                return  # removed by another call meanwhile
            self.remove_containers(record.id)
            namespaces.unpin(self._state, record.id)
            remove_pod_files(Path(record.files_dir))
            self._forget(record.id)
            self._publish(record, "deleted")
        log.info("pod.removed", sandbox=record.id)

    def recover(self) -> None:
        """After a daemon restart or a reboot: a ready pod whose namespaces are gone is not ready any more."""
        for record in self.all():
            if record.state != SandboxState.READY:
                continue
            pinned = namespaces.load(self._state, record.id)
            lost = (record.netns and pinned.net is None) or (record.pid_holder and pinned.pid_holder is None)
            if lost:
                log.warning("pod.lost", sandbox=record.id, reason="its namespaces are gone (reboot?)")
                self._lifecycle.transition(record.id, {SandboxState.READY}, SandboxState.NOTREADY, pid_holder=0)

    def _detach(self, record: SandboxRecord) -> None:
        netns = Path(record.netns) if record.netns else None
        self._cni.delete(netns, record.id, _pod_ref(record.config.metadata), port_mappings=_ports(record.config))

    def _insert(self, record: SandboxRecord) -> None:
        with self._db.transaction() as tx:
            tx.put_object(self._namespace, KIND_SANDBOX, record.id, record.name, record.to_doc())

    def _load(self, sandbox_id: str) -> SandboxRecord:
        with self._db.read() as tx:
            return SandboxRecord.from_doc(tx.get_object(self._namespace, KIND_SANDBOX, sandbox_id))

    def _moved(self, sandbox_id: str, to: str, **fields: object) -> SandboxRecord:
        """A step of RunPodSandbox: the pod must still be there and not ready."""
        record = self._lifecycle.transition(sandbox_id, {SandboxState.NOTREADY}, to, **fields)
        if record is None:
            raise NotFound(f"pod sandbox {sandbox_id} was removed while it was being set up")
        return record

    def _forget(self, sandbox_id: str) -> None:
        with self._db.transaction() as tx:
            tx.delete_object(self._namespace, KIND_SANDBOX, sandbox_id)

    def _on_moved(self, old: SandboxRecord, new: SandboxRecord) -> None:
        if new.state == SandboxState.READY:
            # containerd's pair: its sandbox is created (put in its store) ready.
            self._publish(new, "created")
            self._publish(new, "started")
        elif old.state == SandboxState.READY:
            self._publish(new, "stopped")

    def _publish(self, record: SandboxRecord, kind: str) -> None:
        self._events.publish(Event(record.id, kind, time.time_ns(), record.id, sandbox=record))

    @contextlib.contextmanager
    def locked(self, sandbox_id: str) -> Iterator[None]:
        """Held while a pod changes, and while a container is created in it (so the pod cannot go meanwhile)."""
        with self._locks.hold(sandbox_id):
            yield


def _modes(config: api_pb2.PodSandboxConfig) -> _Modes:
    options = config.linux.security_context.namespace_options
    return _Modes(options.network == NODE, options.ipc == NODE, options.pid)


def _user_namespace(config: api_pb2.PodSandboxConfig, supported: bool) -> PodMapping | None:
    options = config.linux.security_context.namespace_options
    mapping = pod_mapping(options)
    if mapping is None:
        return None
    # A pod asking for a user namespace its handler cannot give must not run without one.
    if not supported:
        raise FailedPrecondition("user namespaces are not supported: the runtime handler reports user_namespaces "
                                 "false")
    if NODE in (options.network, options.ipc, options.pid):
        # Status reports user_namespaces_host_network false; kubelet never mixes the two either.
        raise FailedPrecondition("a pod in its own user namespace cannot share the node's network, IPC or PID "
                                 "namespace")
    return mapping


def _pinned_kinds(modes: _Modes) -> set[str]:
    kinds = set()
    if not modes.host_network:
        kinds |= {"net", "uts"}  # a pod on the node's network keeps the node's hostname, as in containerd
    if not modes.host_ipc:
        kinds.add("ipc")
    if modes.pid == POD:
        kinds.add("pid")
    return kinds


def _pod_ref(meta: api_pb2.PodSandboxMetadata) -> PodRef:
    return PodRef(meta.name, meta.namespace, meta.uid)


def _ports(config: api_pb2.PodSandboxConfig) -> list[PortMapping]:
    protocols = {api_pb2.Protocol.TCP: "tcp", api_pb2.Protocol.UDP: "udp", api_pb2.Protocol.SCTP: "sctp"}
    return [PortMapping(p.host_port, p.container_port, protocols.get(p.protocol, "tcp"), p.host_ip)
            for p in config.port_mappings if p.host_port > 0]


def _text(path: Path | None) -> str:
    return "" if path is None else str(path)
