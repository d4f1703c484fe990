from __future__ import annotations

import json
import types

import cri
from cri.api.runtime.v1 import api_pb2
from cri.config import Config, RegistryAuth, RegistryConfig
from cri.runtime_service import RuntimeService


def test_version() -> None:
    response = RuntimeService(Config()).Version(api_pb2.VersionRequest(version="v1"), None)
    assert response.version == "0.1.0"
    assert response.runtime_name == "crishim"
    assert response.runtime_version == cri.__version__
    assert response.runtime_api_version == "v1"


def test_status_conditions() -> None:
    response = RuntimeService(Config()).Status(api_pb2.StatusRequest(), None)
    runtime, network = response.status.conditions
    assert (runtime.type, runtime.status) == ("RuntimeReady", True)
    assert (network.type, network.status) == ("NetworkReady", False)
    assert (network.reason, network.message) == ("NetworkPluginNotReady", "no CNI configuration")
    assert dict(response.info) == {}


def test_verbose_status_info_holds_no_credentials() -> None:
    auths = types.MappingProxyType({"r.example": RegistryAuth(username="alice", password="hunter2")})
    config = Config(registry=RegistryConfig(auths=auths))
    response = RuntimeService(config).Status(api_pb2.StatusRequest(verbose=True), None)
    info = dict(response.info)
    assert json.loads(info["config"])["root"] == "/var/lib/crishim"
    assert all(json.loads(value) is not None for value in info.values())
    assert "hunter2" not in json.dumps(info)
