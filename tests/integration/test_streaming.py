"""Exec, Attach and PortForward through crictl's own streaming clients (client-go's SPDY and WebSocket code),
against containers and pods of crishim."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.cri_configs import NODE
from tests.support.cri_env import CriEnv, process_alive
from tests.support.procs import wait_until
from tests.support.terminal import Terminal

TRANSPORTS = ("spdy", "websocket")


def _crictl(cri: CriEnv, *args: str, stdin: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cri.daemon.crictl_client.command(*args), input=stdin, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_streams_output_and_reports_exit_codes(cri: CriEnv, transport: str) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("target"))

    done = _crictl(cri, "exec", "-r", transport, container_id, "sh", "-c", "echo out; echo err >&2")
    assert (done.returncode, done.stdout, done.stderr) == (0, "out\n", "err\n")

    failed = _crictl(cri, "exec", "-r", transport, container_id, "sh", "-c", "echo partial; exit 3")
    assert failed.returncode != 0
    assert failed.stdout == "partial\n"
    assert "command terminated with exit code 3" in failed.stderr

    # stdin reaches the process; its end closes the process's stdin.
    piped = _crictl(cri, "exec", "-i", "-r", transport, container_id, "sh", "-c", "tr a-z A-Z; echo eof",
                    stdin="hello\nworld\n")
    assert (piped.returncode, piped.stdout) == (0, "HELLO\nWORLD\neof\n")

    big = _crictl(cri, "exec", "-r", transport, container_id, "sh", "-c",
                  "busybox dd if=/dev/zero bs=1024 count=4096 2>/dev/null | busybox tr '\\0' x")
    assert big.returncode == 0 and big.stdout == "x" * 4096 * 1024


def test_exec_of_a_missing_command_is_an_error_and_leaves_nothing(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("target"))
    missing = _crictl(cri, "exec", container_id, "no-such-command")
    assert missing.returncode != 0
    assert "no-such-command" in missing.stderr
    assert "executable file not found" in missing.stderr
    assert not any((cri.daemon.state / "exec").iterdir())


def test_exec_in_a_stopped_or_unknown_container_is_refused(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("short", command=["true"]))
    cri.wait_state(container_id, "CONTAINER_EXITED")
    stopped = _crictl(cri, "exec", container_id, "true")
    assert stopped.returncode != 0 and "not running" in stopped.stderr
    unknown = _crictl(cri, "exec", "0" * 64, "true")
    assert unknown.returncode != 0 and "not found" in unknown.stderr


def test_exec_with_a_terminal(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("target"))
    session = Terminal(cri.daemon.crictl_client.command(
                         "exec", "-it", container_id, "sh"), rows=33, cols=101)
    try:
        # As a user does: type once the shell shows its prompt. runc copies the size to the container's
        # terminal just after the process starts, so a command typed ahead may run before that.
        session.expect("/ # ")
        session.send("tty; stty size; echo $((6*7))\r")
        session.expect("/dev/pts/")
        session.expect("33 101")
        session.expect("42")
        session.resize(rows=20, cols=70)
        session.send("stty size\r")
        session.expect("20 70")
        session.send("exit 5\r")
        assert session.wait() != 0
        assert "exit code 5" in session.output
    finally:
        session.close()


def test_a_client_that_goes_away_kills_its_exec(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("target"))
    client = subprocess.Popen(cri.daemon.crictl_client.command("exec",
                               container_id, "sh", "-c", "echo $$ > /exec.pid; exec busybox sleep 1000"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: cri.exec(container_id, "cat", "/exec.pid", check=False).stdout.strip() != "",
               timeout=15, what="the exec to start")
    pid = cri.exec(container_id, "cat", "/exec.pid").stdout.strip()
    client.kill()
    client.wait()
    wait_until(lambda: cri.exec(container_id, "sh", "-c", f"test -d /proc/{pid} && echo alive",
                                check=False).stdout.strip() == "",
               timeout=15, what="the exec'd process to be killed")
    wait_until(lambda: not any((cri.daemon.state / "exec").iterdir()), timeout=10, what="the exec folder to go")


def test_execs_a_killed_daemon_left_are_stopped_when_it_starts_again(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("target"))
    client = subprocess.Popen(cri.daemon.crictl_client.command("exec", container_id, "busybox", "sleep", "1000"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    exec_root = cri.daemon.state / "exec"
    wait_until(lambda: exec_root.is_dir() and any((f / "pid").exists() for f in exec_root.iterdir()), timeout=15,
               what="the exec to start")
    (folder,) = list(exec_root.iterdir())
    pid = int((folder / "pid").read_text())
    cri.daemon.kill()
    client.wait(timeout=15)
    # kill -9 between the session's start and its end: the process and its folder outlive the daemon.
    assert process_alive(pid) and folder.exists()
    cri.daemon.start()  # returns once the daemon answers, which it does only after the sweep
    assert not folder.exists()
    wait_until(lambda: not process_alive(pid), timeout=5, what="the exec'd process to die of its SIGKILL")
    assert _crictl(cri, "exec", container_id, "true").returncode == 0


def test_attach_to_a_container_with_stdin(cri: CriEnv) -> None:
    pod_id = cri.runp()
    config = cri.container("echoer", command=["sh", "-c", "while read line; do echo got:$line; done"])
    config["stdin"] = True
    container_id = cri.run(pod_id, config)
    client = subprocess.Popen(cri.daemon.crictl_client.command("attach",
                               "-i", container_id), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(b"one\n")
        client.stdin.flush()
        assert _read_until(client.stdout, b"got:one\n", 15).endswith(b"got:one\n")
        client.stdin.write(b"two\n")
        client.stdin.flush()
        assert _read_until(client.stdout, b"got:two\n", 15).endswith(b"got:two\n")
    finally:
        client.kill()
        client.wait()
    # The container lives on after the client left (stdin stays open without stdin_once).
    assert cri.state(container_id) == "CONTAINER_RUNNING"
    cri.wait_log(container_id, "got:two")


def test_attach_sees_the_containers_output(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container(
        "ticker", command=["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick-$i; busybox sleep 0.2; done"]))
    client = subprocess.Popen(cri.daemon.crictl_client.command("attach",
                               container_id), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert client.stdout is not None
        assert b"tick-" in _read_until(client.stdout, b"\n", 15)
    finally:
        client.kill()
        client.wait()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_port_forward_reaches_a_port_inside_the_pod(cri: CriEnv, transport: str) -> None:
    pod_id = cri.runp()
    server = "mkdir -p /www && echo hello-from-pod > /www/index.html && exec busybox httpd -f -p 8080 -h /www"
    server_id = cri.run(pod_id, cri.container("server", command=["sh", "-c", server]))
    wait_until(lambda: ":8080 " in cri.exec(server_id, "busybox", "netstat", "-ltn").stdout, timeout=15,
               what="the pod's server to listen")
    local = _free_port()
    forward = subprocess.Popen(cri.daemon.crictl_client.command(
                                "port-forward", "-r", transport, pod_id, f"{local}:8080"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _connects(local), timeout=15, what="crictl port-forward to listen")
        assert httpx.get(f"http://127.0.0.1:{local}/").text == "hello-from-pod\n"
        # More connections over the same session, one after the other and at once.
        assert httpx.get(f"http://127.0.0.1:{local}/index.html").text == "hello-from-pod\n"
        with ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(lambda _: httpx.get(f"http://127.0.0.1:{local}/").text, range(16)))
        assert bodies == ["hello-from-pod\n"] * 16
    finally:
        forward.kill()
        forward.wait()


def test_port_forward_into_a_host_network_pod_reaches_the_hosts_loopback(cri: CriEnv) -> None:
    pod_id = cri.runp(cri.pod(namespace_options={"network": NODE}))
    port = _free_port()
    server = ("mkdir -p /www && echo hello-from-host-pod > /www/index.html && "
              f"exec busybox httpd -f -p 127.0.0.1:{port} -h /www")
    cri.run(pod_id, cri.container("server", command=["sh", "-c", server]))
    wait_until(lambda: _connects(port), timeout=15, what="the host-network pod's server to listen on the host")
    local = _free_port()
    forward = subprocess.Popen(cri.daemon.crictl_client.command("port-forward", pod_id, f"{local}:{port}"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _connects(local), timeout=15, what="crictl port-forward to listen")
        assert httpx.get(f"http://127.0.0.1:{local}/").text == "hello-from-host-pod\n"
    finally:
        forward.kill()
        forward.wait()


def test_attach_to_a_terminal_container(cri: CriEnv) -> None:
    pod_id = cri.runp()
    config = cri.container("shell", command=["sh"])
    config.update({"tty": True, "stdin": True})
    container_id = cri.run(pod_id, config)
    session = Terminal(cri.daemon.crictl_client.command("attach", "-it", container_id), rows=25, cols=90)
    try:
        session.send("stty size; echo attached-$((40+2))\r")
        session.expect("attached-42")
        session.resize(rows=30, cols=100)
        session.send("stty size\r")
        session.expect("30 100")
    finally:
        session.close()
    assert cri.state(container_id) == "CONTAINER_RUNNING"


def test_port_forward_to_a_closed_port_reports_the_refusal(cri: CriEnv) -> None:
    pod_id = cri.runp()
    cri.run(pod_id, cri.container("idle"))
    local = _free_port()
    forward = subprocess.Popen(cri.daemon.crictl_client.command(
                                "port-forward", pod_id, f"{local}:9"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _connects(local), timeout=15, what="crictl port-forward to listen")
        with socket.create_connection(("127.0.0.1", local), timeout=10) as conn:
            conn.settimeout(10)
            assert conn.recv(100) == b""
    finally:
        forward.kill()
        _, err = forward.communicate()
    assert "dial tcp4 127.0.0.1:9: connect: connection refused" in err


def test_streaming_urls_are_single_use(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("target"))
    import grpc

    from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
    with grpc.insecure_channel(f"unix://{cri.daemon.socket}") as channel:
        stub = api_pb2_grpc.RuntimeServiceStub(channel)
        url = stub.Exec(api_pb2.ExecRequest(container_id=container_id, cmd=["true"], stdout=True)).url
        with pytest.raises(grpc.RpcError) as bad:
            stub.Exec(api_pb2.ExecRequest(container_id=container_id, cmd=["true"], tty=True, stderr=True,
                                          stdout=True))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as none:
            stub.Exec(api_pb2.ExecRequest(container_id=container_id, cmd=["true"]))
        assert none.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    first = httpx.post(url, headers={"X-Stream-Protocol-Version": "v9.channel.k8s.io", "Connection": "Upgrade",
                                     "Upgrade": "SPDY/3.1"})
    assert first.status_code == 403  # the token is used up even by a failed negotiation
    assert httpx.post(url).status_code == 404

    assert _crictl(cri, "exec", container_id, "true").returncode == 0
    metrics = httpx.get(cri.daemon.metrics_url).text
    assert 'crishim_stream_sessions_total{kind="exec",outcome="rejected",transport="spdy"} 2.0' in metrics
    assert 'crishim_stream_sessions_total{kind="exec",outcome="completed",transport="spdy"} 1.0' in metrics
    assert 'crishim_stream_sessions_active{kind="exec"} 0.0' in metrics


def test_exec_over_tls_with_the_self_signed_certificate(cri_factory: Callable[..., CriEnv]) -> None:
    cri = cri_factory(config="[stream]\nenable_tls = true\n")
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("target"))
    cert, key = cri.daemon.state / "stream-tls" / "stream.crt", cri.daemon.state / "stream-tls" / "stream.key"
    # crictl insists on a client certificate too, though the server asks for none: any pair does.
    done = _crictl(cri, "exec", "--tls-ca", str(cert), "--tls-cert", str(cert), "--tls-key", str(key),
                   container_id, "sh", "-c", "echo over-tls")
    assert (done.returncode, done.stdout) == (0, "over-tls\n"), done.stderr
    # Plain HTTP is not served on the TLS port.
    url = httpx.Client()
    exec_url = _exec_url(cri, container_id)
    assert exec_url.startswith("https://")
    with pytest.raises(httpx.HTTPError):
        url.post(exec_url.replace("https://", "http://"))


def _exec_url(cri: CriEnv, container_id: str) -> str:
    import grpc

    from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
    with grpc.insecure_channel(f"unix://{cri.daemon.socket}") as channel:
        stub = api_pb2_grpc.RuntimeServiceStub(channel)
        url: str = stub.Exec(api_pb2.ExecRequest(container_id=container_id, cmd=["true"], stdout=True)).url
        return url


# --- helpers ------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _fetch(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.settimeout(10)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        return data


def _read_until(stream: object, marker: bytes, timeout: float) -> bytes:
    fd = stream.fileno()  # type: ignore[attr-defined]
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise AssertionError(f"{marker!r} not seen in {data!r}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"stream ended before {marker!r}: {data!r}")
        data += chunk
    return data
