"""The composition root: every part of a node built once, in one place, and closed in reverse.

Constructors take their parts and do no I/O. Each ``open_*`` function here opens what it builds, recovers
what a crash left, and registers each part's ``close`` on the caller's ExitStack as soon as the part
exists, so the stack closes them last in, first out: a part's background threads stop before the stores
they use close, and a failure halfway closes exactly what was opened. Threads start only once every part
they touch exists. The layers, each usable on its own (a test builds only what it needs):

- ``open_image_parts``: the metadata DB, content store and snapshotters, and what works on them (catalog,
  unpacker, puller, importer, garbage collector);
- ``open_image_service``: the CRI ImageService over them, with its own pool of pulls;
- ``open_containerd_api``: containerd's services over them, with containerd's proxy snapshotter;
- ``open_runtime_service``: the event bus, CNI, probed runtime handlers, OCI runtime, pods, containers and
  streaming server, and the CRI RuntimeService over them;
- ``open_node``: all of it, as the daemon serves it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import structlog

from cri.config import Config
from cri.constants import CRI_NAMESPACE
from cri.containerd import PROXY_SNAPSHOTTER, ContainerdAPI
from cri.containerd.introspection import plugins
from cri.image_service import ImageService
from cri.image_service.catalog import ImageCatalog
from cri.image_service.garbage import GarbageCollector
from cri.image_service.pull_pool import PullPool
from cri.image_service.unpack import Unpacker
from cri.image_service.unpack_journal import UnpackJournal
from cri.metrics import Metrics
from cri.runtime_service import RuntimeService
from cri.runtime_service.images import RuntimeImages
from cri.scrape_metrics import DiskUsage
from cri.snapshot_usage import SnapshotUsage
from cri.streaming.backend import StreamBackend
from cri.streaming.server import StreamServer
from errdefs import InvalidArgument
from runtime import cgroups
from runtime.cdi import CDIRegistry
from runtime.cgroups import CgroupDriver
from runtime.cni import CNI
from runtime.containers import ContainerManager
from runtime.events import EventBus
from runtime.features import HandlerFeatures
from runtime.handlers import HandlerSpec, probe_handlers
from runtime.oci import OCIRuntime
from runtime.pods import PodManager
from runtime.spec import HostFacts
from snapshotters import Snapshotter
from snapshotters.plugins import probe_all
from snapshotters.registry import DRIVERS, snapshotter_root, snapshotters_under
from store.content import ContentStore
from store.importer import Importer
from store.metadata import MetadataDB
from store.platforms import Platform, default_platform
from store.pull import Puller
from store.remote import HostsConfig

__all__ = ["ImageParts", "Node", "open_containerd_api", "open_image_parts", "open_image_service", "open_node",
           "open_runtime_service"]

log = structlog.get_logger(__name__)

CONTENT_DIR = "io.containerd.content.v1.content"
METADATA_DB = "io.containerd.metadata.v1.sqlite/meta.db"
# Layers committed before they were known to be on disk (cri.image_service.unpack_journal).
UNPACK_JOURNAL_DIR = "unpack-journal"
CNI_RESULTS_DIR = "io.containerd.grpc.v1.cri/cni-results"
# Pulls downloading and unpacking at once, and pulls queued behind them; beyond both, ResourceExhausted.
# Together they stay well below the daemon's RPC threads (128), so other calls always find one.
_PULLS_RUNNING = 8
_PULLS_WAITING = 56


@dataclass(frozen=True, slots=True)
class ImageParts:
    """The image store and what works on it, shared by the CRI's services and containerd's API."""

    db: MetadataDB
    content: ContentStore
    snapshotters: Mapping[str, Snapshotter]
    snapshotter_name: str  # the CRI's: images are unpacked into it and containers run on it
    platform: Platform
    catalog: ImageCatalog
    unpacker: Unpacker
    puller: Puller
    importer: Importer
    gc: GarbageCollector
    disk_usage: DiskUsage
    snapshot_usage: SnapshotUsage  # the CRI snapshotter's, measured in the background (``start``)

    @property
    def snapshotter(self) -> Snapshotter:
        return self.snapshotters[self.snapshotter_name]


@dataclass(frozen=True, slots=True)
class Node:
    parts: ImageParts
    images: ImageService
    containerd: ContainerdAPI
    runtime: RuntimeService


def open_node(config: Config, metrics: Metrics, stack: ExitStack) -> Node:
    parts = open_image_parts(config, metrics, stack)
    return Node(parts, open_image_service(config, parts, metrics, stack), open_containerd_api(config, parts, stack),
                open_runtime_service(config, parts, metrics, stack))


def open_image_parts(config: Config, metrics: Metrics, stack: ExitStack,
                     platform: Platform | None = None) -> ImageParts:
    name = config.image.snapshotter
    snapshotters = snapshotters_under(config.root, config.writable_layers)
    if name not in snapshotters:
        raise InvalidArgument(f"config: image.snapshotter {name!r} is not one of {', '.join(sorted(snapshotters))}")
    platform = platform or default_platform()
    db = _opened(stack, MetadataDB(config.root / METADATA_DB))
    content = ContentStore(config.root / CONTENT_DIR).open()
    for snapshotter in snapshotters.values():
        _opened(stack, snapshotter)
    unpacker = Unpacker(content, snapshotters[name], name, UnpackJournal(config.root / UNPACK_JOURNAL_DIR / name),
                        on_layer_unpacked=metrics.layer_unpack_duration.observe)
    stack.callback(unpacker.close)
    disk_usage = DiskUsage(config.root, content.usage, snapshotters)
    snapshot_usage = SnapshotUsage(snapshotters[name], config.stats_collect_period)
    stack.callback(snapshot_usage.close)
    gc = GarbageCollector(db, content, snapshotters, metrics, _measure_again(disk_usage, snapshot_usage))
    stack.callback(gc.close)
    puller = Puller(
        content, db, HostsConfig(config.registry.config_path), platform=platform,
        max_concurrent_downloads=config.image.max_concurrent_downloads,
        progress_timeout=config.image.pull_progress_timeout or None,
        on_bytes=metrics.add_pull_bytes, on_layer_fetched=metrics.layer_download_duration.observe,
    )
    # What a crash left: extractions it interrupted, and layers committed before they reached the disk.
    unpacker.remove_leftovers()
    unpacker.recover()
    return ImageParts(db, content, snapshotters, name, platform, ImageCatalog(db, content, CRI_NAMESPACE, platform),
                      unpacker, puller, Importer(content, db, platform), gc, disk_usage, snapshot_usage)


def _measure_again(disk_usage: DiskUsage, snapshot_usage: SnapshotUsage) -> Callable[[], None]:
    """What a pull or a collection changed is measured again: at the next scrape, and by the next pass."""
    def changed() -> None:
        disk_usage.invalidate()
        snapshot_usage.request()
    return changed


def open_image_service(config: Config, parts: ImageParts, metrics: Metrics, stack: ExitStack) -> ImageService:
    pulls = PullPool(_PULLS_RUNNING, _PULLS_WAITING)
    stack.callback(pulls.close)
    return ImageService(db=parts.db, catalog=parts.catalog, snapshotter=parts.snapshotter,
                        snapshot_usage=parts.snapshot_usage, puller=parts.puller,
                        unpacker=parts.unpacker, importer=parts.importer, gc=parts.gc, pulls=pulls,
                        auths=config.registry.auths, metrics=metrics)


def open_containerd_api(config: Config, parts: ImageParts, stack: ExitStack) -> ContainerdAPI:
    driver = config.image.snapshotter
    proxy = _opened(stack, DRIVERS[driver](snapshotter_root(config.root, PROXY_SNAPSHOTTER)))
    probes = probe_all(config.root)
    plugin_list = plugins(config.root, parts.platform, probes, {PROXY_SNAPSHOTTER: probes[driver]})
    return ContainerdAPI(root=config.root, db=parts.db, content=parts.content, catalog=parts.catalog,
                         snapshotters=parts.snapshotters, proxy=proxy, collect_garbage=parts.gc.collect,
                         plugins=plugin_list)


def open_runtime_service(config: Config, parts: ImageParts, metrics: Metrics, stack: ExitStack) -> RuntimeService:
    events = EventBus()
    stack.callback(events.close)
    cni = CNI(config.cni_conf_dir, config.root / CNI_RESULTS_DIR, config.cni_bin_dirs, timed=metrics.cni.time)
    cgroup_driver = CgroupDriver(config.cgroup_driver)
    cgroups.require(cgroup_driver)
    handlers = probe_handlers(_handler_specs(config), config.default_runtime, config.state,
                              Path(parts.snapshotter.root), systemd_cgroup=cgroup_driver == CgroupDriver.SYSTEMD)
    oci = OCIRuntime(config.state, runtimes=handlers.runtimes(), default_runtime=config.default_runtime)
    images = RuntimeImages(parts.catalog)
    pods = PodManager(parts.db, CRI_NAMESPACE, config.state, cni, handlers, events, cgroup_driver)
    containers = ContainerManager(parts.db, CRI_NAMESPACE, oci, parts.snapshotter, parts.snapshotter_name,
                                  images.get, events, handlers, HostFacts.probe(), CDIRegistry(config.cdi.folders),
                                  cgroup_driver)
    pods.stop_containers = containers.stop_all
    pods.remove_containers = containers.remove_all
    streams = StreamServer(config.stream, StreamBackend(containers, pods, oci), config.state, metrics)
    # What happened while crishim was down: exits (the watcher's thread starts here), image volumes and pods
    # a crash left, execs a killed daemon left running.
    containers.watch_exits()
    stack.callback(containers.close)
    containers.sweep_image_volumes()
    pods.recover()
    if swept := oci.sweep_execs():
        log.info("stopped execs a killed daemon left", execs=swept)
    return RuntimeService(config, metrics, images=images, events=events, cni=cni, handlers=handlers, oci=oci,
                          pods=pods, containers=containers, streams=streams, cgroup_driver=cgroup_driver,
                          snapshot_usage=parts.snapshot_usage)


class _Part(Protocol):
    def open(self) -> object: ...
    def close(self) -> None: ...


_P = TypeVar("_P", bound=_Part)


def _opened(stack: ExitStack, part: _P) -> _P:
    part.open()
    stack.callback(part.close)
    return part


def _handler_specs(config: Config) -> list[HandlerSpec]:
    specs = []
    for name, settings in config.runtimes.items():
        allowed = settings.features
        specs.append(HandlerSpec(
            name, settings.binary, Path(settings.root) if settings.root else config.state / name,
            HandlerFeatures(allowed.recursive_read_only_mounts, allowed.user_namespaces), optional=settings.optional))
    return specs
