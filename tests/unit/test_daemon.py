from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import structlog

import cri
from cri import config, daemon
from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
from cri.sd_notify import Notifier

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_socket():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.05)


def version(path: Path) -> api_pb2.VersionResponse:
    with grpc.insecure_channel(f"unix://{path}") as channel:
        stub = api_pb2_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
        response: api_pb2.VersionResponse = stub.Version(api_pb2.VersionRequest(), timeout=10)
        return response


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_serve_as_a_process(tmp_path: Path) -> None:
    root, state, port = tmp_path / "root", tmp_path / "state", free_port()
    sock = state / "crishim.sock"
    argv = [sys.executable, "-m", "cri", "serve", "--root", str(root), "--state", str(state)]
    argv += ["--metrics-address", f"127.0.0.1:{port}", "--config", str(tmp_path / "empty.toml")]
    (tmp_path / "empty.toml").write_text("")
    process = subprocess.Popen(argv, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(sock)
        assert version(sock).runtime_version == cri.__version__
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        expected = 'crishim_grpc_requests_total{code="OK",method="/runtime.v1.RuntimeService/Version"} 1.0'
        assert expected in scraped
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        _, stderr = process.communicate()
    assert not sock.exists()
    events = [line for line in stderr.splitlines() if '"event"' in line]
    assert any('"daemon serving"' in line for line in events), stderr
    assert any('"daemon stopped"' in line for line in events), stderr


def test_tells_systemd_when_it_serves_and_when_it_stops(tmp_path: Path) -> None:
    """As a Type=notify unit: READY=1 once the socket answers, STOPPING=1 when a stop begins."""
    root, state = tmp_path / "root", tmp_path / "state"
    (tmp_path / "empty.toml").write_text("")
    argv = [sys.executable, "-m", "cri", "serve", "--root", str(root), "--state", str(state),
            "--metrics-address", "", "--config", str(tmp_path / "empty.toml")]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(tmp_path / "notify"))
        manager.settimeout(30)
        env = os.environ | {"NOTIFY_SOCKET": str(tmp_path / "notify")}
        process = subprocess.Popen(argv, cwd=REPO, env=env, stderr=subprocess.DEVNULL)
        try:
            assert manager.recv(4096) == b"READY=1"
            assert version(state / "crishim.sock").runtime_name == "crishim"
            process.send_signal(signal.SIGTERM)
            assert manager.recv(4096) == b"STOPPING=1"
            assert process.wait(timeout=30) == 0
        finally:
            process.kill()
            process.wait()


def test_children_do_not_inherit_the_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """runc would take it as a request to proxy notifications for every container it starts."""
    monkeypatch.setenv("NOTIFY_SOCKET", "@/org/freedesktop/systemd1/notify")
    notifier = Notifier.from_environment()
    assert notifier.address == "@/org/freedesktop/systemd1/notify"
    assert "NOTIFY_SOCKET" not in os.environ
    assert not Notifier.from_environment().notify("READY=1")  # a second reader finds no manager


def serve_in_thread(cfg: config.Config) -> tuple[threading.Event, threading.Thread, list[int]]:
    stop, status = threading.Event(), []
    thread = threading.Thread(target=lambda: status.append(daemon.serve(cfg, stop)))
    thread.start()
    return stop, thread, status


def quiet_config(tmp_path: Path, **overrides: str) -> config.Config:
    defaults = {"root": str(tmp_path / "r"), "state": str(tmp_path / "s"), "metrics_address": ""}
    return config.load(overrides=defaults | overrides)


def test_stale_socket_is_replaced(tmp_path: Path, restore_logging: None) -> None:
    cfg = quiet_config(tmp_path)
    cfg.state.mkdir()
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(cfg.socket))  # bound, never listening: what a crashed daemon leaves
    stop, thread, status = serve_in_thread(cfg)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert version(cfg.socket).runtime_name == "crishim"
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert status == [0]
    assert not cfg.socket.exists()


def test_refuses_a_live_socket(tmp_path: Path, restore_logging: None) -> None:
    cfg = quiet_config(tmp_path)
    cfg.state.mkdir()
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(cfg.socket))
        live.listen()
        assert daemon.serve(cfg, threading.Event()) == 1
        assert cfg.socket.is_socket()
    # Refused before the store was opened: nothing was created under root.
    assert list(cfg.root.iterdir()) == []


def test_refuses_a_path_that_is_not_a_socket(tmp_path: Path, restore_logging: None) -> None:
    cfg = quiet_config(tmp_path, address=str(tmp_path / "file"))
    cfg.socket.write_text("precious")
    assert daemon.serve(cfg, threading.Event()) == 1
    assert cfg.socket.read_text() == "precious"


def test_existing_root_is_made_private(tmp_path: Path, restore_logging: None) -> None:
    root = tmp_path / "r"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    cfg = quiet_config(tmp_path, root=str(root))
    stop, thread, status = serve_in_thread(cfg)
    try:
        wait_for(cfg.socket)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert status == [0]
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
