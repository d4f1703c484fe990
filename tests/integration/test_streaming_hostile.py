"""The daemon's streaming server against hand-made clients on raw sockets — unknown and reused tokens, a
malformed HTTP head, a hostile SPDY frame mid-session, a client that never opens all its streams — and then
against crictl: it still serves, and nothing of those sessions is left behind."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from cri.api.runtime.v1 import api_pb2
from cri.streaming.spdy_frames import DataFrame, GoAway, RstStatus, SynReply, SynStream
from tests.support.cri_env import CriEnv
from tests.support.procs import wait_until
from tests.support.raw_stream import RawStream

# The daemon gives a client this long to open its streams ([stream] creation_timeout).
CREATION_TIMEOUT = 2
# Marks the processes these tests exec, to find any that outlive their session.
MARK = "4321"


def _stream(stream_id: int, kind: str) -> SynStream:
    return SynStream(stream_id, {"streamtype": [kind]})


def _exec_url(cri: CriEnv, container_id: str, cmd: list[str], **stdio: bool) -> str:
    request = api_pb2.ExecRequest(container_id=container_id, cmd=cmd, **stdio)
    return str(cri.rpc("Exec", request).url)


def _marked_processes() -> list[str]:
    found = []
    for entry in subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines():
        if f"sleep {MARK}" in entry:
            found.append(entry.strip())
    return found


def _exec_dirs(cri: CriEnv) -> list[str]:
    folder = cri.daemon.state / "exec"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_hostile_clients_get_clear_answers_and_the_server_serves_on(cri_factory: Callable[..., CriEnv]) -> None:
    cri = cri_factory(config=f"[stream]\ncreation_timeout = {CREATION_TIMEOUT}\n")
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("target"))
    url = _exec_url(cri, container_id, ["sh", "-c", "echo hi"], stdout=True)
    base = url.rsplit("/", 2)[0]

    # An unknown token, a path that is no route: 404, as kubelet's server answers.
    for path in ("/exec/not-a-token", "/exec/", "/nothing/here"):
        with RawStream(base + path) as client:
            client.request()
            assert client.response_status() == 404

    # A normal session by hand: the token works once.
    with RawStream(url) as client:
        client.upgrade_spdy()
        client.send_frames(_stream(1, "error"), _stream(3, "stdout"))
        frames = client.frames_until_closed()
    assert DataFrame(3, b"hi\n") in frames and DataFrame(1, b'{"status":"Success"}') in frames
    with RawStream(url) as client:
        client.request({"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                        "X-Stream-Protocol-Version": "v4.channel.k8s.io"})
        assert client.response_status() == 404

    # A head that is not HTTP: 400, one too long: 431; and the connection closed.
    with RawStream(base + "/exec/x") as client:
        client.send(b"\x16\x03\x01 this is no HTTP request\r\n\r\n")
        assert client.response_status() == 400
        client.read_to_end()
    with RawStream(base + "/exec/x") as client:
        head = b"POST /exec/x HTTP/1.1\r\nX-Long: "
        client.send(head + b"a" * (16400 - len(head)))  # past the 16 KiB a head may take, all of it read
        assert client.response_status() == 431
        client.read_to_end()

    # A hostile frame in the middle of a session: GOAWAY with a protocol error, and its process is killed.
    hostile = _exec_url(cri, container_id, ["sh", "-c", f"echo started; exec busybox sleep {MARK}"], stdout=True)
    with RawStream(hostile) as client:
        client.upgrade_spdy()
        client.send_frames(_stream(1, "error"), _stream(3, "stdout"))
        assert [client.next_frame(), client.next_frame(), client.next_frame()] == [
            SynReply(1), SynReply(3), DataFrame(3, b"started\n")]
        client.send(b"\x80\x03\x00\x63\x00\x00\x00\x00")  # a control frame of unknown type 99
        assert client.frames_until_closed()[-1] == GoAway(3, RstStatus.PROTOCOL_ERROR)
    wait_until(lambda: not _marked_processes(), timeout=15, what="the hostile session's process to be killed")

    # A client that opens one of its two streams and stops: cut off after the creation timeout.
    slow = _exec_url(cri, container_id, ["busybox", "sleep", MARK], stdin=True, stdout=True)
    with RawStream(slow) as client:
        client.upgrade_spdy()
        client.send_frames(_stream(1, "error"))
        started = time.monotonic()
        assert client.next_frame() == SynReply(1)
        assert client.frames_until_closed(CREATION_TIMEOUT + 10)[-1:] == [GoAway(1)]
        assert time.monotonic() - started >= CREATION_TIMEOUT - 0.5
    assert not _marked_processes()

    # Clients that connect and say nothing, or half a head, do not hold up anyone else.
    idle = [RawStream(base + "/exec/x") for _ in range(20)]
    for client in idle[:10]:
        client.send(b"POST /exec/x HTTP/1.1\r\nHost: a\r\n")
    try:
        done = cri.crictl("exec", container_id, "sh", "-c", "echo still-serving")
        assert done.stdout == "still-serving\n"
        with ThreadPoolExecutor(4) as pool:
            outputs = list(pool.map(lambda i: cri.crictl("exec", "-r", ("spdy", "websocket")[i % 2], container_id,
                                                         "sh", "-c", f"echo {i}").stdout, range(8)))
        assert outputs == [f"{i}\n" for i in range(8)]
    finally:
        for client in idle:
            client.close()

    wait_until(lambda: not _exec_dirs(cri), timeout=10, what="no exec folder left")
    assert not _marked_processes()
