from __future__ import annotations

import json
import types
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

import cri
from cri.api.runtime.v1 import api_pb2
from cri.config import Config, RegistryAuth, RegistryConfig
from cri.metrics import Metrics
from cri.node import open_node
from cri.runtime_service import RuntimeService


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., RuntimeService]]:
    with ExitStack() as stack:

        def build(**changes: object) -> RuntimeService:
            config = Config(root=tmp_path / "root", state=tmp_path / "state", cni_conf_dir=tmp_path / "net.d",
                            **changes)
            return open_node(config, Metrics(), stack).runtime

        yield build


def test_version(make: Callable[..., RuntimeService]) -> None:
    response = make().Version(api_pb2.VersionRequest(version="v1"), None)
    assert response.version == "0.1.0"
    assert response.runtime_name == "crishim"
    assert response.runtime_version == cri.__version__
    assert response.runtime_api_version == "v1"


def test_status_follows_the_cni_config(make: Callable[..., RuntimeService], tmp_path: Path) -> None:
    service = make()
    response = service.Status(api_pb2.StatusRequest(), None)
    runtime, network = response.status.conditions
    assert (runtime.type, runtime.status) == ("RuntimeReady", True)
    assert (network.type, network.status, network.reason) == ("NetworkReady", False, "NetworkPluginNotReady")
    assert str(tmp_path / "net.d") in network.message
    assert dict(response.info) == {}
    (tmp_path / "net.d").mkdir()
    (tmp_path / "net.d" / "10-lo.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "lo", "plugins": [{"type": "loopback"}]}))
    _, network = service.Status(api_pb2.StatusRequest(), None).status.conditions
    assert network.status is True, network.message


def test_verbose_status_info_holds_no_credentials(make: Callable[..., RuntimeService]) -> None:
    auths = types.MappingProxyType({"r.example": RegistryAuth(username="alice", password="hunter2")})
    response = make(registry=RegistryConfig(auths=auths)).Status(api_pb2.StatusRequest(verbose=True), None)
    info = dict(response.info)
    assert json.loads(info["config"])["root"].endswith("/root")
    assert all(json.loads(value) is not None for value in info.values())
    assert "hunter2" not in json.dumps(info)
