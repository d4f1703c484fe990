"""What the streaming sessions do in the runtime: exec a process, attach to a container's stdio through its
conmon, connect to a port inside a pod. Blocking runtime calls run in worker threads; the copying is all on
the event loop, so an idle session holds no thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from cri.streaming import fdio, pumps
from cri.streaming.session import Input, Output, Session, TerminalSize, decode_resizes
from errdefs import FailedPrecondition
from runtime import conmon, netns_socket
from runtime.containers import ContainerManager
from runtime.exec_process import ExecProcess
from runtime.oci import OCIRuntime
from runtime.pods import PodManager
from runtime.records import ContainerRecord, ContainerState, SandboxRecord, SandboxState

__all__ = ["StreamBackend"]

# After the process exits, its children may hold the output open (`sh -c 'sleep 1d &'`); stop waiting then.
DRAIN_SECONDS = 1.0
# conmon reads attach input in chunks of this size; a larger seqpacket would be cut.
_ATTACH_PACKET = 8192
# conmon tags each packet with the pipe it came from (as CRI-O reads them: 2 stdout, 3 stderr).
_ATTACH_STDOUT, _ATTACH_STDERR = 2, 3
_CTL_RESIZE = 1
# After one direction of a forwarded connection ends, the other gets this long (as socat and containerd).
_FORWARD_LINGER_SECONDS = 1.0
# How long a terminal exec waits for the client's first size before it starts without one.
_FIRST_SIZE_SECONDS = 1.0
_START_POLL_SECONDS = 0.02


class StreamBackend:
    def __init__(self, containers: ContainerManager, pods: PodManager, oci: OCIRuntime) -> None:
        self._containers = containers
        self._pods = pods
        self._oci = oci

    # --- checks, also made when the URL is handed out ------------------------------------------------------

    def running_container(self, container_id: str) -> ContainerRecord:
        record = self._containers.get(container_id)
        if record.state != ContainerState.RUNNING:
            raise FailedPrecondition(f"container {record.id} is not running (state {record.state})")
        return record

    def ready_pod(self, pod_id: str) -> SandboxRecord:
        record = self._pods.get(pod_id)
        if record.state != SandboxState.READY:
            raise FailedPrecondition(f"pod sandbox {record.id} is not ready")
        return record

    # --- exec -------------------------------------------------------------------------------------------

    async def exec(self, container_id: str, argv: list[str], session: Session) -> int:
        """Run argv in the container for the session; its exit code."""
        record = await asyncio.to_thread(self.running_container, container_id)
        opts = session.options
        sizes = _Sizes(session.resize) if opts.tty and session.resize is not None else None
        try:
            # A terminal client sends its size first: give the process that size from its start, not 0x0.
            first = await sizes.first(_FIRST_SIZE_SECONDS) if sizes is not None else None
            process = await asyncio.to_thread(self._oci.start_exec, record.id, argv, tty=opts.tty,
                                              stdin=opts.stdin, stdout=opts.stdout, stderr=opts.stderr,
                                              size=(first.width, first.height) if first else None)
            try:
                return await _run(process, session, sizes)
            finally:
                await asyncio.to_thread(process.close)
        finally:
            if sizes is not None:
                await sizes.close()

    # --- attach -----------------------------------------------------------------------------------------

    async def attach(self, container_id: str, session: Session) -> None:
        record = await asyncio.to_thread(self.running_container, container_id)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            try:
                await asyncio.get_running_loop().sock_connect(sock, str(self._oci.attach_socket(record.id)))
            except OSError as exc:
                raise FailedPrecondition(f"cannot attach to container {record.id}: {exc.strerror}") from exc
            await _attach(sock, Path(record.bundle), record.config.stdin, session)
        finally:
            sock.close()

    # --- port forward -----------------------------------------------------------------------------------

    async def port_forward(self, pod_id: str, port: int, stream: Input, reply: Output) -> None:
        """Copy between the client's stream and ``port`` on the pod's loopback; raises if it cannot connect."""
        pod = await asyncio.to_thread(self.ready_pod, pod_id)
        sock = await _connect_in_pod(pod, port)
        copies = [asyncio.create_task(pumps.input_to_socket(stream, sock)),
                  asyncio.create_task(pumps.socket_to_output(sock, reply))]
        try:
            await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
            await pumps.wait_all(copies, _FORWARD_LINGER_SECONDS)
        finally:
            # Also when cancelled (the client went): the copies stop before their socket is closed under them.
            for task in copies:
                task.cancel()
            await asyncio.gather(*copies, return_exceptions=True)
            sock.close()


class _Sizes:
    """The client's terminal sizes, read by one task into a queue: waiting for the first one with a timeout
    must not cancel the reading (a cancelled async generator is closed, and later sizes would be lost)."""

    def __init__(self, stream: Input) -> None:
        self._queue: asyncio.Queue[TerminalSize | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(stream))

    async def _read(self, stream: Input) -> None:
        try:
            async for size in decode_resizes(stream):
                self._queue.put_nowait(size)
        finally:
            self._queue.put_nowait(None)

    async def first(self, timeout: float) -> TerminalSize | None:
        try:
            size = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if size is None:
            self._queue.put_nowait(None)  # the end, for the iteration that follows
        return size

    async def __aiter__(self) -> AsyncIterator[TerminalSize]:
        while (size := await self._queue.get()) is not None:
            yield size

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


async def _run(process: ExecProcess, session: Session, sizes: _Sizes | None) -> int:
    """Copy stdio until the process exits or the client goes; the exit code (raises if it never started)."""
    tasks: list[asyncio.Task[None]] = []
    outputs: list[asyncio.Task[None]] = []
    if process.stdin is not None and session.stdin is not None:
        # A terminal's input cannot be closed apart from its output; a pipe is closed at the client's EOF.
        tasks.append(asyncio.create_task(
            pumps.input_to_fd(session.stdin, process.stdin, close_at_eof=not process.tty)))
    if process.stdout is not None:
        outputs.append(asyncio.create_task(pumps.fd_to_output(process.stdout, session.stdout)))
    if process.stderr is not None:
        outputs.append(asyncio.create_task(pumps.fd_to_output(process.stderr, session.stderr)))
    if sizes is not None:
        tasks.append(asyncio.create_task(pumps.apply_sizes(aiter(sizes), _resizer(process))))
        tasks.append(asyncio.create_task(_renotify_once_started(process)))
    exited = asyncio.create_task(_wait_exit(process))
    gone = asyncio.create_task(session.gone.wait())
    try:
        await asyncio.wait([exited, gone], return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            await asyncio.to_thread(process.kill)
        await exited
        await pumps.wait_all(outputs, DRAIN_SECONDS)
    finally:
        for task in [*tasks, *outputs, gone]:
            task.cancel()
        await asyncio.gather(*tasks, *outputs, gone, exited, return_exceptions=True)
        if not exited.done() or process.proc.poll() is None:
            await asyncio.to_thread(process.kill)
    return await asyncio.to_thread(process.exit_code)


def _resizer(process: ExecProcess) -> Callable[[TerminalSize], None]:
    def apply(size: TerminalSize) -> None:
        process.resize(size.width, size.height)
    return apply


async def _renotify_once_started(process: ExecProcess) -> None:
    # A size that came while runc was starting may have been signalled before runc listened for it.
    while process.started_pid() is None and process.proc.poll() is None:
        await asyncio.sleep(_START_POLL_SECONDS)
    process.notify_size()


async def _wait_exit(process: ExecProcess) -> None:
    """Wait for runc to exit without a thread: its pidfd becomes readable then."""
    try:
        pidfd = os.pidfd_open(process.proc.pid)
    except ProcessLookupError:
        return
    try:
        while process.proc.poll() is None:
            await fdio.wait_readable(pidfd)
    finally:
        os.close(pidfd)


async def _attach(sock: socket.socket, bundle: Path, has_stdin: bool, session: Session) -> None:
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    if session.stdin is not None and has_stdin:
        tasks.append(asyncio.create_task(pumps.input_to_socket(session.stdin, sock, packet=_ATTACH_PACKET)))
    if session.options.tty:
        def resize(size: TerminalSize) -> None:
            conmon.write_ctl(bundle, _CTL_RESIZE, size.height, size.width)
        if session.resize is not None:
            tasks.append(asyncio.create_task(pumps.apply_sizes(decode_resizes(session.resize), resize)))

    async def output() -> None:
        # conmon's packets: one byte naming the pipe, then the data.
        while packet := await loop.sock_recv(sock, _ATTACH_PACKET + 1):
            target = session.stderr if packet[0] == _ATTACH_STDERR else session.stdout
            if target is not None and packet[0] in (_ATTACH_STDOUT, _ATTACH_STDERR):
                with contextlib.suppress(ConnectionError):
                    await target.write(packet[1:])

    reading = asyncio.create_task(output())
    gone = asyncio.create_task(session.gone.wait())
    try:
        await asyncio.wait([reading, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in [*tasks, reading, gone]:
            task.cancel()
        await asyncio.gather(*tasks, reading, gone, return_exceptions=True)


async def _connect_in_pod(pod: SandboxRecord, port: int) -> socket.socket:
    """A connection to localhost:port in the pod's network namespace (the host's for host-network pods)."""
    netns = Path(pod.netns) if pod.netns else None
    made = await asyncio.to_thread(netns_socket.sockets_in, netns, (socket.AF_INET, socket.AF_INET6))
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    for sock, (network, address) in zip(made, (("tcp4", "127.0.0.1"), ("tcp6", "::1")), strict=True):
        try:
            await loop.sock_connect(sock, (address, port))
        except OSError as exc:
            # Go's wording, which kubectl users know: "dial tcp4 127.0.0.1:80: connect: connection refused".
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            shown = f"[{address}]" if ":" in address else address
            errors.append(f"dial {network} {shown}:{port}: connect: {reason}")
            sock.close()
            continue
        for other in made:
            if other is not sock:
                other.close()
        return sock
    where = f"inside the network namespace of pod {pod.id}" if netns else "on the host"
    raise FailedPrecondition(f"failed to connect to localhost:{port} {where}, IPv4: {errors[0]} IPv6: {errors[1]}")
