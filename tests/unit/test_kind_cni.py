"""deploy/kind/default-cni.yaml is a manifest kind can template, patch and create, whose objects are valid
Kubernetes API objects, and deploy/kind/podnet writes a CNI config crishim loads."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

from runtime.cni import load_config_list

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "deploy" / "kind" / "default-cni.yaml"
PODNET = REPO / "deploy" / "kind" / "podnet"
POD_SUBNET = "10.244.0.0/16"
MODELS = {"ClusterRole": "V1ClusterRole", "ClusterRoleBinding": "V1ClusterRoleBinding",
          "ServiceAccount": "V1ServiceAccount", "DaemonSet": "V1DaemonSet"}


def templated(text: str, pod_subnet: str = POD_SUBNET) -> str:
    """kind's text/template run: the file's only action must be the pod subnet (any other `{{` would be
    another action, which kind's data has nothing for)."""
    assert re.findall(r"\{\{.*?\}\}", text) == ["{{ .PodSubnet }}"]
    return text.replace("{{ .PodSubnet }}", pod_subnet)


def objects(pod_subnet: str = POD_SUBNET) -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(templated(MANIFEST.read_text(), pod_subnet)) if d is not None]
    return {d["kind"]: d for d in docs}


def daemonset_container() -> dict[str, Any]:
    container: dict[str, Any] = objects()["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]
    return container


def test_kind_templates_and_patches_the_manifest() -> None:
    text = MANIFEST.read_text()
    # kind's markers, word for word (installcni/cni.go).
    assert "would you kindly template this file" in text
    assert "would you kindly patch this file" in text
    yaml.safe_load_all(text)  # parses before templating too
    env = daemonset_container()["env"]
    assert {"name": "POD_SUBNET", "value": POD_SUBNET} in env
    # kind's JSON patch appends CONTROL_PLANE_ENDPOINT with `add .../containers/0/env/-`: there must be a list.
    assert isinstance(env, list)
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in env


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_each_object_is_a_valid_api_object(kind: str) -> None:
    """Read into the Kubernetes client's model and written back: a misspelt or misplaced field is dropped on
    the way, and the two no longer match."""
    doc = objects()[kind]
    client = ApiClient()
    model = client.deserialize(json.dumps(doc), MODELS[kind], "application/json")
    assert client.sanitize_for_serialization(model) == doc


def test_the_daemonset_runs_on_every_node_in_the_host_network() -> None:
    spec = objects()["DaemonSet"]["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["priorityClassName"] == "system-node-critical"
    container = daemonset_container()
    assert set(container["securityContext"]["capabilities"]["add"]) >= {"NET_ADMIN"}
    assert {"name": "cni-cfg", "mountPath": "/etc/cni/net.d"} in container["volumeMounts"]
    assert container["imagePullPolicy"] == "Never"  # preloaded; a missing image says so instead of pulling


def test_the_service_account_may_watch_nodes_and_nothing_else() -> None:
    found = objects()
    account = found["ServiceAccount"]["metadata"]
    assert found["DaemonSet"]["spec"]["template"]["spec"]["serviceAccountName"] == account["name"]
    binding = found["ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                    "namespace": account["namespace"]}]
    assert binding["roleRef"]["name"] == found["ClusterRole"]["metadata"]["name"]
    assert found["ClusterRole"]["rules"] == [{"apiGroups": [""], "resources": ["nodes"],
                                              "verbs": ["get", "list", "watch"]}]


@pytest.mark.parametrize("cidrs", [["10.244.1.0/24"], ["10.244.1.0/24", "fd00:10:244:1::/64"]])
def test_podnet_writes_a_conflist_crishim_loads(tmp_path: Path, cidrs: list[str]) -> None:
    out = subprocess.run(["sh", str(PODNET), "conflist", *cidrs], capture_output=True, text=True, check=True)
    (tmp_path / "10-kindnet.conflist").write_text(out.stdout)
    network = load_config_list(tmp_path)
    assert network.name == "kindnet"
    assert [p["type"] for p in network.plugins] == ["ptp", "portmap"]
    ipam = network.plugins[0]["ipam"]
    assert ipam["type"] == "host-local"
    assert ipam["ranges"] == [[{"subnet": cidr}] for cidr in cidrs]
    assert [r["dst"] for r in ipam["routes"]] == ["0.0.0.0/0", "::/0"][:len(cidrs)]
    assert network.plugins[1]["capabilities"] == {"portMappings": True}


def test_podnet_refuses_to_start_without_its_node_name() -> None:
    out = subprocess.run(["sh", str(PODNET)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
                         timeout=10)
    assert out.returncode != 0
    assert "NODE_NAME" in out.stderr
