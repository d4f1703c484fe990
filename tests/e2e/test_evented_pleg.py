"""kubelet's evented PLEG (feature gate EventedPLEG) keeps to crishim's GetContainerEvents stream.

With the gate on, kubelet 1.36 (pkg/kubelet/pleg/evented.go) puts the pod status each event carries into its
pod cache and relists only every 300 s (eventedPlegRelistPeriod), falling back to relisting every second
when the stream fails five times. PLEGOnDemandRelist (beta, on by default) also relists a pod right after
every sync that changed something, which would notice a container start without any event: it is turned off
here, so that a global relist, counted by kubelet's own metrics, is the only other way kubelet could learn of
a change. The node's kubelet logs at level 4, where evented.go logs each event it acts on and its fallback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cri.api.runtime.v1 import api_pb2
from tests.conftest import phase_failed
from tests.support.images import PushedImage
from tests.support.kube_build import KubeBinaries
from tests.support.kube_manifests import TICKER, container, pod
from tests.support.kube_node import KubeNode, kube_node
from tests.support.registry import Registry
from tests.support.report import say

GATES = {"EventedPLEG": True, "PLEGOnDemandRelist": False}
# kubelet's metrics (pkg/kubelet/metrics/metrics.go).
CONNECTED = "kubelet_evented_pleg_connection_success_count"
STREAM_ERRORS = "kubelet_evented_pleg_connection_error_count"
EVENTS = "kubelet_evented_pleg_connection_latency_seconds_count"  # observed once per event received
EVENT_LATENCY = "kubelet_evented_pleg_connection_latency_seconds_sum"
RELISTS = "kubelet_pleg_relist_duration_seconds_count"  # observed by every global relist
POD_RELISTS = "kubelet_pleg_pod_relist_duration_seconds_count"  # on-demand relists of one pod
# kubelet's log lines (evented.go, and the CRI client's k8s.io/cri-client/pkg/remote_runtime.go).
FALLBACK = "Fall back to Generic PLEG relisting since Evented PLEG is not working"
STREAM_TROUBLE = ("Evented PLEG: Failed to get container events, retrying",
                  "GetContainerEvents failed to get streaming client",
                  "container events stream is closed",
                  "failed to receive streaming container event",
                  # An event without a pod sandbox status is dropped: only a relist would catch up.
                  "Evented PLEG: received ContainerEventResponse with nil PodSandboxStatus")
STARTED, STOPPED = "Received Container Started Event", "Received Container Stopped Event"
# Runs four seconds (long enough for a poll to see it running) and fails: kubelet restarts it at once the
# first time, then backs off for 10 s.
BLINKER = ["sh", "-c", "busybox sleep 4; exit 3"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, registry: Registry, test_images: dict[str, PushedImage],
         kube_binaries: KubeBinaries) -> Iterator[KubeNode]:
    with kube_node(tmp_path_factory.mktemp("evented-pleg"), registry, test_images["oci"], kube_binaries,
                   kubelet_overrides={"featureGates": GATES}, kubelet_verbosity=4) as node:
        yield node


@pytest.fixture
def static_pods(node: KubeNode, request: pytest.FixtureRequest) -> Iterator[list[str]]:
    added: list[str] = []
    yield added
    for name in added:
        if (node.kubelet.manifests / f"{name}.json").exists():
            node.kubelet.remove_static_pod(name)
    if phase_failed(request):
        print(f"\n--- kubelet log tail ({node.kubelet.log_path}) ---\n{node.kubelet.log_tail()}")


def _subscribed(node: KubeNode) -> dict[str, float]:
    """kubelet's metrics once its event stream is open and its first (startup) relist is done."""
    def ready() -> dict[str, float] | None:
        metrics = node.kubelet.metrics()
        return metrics if metrics.get(CONNECTED, 0) >= 1 and metrics.get(RELISTS, 0) >= 1 else None

    found: dict[str, float] = node.kubelet.wait_for("kubelet's evented PLEG to subscribe", ready, 60)
    return found


def _status(node: KubeNode, pod_name: str, container_name: str, check: Any, what: str) -> dict[str, Any]:
    def matching() -> dict[str, Any] | None:
        status = node.kubelet.container_status(pod_name, container_name)
        return status if status is not None and check(status) else None

    found: dict[str, Any] = node.kubelet.wait_for(what, matching, 90)
    return found


def _attempts(node: KubeNode, pod_name: str, container_name: str) -> dict[int, str]:
    """The pod's container ids by attempt, as crishim lists them."""
    (sandbox,) = node.crishim.crictl_json("pods", "--name", pod_name)["items"]
    listed = node.crishim.crictl_json("ps", "-a", "--pod", sandbox["id"], "--name", container_name)["containers"]
    return {int(c["metadata"].get("attempt", 0)): c["id"] for c in listed}


def _cri_status(node: KubeNode, container_id: str) -> api_pb2.ContainerStatus:
    response = node.env.rpc("ContainerStatus", api_pb2.ContainerStatusRequest(container_id=container_id))
    status: api_pb2.ContainerStatus = response.status
    return status


def _lines_with(node: KubeNode, *parts: str) -> list[str]:
    return [line for line in node.kubelet.log_path.read_text(errors="replace").splitlines()
            if all(part in line for part in parts)]


