"""The daemon: one gRPC server on a unix socket, serving the CRI (and containerd's API) until told to stop.

``serve`` starts things in dependency order (directories, the node's parts as
``cri.node`` builds them, metrics, streaming server, socket) and stops them in
reverse on SIGTERM or SIGINT: the gRPC server first, with a grace period for
calls in flight, then the socket file, the streaming server, the metrics
endpoint and the node's parts.

Concurrency: a synchronous ``grpc.server`` on a thread pool. The blocking work
behind the RPCs (zlib, hashing, file I/O) releases the GIL, so threads overlap.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc

import cri
from cri import logs
from cri.api.runtime.v1 import api_pb2_grpc
from cri.config import Config
from cri.constants import MAX_MESSAGE_BYTES
from cri.containerd.version import revision
from cri.image_service import import_image
from cri.instrument import Interceptor
from cri.metrics import Metrics, start_server
from cri.node import Node, open_node
from cri.scrape_metrics import BuildInfo, ObjectStates, ProcessThreads
from cri.sd_notify import Notifier
from errdefs import CrishimError, FailedPrecondition, Unavailable
from runtime.events import EventBus

__all__ = ["MAX_MESSAGE_BYTES", "STOP_GRACE_SECONDS", "serve"]

# Calls in flight get this long to finish once a stop is asked for.
STOP_GRACE_SECONDS = 10.0
# Pulls hold a worker for their whole duration; leave room for kubelet's polling beside them.
# Pulls, stops with a grace period and event streams hold a thread each for long; kubelet's frequent
# List and Status calls must still find one free.
_WORKERS = 128
_ROOT_MODE = 0o700
# Others may traverse state (bundles live there) but not list it.
_STATE_MODE = 0o711
_SOCKET_MODE = 0o660

log = logs.get_logger()


def serve(config: Config, stop: threading.Event | None = None) -> int:
    """Run the daemon until ``stop`` is set or SIGTERM/SIGINT arrives; the exit status.

    Signal handlers are installed only when called from the main thread, so
    tests can run a daemon in a thread and stop it through ``stop``.
    """
    logs.configure(config.log_level)
    stop = stop if stop is not None else threading.Event()
    try:
        with _stop_on_signals(stop):
            _run(config, stop)
    except CrishimError as exc:
        log.error("daemon failed", error=str(exc))
        return 1
    except Exception:
        # Through the configured logger, so the traceback lands as one JSON line.
        log.exception("daemon failed")
        return 1
    log.info("daemon stopped")
    return 0


def _run(config: Config, stop: threading.Event) -> None:
    systemd = Notifier.from_environment()
    _prepare_dirs(config)
    # Before the store is opened: a second daemon must not touch a live one's data.
    _claim_socket_path(config.socket)
    metrics = Metrics()
    with ExitStack() as stack:
        # Every part registers its close as it is built; the stack closes them last in, first out.
        node = open_node(config, metrics, stack)
        _register_collectors(metrics, node)
        # A configured metrics port is bound before the streaming server asks the kernel for a free one,
        # which could otherwise be that very port.
        metrics_address = _start_metrics(stack, config, metrics)
        streams = node.runtime.streams
        streams.start()
        stack.callback(streams.stop)
        server = _grpc_server(metrics, node)
        _bind(server, config.socket)
        stack.callback(_remove_socket, config.socket)
        server.start()
        stack.callback(_stop_server, server, node.runtime.events)
        node.parts.gc.schedule()  # what a crash left: blobs and snapshots nothing needs
        node.parts.snapshot_usage.start()
        log.info("daemon serving", address=str(config.socket), metrics_address=metrics_address,
                 stream_url=streams.base_url)
        systemd.notify("READY=1")
        _wait(stop)
        systemd.notify("STOPPING=1")
        log.info("daemon stopping", grace_seconds=STOP_GRACE_SECONDS)


def _register_collectors(metrics: Metrics, node: Node) -> None:
    """The metrics read from the stores at scrape time."""
    runtime = node.runtime
    metrics.register(ObjectStates(lambda: [c.state for c in runtime.containers.all()],
                                  lambda: [p.state for p in runtime.pods.all()]))
    metrics.register(node.parts.disk_usage)
    metrics.register(BuildInfo(cri.__version__, revision()))
    metrics.register(ProcessThreads())


def _start_metrics(stack: ExitStack, config: Config, metrics: Metrics) -> str:
    """Start the /metrics endpoint if configured; the address it listens on, or ""."""
    if not config.metrics_address:
        return ""
    server = start_server(metrics, config.metrics_address)
    stack.callback(server.close)
    return server.address


def _prepare_dirs(config: Config) -> None:
    config.root.mkdir(mode=_ROOT_MODE, parents=True, exist_ok=True)
    # An existing root may have been made by hand with a looser mode: the store is nobody else's.
    config.root.chmod(_ROOT_MODE)
    config.state.mkdir(mode=_STATE_MODE, parents=True, exist_ok=True)
    # Searchable by all: the root of a pod in its own user namespace is no root of the host's, and reaches
    # its container's bundle through here.
    config.state.chmod(_STATE_MODE)


def _grpc_server(metrics: Metrics, node: Node) -> Any:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="rpc"),
        interceptors=[Interceptor(metrics)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(node.runtime, server)
    api_pb2_grpc.add_ImageServiceServicer_to_server(node.images, server)
    # containerd's own API on the same socket, for ctr and containerd's proxy snapshotter.
    node.containerd.register(server)
    import_image.register(server, node.images)
    return server


def _bind(server: Any, path: Path) -> None:
    path.parent.mkdir(mode=_STATE_MODE, parents=True, exist_ok=True)
    # The socket is created by bind(): under this umask it is born 0660, so
    # there is no moment when anyone else may connect.
    previous = os.umask(0o117)
    try:
        server.add_insecure_port(f"unix://{path}")
    except RuntimeError as exc:
        raise Unavailable(f"cannot listen on {path}: {exc}") from exc
    finally:
        os.umask(previous)
    path.chmod(_SOCKET_MODE)


def _claim_socket_path(path: Path) -> None:
    """Remove a stale socket at ``path``; refuse if it is live or not a socket.

    grpc would unlink whatever is at the path, even a live daemon's socket.
    """
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FailedPrecondition(f"{path} exists and is not a socket")
    if _answers(path):
        raise FailedPrecondition(f"another daemon is serving on {path}")
    path.unlink(missing_ok=True)


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError as exc:
            raise FailedPrecondition(f"cannot tell whether {path} is in use: {exc.strerror}") from exc
    return True


def _stop_server(server: Any, events: EventBus) -> None:
    stopped = server.stop(STOP_GRACE_SECONDS)
    # Event streams never end by themselves: ended now (kubelet sees the stream close), the grace is for
    # the calls that do end, and a stop does not wait it out for a subscriber.
    events.close()
    stopped.wait()


def _remove_socket(path: Path) -> None:
    # grpc removes it on a clean stop; this covers the paths where it did not get to.
    if path.is_socket():
        path.unlink(missing_ok=True)


def _wait(stop: threading.Event) -> None:
    # Short timeouts rather than one long wait: a signal handler setting the
    # event while this thread holds the event's lock would otherwise go unseen.
    while not stop.wait(0.5):
        pass


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
