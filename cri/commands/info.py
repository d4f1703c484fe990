"""``crishim info``: what the daemon runs with, as JSON, as ``crictl info`` shows containerd's: its version,
the runtime and network conditions, the runtime handlers, its configuration, the CNI status and its plugins."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cri.commands import client
from cri.commands.helptext import add_command

HELP = "show the daemon's version, conditions, configuration, CNI status and plugins as JSON"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(subparsers, "info", HELP, [
        "crishim info",
        "crishim info | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"lastCNILoadStatus\"])'"])
    client.add_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with client.connect(args) as c:
        print(json.dumps(gather(c), indent=2))
    return 0


def gather(c: client.Client) -> dict[str, Any]:
    from google.protobuf import empty_pb2

    from cri.api.containerd.services.introspection.v1 import introspection_pb2, introspection_pb2_grpc
    from cri.api.containerd.services.version.v1 import version_pb2_grpc
    from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
    from cri.commands.plugin import status as plugin_status

    version = version_pb2_grpc.VersionStub(c.channel).Version(empty_pb2.Empty(), metadata=c.metadata)
    answer = api_pb2_grpc.RuntimeServiceStub(c.channel).Status(api_pb2.StatusRequest(verbose=True))
    plugins = introspection_pb2_grpc.IntrospectionStub(c.channel).Plugins(
        introspection_pb2.PluginsRequest(), metadata=c.metadata).plugins
    info: dict[str, Any] = {"version": {"version": version.version, "revision": version.revision}}
    info.update(_status(answer))
    info.update({key: json.loads(value) for key, value in sorted(answer.info.items())})
    info["plugins"] = [{"type": p.type, "id": p.id, "status": plugin_status(p),
                        **({"reason": p.init_err.message} if p.HasField("init_err") else {})} for p in plugins]
    return info


def _status(answer: Any) -> dict[str, Any]:
    """Conditions as crictl info shows them, runtime handlers and features; ``info`` goes separately."""
    from google.protobuf.json_format import MessageToDict

    conditions = [{"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
                  for c in answer.status.conditions]
    return {"status": {"conditions": conditions},
            "runtimeHandlers": [MessageToDict(handler) for handler in answer.runtime_handlers],
            "features": MessageToDict(answer.features)}