def test_kubelet_follows_a_failing_container_by_events_alone(
        node: KubeNode, test_images: dict[str, PushedImage], static_pods: list[str],
        request: pytest.FixtureRequest) -> None:
    before = _subscribed(node)
    static_pods.append("blinker")
    name = node.kubelet.add_static_pod(pod("blinker", [container("blinker", test_images["oci"].ref, BLINKER)]))

    # Each step needs kubelet to have seen the one before: a start, an exit (the restart), a start, an exit.
    _status(node, name, "blinker", lambda s: s["restartCount"] == 1 and "running" in s["state"],
            "kubelet to report the restarted container running")
    # Read now: once the second exits, kubelet removes the first.
    attempts = _attempts(node, name, "blinker")
    assert sorted(attempts) == [0, 1]
    restart_delay = (_cri_status(node, attempts[1]).started_at - _cri_status(node, attempts[0]).finished_at) / 1e9
    ended = _status(node, name, "blinker",
                    lambda s: s["restartCount"] == 1 and "running" not in s["state"]
                    and s["lastState"].get("terminated", {}).get("exitCode") == 3,
                    "kubelet to report the restarted container's exit")
    after = node.kubelet.metrics()

    # No relist of any kind ran meanwhile: what kubelet knows came from the events.
    assert after[RELISTS] == before[RELISTS], "kubelet relisted, so the events alone do not explain the statuses"
    assert after.get(POD_RELISTS, 0) == 0
    assert (after[CONNECTED], after.get(STREAM_ERRORS, 0)) == (1, 0), "kubelet's event stream was reopened"
    for attempt, container_id in attempts.items():
        assert _lines_with(node, STARTED, container_id), f"kubelet acted on no started event of attempt {attempt}"
        assert _lines_with(node, STOPPED, container_id), f"kubelet acted on no stopped event of attempt {attempt}"
    for trouble in (FALLBACK, *STREAM_TROUBLE):
        assert not _lines_with(node, trouble), f"kubelet logged {trouble!r}"
    assert ended["lastState"]["terminated"]["reason"] == "Error"

    received = after[EVENTS] - before.get(EVENTS, 0)
    latency = (after[EVENT_LATENCY] - before.get(EVENT_LATENCY, 0)) / received
    say(request.config, f"evented PLEG: exit to restart {restart_delay:.2f} s; "
                        f"{received:.0f} events, {latency * 1000:.1f} ms on average from crishim to kubelet")


def test_a_pod_back_with_the_same_uid_gets_a_new_sandbox(
        node: KubeNode, test_images: dict[str, PushedImage], static_pods: list[str]) -> None:
    # A static pod's manifest moved out and back in (a way to restart one) comes back with the same UID. Only
    # the pod's stopped event tells kubelet that the first sandbox stopped: without it kubelet's cache keeps
    # that sandbox ready, and kubelet keeps creating the returning pod's containers in it until a relist.
    before = _subscribed(node)
    manifest = pod("again", [container("ticker", test_images["oci"].ref, TICKER)])
    static_pods.append("again")
    name = node.kubelet.add_static_pod(manifest)
    _status(node, name, "ticker", lambda s: "running" in s["state"], "kubelet to report the ticker running")
    uid = node.kubelet.pod(name)["metadata"]["uid"]  # type: ignore[index]
    (first,) = node.crishim.crictl_json("pods", "--name", name)["items"]
    node.kubelet.remove_static_pod("again")
    node.kubelet.wait_for("kubelet to stop the pod", lambda: node.kubelet.pod(name) is None and _sandbox_states(
        node, name) == {first["id"]: "SANDBOX_NOTREADY"}, 60)

    node.kubelet.add_static_pod(manifest)
    _status(node, name, "ticker", lambda s: "running" in s["state"], "kubelet to report the ticker running again")
    assert node.kubelet.pod(name)["metadata"]["uid"] == uid  # type: ignore[index]
    states = _sandbox_states(node, name)
    assert len(states) == 2 and states.pop(first["id"]) == "SANDBOX_NOTREADY"
    assert list(states.values()) == ["SANDBOX_READY"]
    assert _lines_with(node, STOPPED, first["id"]), "kubelet acted on no stopped event of the first sandbox"
    assert node.kubelet.metrics()[RELISTS] == before[RELISTS]


def _sandbox_states(node: KubeNode, pod_name: str) -> dict[str, str]:
    return {p["id"]: p["state"] for p in node.crishim.crictl_json("pods", "--name", pod_name)["items"]}


def test_a_daemon_restart_makes_kubelet_fall_back_to_relisting(node: KubeNode) -> None:
    # Last in the module: the fallback is for good. kubelet counts every time the stream fails and never
    # resets the count, and while crishim is down its retries fail at once.
    _subscribed(node)
    assert not _lines_with(node, FALLBACK)
    node.crishim.stop()
    try:
        node.kubelet.wait_for("kubelet to fall back to relisting", lambda: _lines_with(node, FALLBACK), 60)
    finally:
        node.crishim.start()
    # Relisting every second again (genericPlegRelistPeriod). Counted from here: kubelet also relisted (in
    # vain) after each failed attempt.
    relists = node.kubelet.metrics()[RELISTS]
    node.kubelet.wait_for("kubelet to relist every second",
                          lambda: node.kubelet.metrics()[RELISTS] >= relists + 3, 30)
    assert node.kubelet.metrics()[STREAM_ERRORS] >= 5
