"""``crishim run [-d] [-t] [--rm] [--net host] IMAGE NAME [CMD...]``: the seed's ``ctr run``, through the CRI;
``crishim stop NAME`` and ``crishim rm NAME`` for what it made.

``run`` makes a pod named NAME (namespace ``default``) and one container in it, pulling the image first if it
is missing. With ``-d`` it prints the container id and returns. With ``-t`` the container gets a terminal and
stdin, and the user's terminal is attached to it (raw mode, its size kept in step) until the container ends.
Otherwise it shows the container's output as it runs. Either way it exits with the container's exit code,
and ``--rm`` removes the pod afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

from cri.commands import client
from cri.commands.helptext import add_command
from errdefs import NotFound

HELP = "run a container in a new pod"
STOP_HELP = "stop the pod that run made for NAME"
RM_HELP = "remove the pod that run made for NAME (stopping it first)"
NAMESPACE = "default"
_EXIT_WAIT_SECONDS = 10.0
LOG_ROOT = Path("/var/log/crishim")
NODE = 2  # NamespaceMode.NODE


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(subparsers, "run", HELP, [
        "crishim run --rm localhost/crishim-demo:1 hello echo hello   # prints hello, exits with its code",
        "crishim run -t --rm localhost/crishim-demo:1 shell sh        # a shell in a new container",
        "crishim run -d localhost/crishim-demo:1 web httpd -f -p 80   # in the background; prints its id"])
    client.add_flags(parser)
    parser.add_argument("-d", "--detach", action="store_true", help="print the container id and return")
    parser.add_argument("-t", "--tty", action="store_true",
                        help="give the container a terminal and stdin, and attach this terminal to it")
    parser.add_argument("--rm", action="store_true", help="remove the pod once the container has exited")
    parser.add_argument("--net", choices=["pod", "host"], default="pod",
                        help="host: share the node's network (no CNI); pod (default): the pod's own")
    parser.add_argument("image")
    parser.add_argument("name")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    parser.set_defaults(run=run)
    for name, text, action in (("stop", STOP_HELP, stop), ("rm", RM_HELP, remove)):
        sub = add_command(subparsers, name, text, [f"crishim {name} web"])
        client.add_flags(sub)
        sub.add_argument("name")
        sub.set_defaults(run=action)


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
        # A terminal session is interactive: stdin open for the one attached client (as `ctr run -t`).
        container = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name=args.name), image=spec, command=args.command,
            log_path=f"{args.name}.log", tty=args.tty, stdin=args.tty, stdin_once=args.tty)
        container_id = runtime.CreateContainer(api_pb2.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=container, sandbox_config=pod_config)).container_id
        runtime.StartContainer(api_pb2.StartContainerRequest(container_id=container_id))
        if args.detach:
            print(container_id)
            return 0
        try:
            if args.tty:
                return _attach(runtime, api_pb2, container_id)
            return _follow(runtime, api_pb2, container_id)
        finally:
            if args.rm:
                _remove_pod(runtime, api_pb2, pod_id)


def stop(args: argparse.Namespace) -> int:
    from cri.api.runtime.v1 import api_pb2, api_pb2_grpc

    with client.connect(args) as c:
        runtime = api_pb2_grpc.RuntimeServiceStub(c.channel)
        for pod_id in _pods_named(runtime, api_pb2, args.name):
            runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
            print(pod_id)
    return 0


def remove(args: argparse.Namespace) -> int:
    from cri.api.runtime.v1 import api_pb2, api_pb2_grpc

    with client.connect(args) as c:
        runtime = api_pb2_grpc.RuntimeServiceStub(c.channel)
        for pod_id in _pods_named(runtime, api_pb2, args.name):
            _remove_pod(runtime, api_pb2, pod_id)
            print(pod_id)
    return 0


def _pods_named(runtime: Any, api_pb2: Any, name: str) -> list[str]:
    """The pods run made for NAME; none is an error, as for ctr's commands."""
    uid = _uid(name)
    found = [pod.id for pod in runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items
             if (pod.metadata.name, pod.metadata.namespace, pod.metadata.uid) == (name, NAMESPACE, uid)]
    if not found:
        raise NotFound(f"no pod made by run for {name!r}")
    return found


def _remove_pod(runtime: Any, api_pb2: Any, pod_id: str) -> None:
    runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def _attach(runtime: Any, api_pb2: Any, container_id: str) -> int:
    """The terminal attached until the container's output ends; the container's exit code."""
    from cri.commands.attach_client import attach

    url = runtime.Attach(api_pb2.AttachRequest(container_id=container_id, stdin=True, stdout=True,
                                               tty=True)).url
    attach(url)
    deadline = time.monotonic() + _EXIT_WAIT_SECONDS
    while True:
        status = runtime.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=container_id)).status
        if status.state == api_pb2.ContainerState.CONTAINER_EXITED:
            return int(status.exit_code)
        if time.monotonic() > deadline:
            # The session ended with the container still running (the connection was lost): leave it be.
            print(f"detached from {container_id}; it is still running", file=sys.stderr)
            return 0
        time.sleep(0.1)


def _uid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def _pod_config(api_pb2: Any, args: argparse.Namespace) -> Any:
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=args.name, namespace=NAMESPACE, uid=_uid(args.name)),
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
