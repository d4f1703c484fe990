"""containerd.services.introspection.v1: the plugins crishim really has (``ctr plugins ls``).

Listed, in containerd's order and under containerd's names where crishim has
the equivalent: the content store; containerd's snapshotter plugins with
their status found by probing this host (``snapshotters.plugins``) and
crishim's own ``crishim`` snapshotter (the proxy target, see ``snapshots``);
the metadata database (``sqlite`` where containerd has ``bolt``); and the gRPC
services served on the socket, the CRI included. Filters on ``type`` and
``id`` work as in containerd. Server answers a UUID kept under the root.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.rpc import code_pb2, status_pb2

from cri.api.containerd.services.introspection.v1 import introspection_pb2, introspection_pb2_grpc
from cri.api.containerd.types import platform_pb2
from snapshotters.filters import matches_fields
from snapshotters.plugins import PLUGIN_TYPE as SNAPSHOTTER_TYPE
from snapshotters.plugins import Probe, Status
from snapshotters.registry import snapshotter_root
from store.platforms import Platform

__all__ = ["GRPC_SERVICES", "IntrospectionService", "plugins"]

CONTENT_TYPE = "io.containerd.content.v1"
METADATA_TYPE = "io.containerd.metadata.v1"
GRPC_TYPE = "io.containerd.grpc.v1"
SERVICE_TYPE = "io.containerd.service.v1"
# The in-process services behind those gRPC ones, named as containerd names its own.
LOCAL_SERVICES = ("content-service", "diff-service", "images-service", "introspection-service", "leases-service",
                  "namespaces-service", "snapshots-service")
# The gRPC services on crishim's socket, in the order containerd lists its own.
GRPC_SERVICES = ("introspection", "content", "diff", "images", "leases", "namespaces", "snapshots", "version", "cri")
_UUID_FILE = "io.containerd.grpc.v1.introspection/uuid"


class IntrospectionService(introspection_pb2_grpc.IntrospectionServicer):
    def __init__(self, root: Path, plugin_list: list[introspection_pb2.Plugin]) -> None:
        self._root = root
        self._plugins = plugin_list

    def Plugins(self, request: Any, context: Any) -> introspection_pb2.PluginsResponse:
        filters = list(request.filters)
        found = [p for p in self._plugins if matches_fields({"type": p.type, "id": p.id}, filters)]
        return introspection_pb2.PluginsResponse(plugins=found)

    def Server(self, request: Any, context: Any) -> introspection_pb2.ServerResponse:
        return introspection_pb2.ServerResponse(uuid=server_uuid(self._root / _UUID_FILE))


def plugins(root: Path, platform: Platform, probes: Mapping[str, Probe],
            own_snapshotters: Mapping[str, Probe]) -> list[introspection_pb2.Plugin]:
    """Every plugin crishim has; ``probes`` for containerd's snapshotters, ``own_snapshotters`` for crishim's."""
    host = [platform_pb2.Platform(os=platform.os, architecture=platform.architecture, variant=platform.variant)]
    content = introspection_pb2.Plugin(type=CONTENT_TYPE, id="content",
                                       exports={"root": str(root / f"{CONTENT_TYPE}.content")})
    snapshotters = [_snapshotter(root, name, probe, host) for name, probe in {**probes, **own_snapshotters}.items()]
    metadata = introspection_pb2.Plugin(
        type=METADATA_TYPE, id="sqlite", requires=[CONTENT_TYPE, SNAPSHOTTER_TYPE],
        exports={"path": str(root / f"{METADATA_TYPE}.sqlite" / "meta.db")})
    local = [introspection_pb2.Plugin(type=SERVICE_TYPE, id=name, requires=[METADATA_TYPE])
             for name in LOCAL_SERVICES]
    services = [introspection_pb2.Plugin(type=GRPC_TYPE, id=name, platforms=host if name == "cri" else [])
                for name in GRPC_SERVICES]
    return [content, *snapshotters, metadata, *local, *services]


def _snapshotter(root: Path, name: str, probe: Probe, host: list[platform_pb2.Platform]) -> introspection_pb2.Plugin:
    plugin = introspection_pb2.Plugin(type=SNAPSHOTTER_TYPE, id=name, platforms=host,
                                      exports={"root": str(snapshotter_root(root, name))})
    if probe.status is not Status.OK:
        # containerd reports every plugin init failure with code Unknown; the message says skip or not.
        plugin.init_err.CopyFrom(status_pb2.Status(code=code_pb2.UNKNOWN, message=probe.reason))
    return plugin


def server_uuid(path: Path) -> str:
    """The UUID naming this daemon's data, made on first use (containerd keeps it at the same path)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    made = str(uuid.uuid4())
    path.write_text(made)
    return made
