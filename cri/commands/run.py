"""``crishim run [-d] [-t] [--net host] IMAGE NAME [CMD...]``: the seed's ``ctr run``, through the CRI.

It makes a pod named NAME (namespace ``default``) and one container in it, pulling
the image first if it is missing. With ``-d`` it prints the container id and
returns; otherwise it shows the container's output as it runs and exits with
its exit code.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

from cri.commands import client

HELP = "run a container in a new pod"
LOG_ROOT = Path("/var/log/crishim")
NODE = 2  # NamespaceMode.NODE


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help=HELP, description=HELP)
    client.add_flags(parser)
    parser.add_argument("-d", "--detach", action="store_true", help="print the container id and return")
    parser.add_argument("-t", "--tty", action="store_true", help="give the container a terminal")
    parser.add_argument("--net", choices=["pod", "host"], default="pod",
                        help="host: share the node's network (no CNI); pod (default): the pod's own")
    parser.add_argument("image")
    parser.add_argument("name")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cri.api.runtime.v1 import api_pb2, api_pb2_grpc

    with client.connect(args) as c:
        images = api_pb2_grpc.ImageServiceStub(c.channel)
        runtime = api_pb2_grpc.RuntimeServiceStub(c.channel)
        spec = api_pb2.ImageSpec(image=args.image)
        if not images.ImageStatus(api_pb2.ImageStatusRequest(image=spec)).HasField("image"):
            images.PullImage(api_pb2.PullImageRequest(image=spec))
        pod_config = _pod_config(api_pb2, args)
        pod_id = runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod_config)).pod_sandbox_id
        container = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name=args.name), image=spec, command=args.command,
            log_path=f"{args.name}.log", tty=args.tty)
        container_id = runtime.CreateContainer(api_pb2.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=container, sandbox_config=pod_config)).container_id
        runtime.StartContainer(api_pb2.StartContainerRequest(container_id=container_id))
        if args.detach:
            print(container_id)
            return 0
        return _follow(runtime, api_pb2, container_id)


def _pod_config(api_pb2: Any, args: argparse.Namespace) -> Any:
    uid = hashlib.sha256(args.name.encode()).hexdigest()[:32]
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=args.name, namespace="default", uid=uid),
        hostname=args.name if args.net == "pod" else "", log_directory=str(LOG_ROOT / args.name))
    if args.net == "host":
        config.linux.security_context.namespace_options.network = NODE
    return config


def _follow(runtime: Any, api_pb2: Any, container_id: str) -> int:
    """Print the container's log as it grows, until it exits; its exit code is ours."""
    from runtime.crilog import parse_line

    offset = 0
    while True:
        status = runtime.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=container_id)).status
        offset = _print_new(Path(status.log_path), offset, parse_line)
        if status.state == api_pb2.ContainerState.CONTAINER_EXITED:
            _print_new(Path(status.log_path), offset, parse_line)
            return int(status.exit_code)
        time.sleep(0.1)


def _print_new(path: Path, offset: int, parse_line: Any) -> int:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            for raw in iter(log.readline, b""):
                if not raw.endswith(b"\n"):
                    break  # conmon is still writing this line
                offset += len(raw)
                line = parse_line(raw)
                out = sys.stdout.buffer if line.stream == "stdout" else sys.stderr.buffer
                out.write(line.content + (b"" if line.partial else b"\n"))
                out.flush()
    except FileNotFoundError:
        pass
    return offset
