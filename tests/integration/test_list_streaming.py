"""The CRI's list streaming calls through a gRPC client against the daemon: each Stream call answers its List
call's filters with the same items, in chunks of at most 4 MiB that together carry each item once; a listing
too big for one message (the 16 MiB kubelet takes) comes whole as a stream; a client that hangs up ends the
stream CANCELLED and the daemon serves on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
from cri.list_stream import CHUNK_BYTES
from tests.support.cri_env import CriEnv
from tests.support.procs import wait_until

READY = api_pb2.PodSandboxState.SANDBOX_READY
RUNNING = api_pb2.ContainerState.CONTAINER_RUNNING
STREAM_CONTAINERS = "/runtime.v1.RuntimeService/StreamContainers"


@pytest.fixture
def runtime(cri: CriEnv) -> Iterator[api_pb2_grpc.RuntimeServiceStub]:
    with grpc.insecure_channel(f"unix://{cri.daemon.socket}") as channel:
        yield api_pb2_grpc.RuntimeServiceStub(channel)


@pytest.fixture
def image_service(cri: CriEnv) -> Iterator[api_pb2_grpc.ImageServiceStub]:
    with grpc.insecure_channel(f"unix://{cri.daemon.socket}") as channel:
        yield api_pb2_grpc.ImageServiceStub(channel)


def _streamed(call: Any, request: Any, field: str) -> list[Any]:
    """Every item of a Stream call, checking that each response carries at least one and fits its chunk."""
    items: list[Any] = []
    for response in call(request, timeout=60):
        chunk = list(getattr(response, field))
        assert chunk, "a response without items"
        assert response.ByteSize() <= CHUNK_BYTES or len(chunk) == 1
        items += chunk
    return items


def test_each_stream_answers_its_list_calls_filters_with_the_same_items(
        cri: CriEnv, runtime: api_pb2_grpc.RuntimeServiceStub, image_service: api_pb2_grpc.ImageServiceStub) -> None:
    web = cri.runp(cri.pod(labels={"app": "web"}))
    db = cri.runp(cri.pod(labels={"app": "db"}))
    stopped = cri.runp(cri.pod(labels={"app": "gone"}))
    cri.crictl("stopp", stopped)
    front = cri.run(web, cri.container("front", labels={"tier": "front"}))
    waiting = cri.create(web, cri.container("waiting", labels={"tier": "front"})).stdout.strip()
    cri.run(db, cri.container("store", labels={"tier": "back"}))

    pod_filters = [api_pb2.PodSandboxFilter(), api_pb2.PodSandboxFilter(id=web[:8]),
                   api_pb2.PodSandboxFilter(state=api_pb2.PodSandboxStateValue(state=READY)),
                   api_pb2.PodSandboxFilter(label_selector={"app": "db"}),
                   api_pb2.PodSandboxFilter(label_selector={"app": "nobody"})]
    for pod_filter in pod_filters:
        listed = runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(filter=pod_filter)).items
        streamed = _streamed(runtime.StreamPodSandboxes, api_pb2.StreamPodSandboxesRequest(filter=pod_filter),
                             "pod_sandboxes")
        assert _by_id(streamed) == _by_id(listed), pod_filter
    assert {p.id for p in runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items} == {web, db, stopped}

    container_filters = [api_pb2.ContainerFilter(), api_pb2.ContainerFilter(pod_sandbox_id=web),
                         api_pb2.ContainerFilter(id=waiting[:10]),
                         api_pb2.ContainerFilter(state=api_pb2.ContainerStateValue(state=RUNNING)),
                         api_pb2.ContainerFilter(label_selector={"tier": "front"})]
    for container_filter in container_filters:
        listed = runtime.ListContainers(api_pb2.ListContainersRequest(filter=container_filter)).containers
        streamed = _streamed(runtime.StreamContainers,
                             api_pb2.StreamContainersRequest(filter=container_filter), "containers")
        assert streamed and _by_id(streamed) == _by_id(listed), container_filter

    image = cri.image.ref
    for image_filter in [api_pb2.ImageFilter(), api_pb2.ImageFilter(image=api_pb2.ImageSpec(image=image)),
                         api_pb2.ImageFilter(image=api_pb2.ImageSpec(image="no.such/image:1"))]:
        listed = image_service.ListImages(api_pb2.ListImagesRequest(filter=image_filter)).images
        streamed = _streamed(image_service.StreamImages, api_pb2.StreamImagesRequest(filter=image_filter),
                             "images")
        assert _by_id(streamed) == _by_id(listed), image_filter
    assert len(image_service.ListImages(api_pb2.ListImagesRequest()).images) == 1

    # Stats change from one sample to the next: the same containers and pods, measured.
    for stats_filter in [api_pb2.ContainerStatsFilter(), api_pb2.ContainerStatsFilter(pod_sandbox_id=web),
                         api_pb2.ContainerStatsFilter(label_selector={"tier": "back"})]:
        listed = runtime.ListContainerStats(api_pb2.ListContainerStatsRequest(filter=stats_filter)).stats
        streamed = _streamed(runtime.StreamContainerStats,
                             api_pb2.StreamContainerStatsRequest(filter=stats_filter), "container_stats")
        assert _attributes(streamed) == _attributes(listed), stats_filter
    (running,) = _streamed(runtime.StreamContainerStats,
                           api_pb2.StreamContainerStatsRequest(filter=api_pb2.ContainerStatsFilter(id=front)),
                           "container_stats")
    assert running.cpu.usage_core_nano_seconds.value > 0 and running.memory.working_set_bytes.value > 0

    for pod_stats_filter in [api_pb2.PodSandboxStatsFilter(), api_pb2.PodSandboxStatsFilter(id=db),
                             api_pb2.PodSandboxStatsFilter(label_selector={"app": "web"})]:
        listed = runtime.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest(filter=pod_stats_filter)).stats
        streamed = _streamed(runtime.StreamPodSandboxStats,
                             api_pb2.StreamPodSandboxStatsRequest(filter=pod_stats_filter), "pod_sandbox_stats")
        assert _pod_attributes(streamed) == _pod_attributes(listed), pod_stats_filter

    listed_metrics = runtime.ListPodSandboxMetrics(api_pb2.ListPodSandboxMetricsRequest()).pod_metrics
    streamed_metrics = _streamed(runtime.StreamPodSandboxMetrics, api_pb2.StreamPodSandboxMetricsRequest(),
                                 "pod_sandbox_metrics")
    assert _series(streamed_metrics) == _series(listed_metrics)
    assert {m.pod_sandbox_id for m in streamed_metrics} == {web, db}  # ready pods only


def test_a_listing_too_big_for_one_message_streams_whole_and_stops_when_the_client_goes(
        cri: CriEnv, runtime: api_pb2_grpc.RuntimeServiceStub) -> None:
    pod_id = cri.runp()
    created = set()
    # 17 containers of 1 MiB of annotations each: more than the 16 MiB of one message.
    for index in range(17):
        config = cri.container(f"big-{index}")
        config["annotations"] = {"blob": f"{index:02d}" * (512 * 1024)}
        created.add(cri.create(pod_id, config).stdout.strip())

    # A client taking any size, so that the limit met is the daemon's.
    with (grpc.insecure_channel(f"unix://{cri.daemon.socket}",
                                options=[("grpc.max_receive_message_length", 64 << 20)]) as channel,
          pytest.raises(grpc.RpcError) as refused):
        api_pb2_grpc.RuntimeServiceStub(channel).ListContainers(api_pb2.ListContainersRequest(), timeout=60)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

    # The stream's chunks fit a client of gRPC's default limit (4 MiB).

    responses = list(runtime.StreamContainers(api_pb2.StreamContainersRequest(), timeout=60))
    assert len(responses) >= 5  # 4 MiB hold three of them
    assert all(r.ByteSize() <= CHUNK_BYTES for r in responses)
    ids = [c.id for r in responses for c in r.containers]
    assert sorted(ids) == sorted(created)
    assert all(len(c.annotations["blob"]) == 1024 * 1024 for r in responses for c in r.containers)

    calls_before = len(_rpc_lines(cri, STREAM_CONTAINERS))
    stream = runtime.StreamContainers(api_pb2.StreamContainersRequest(), timeout=60)
    first = next(stream)
    assert first.containers
    stream.cancel()
    wait_until(lambda: len(_rpc_lines(cri, STREAM_CONTAINERS)) > calls_before, timeout=20,
               what="the daemon to end the stream the client left", interval=0.1)
    assert _rpc_lines(cri, STREAM_CONTAINERS)[-1]["code"] == "CANCELLED"
    # The daemon serves on; a filtered listing fits one message again.
    some = runtime.ListContainers(api_pb2.ListContainersRequest(
        filter=api_pb2.ContainerFilter(id=sorted(created)[0])), timeout=30).containers
    assert [c.id for c in some] == [sorted(created)[0]]


def _by_id(items: Any) -> dict[str, bytes]:
    found = {item.id: item.SerializeToString(deterministic=True) for item in items}
    assert len(found) == len(items), "an item appears twice"
    return found


def _attributes(stats: Any) -> list[bytes]:
    return sorted(s.attributes.SerializeToString(deterministic=True) + s.writable_layer.fs_id.mountpoint.encode()
                  for s in stats)


def _pod_attributes(stats: Any) -> list[tuple[bytes, list[str]]]:
    return sorted((s.attributes.SerializeToString(deterministic=True),
                   sorted(c.attributes.id for c in s.linux.containers)) for s in stats)


def _series(pods: Any) -> list[tuple[str, str, tuple[str, ...]]]:
    """Each metric's pod, name and labels: the values move between two samples."""
    found = []
    for pod in pods:
        found += [(pod.pod_sandbox_id, m.name, tuple(m.label_values)) for m in pod.metrics]
        found += [(pod.pod_sandbox_id, m.name, tuple(m.label_values))
                  for c in pod.container_metrics for m in c.metrics]
    return sorted(found)


def _rpc_lines(cri: CriEnv, method: str) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in cri.daemon.log_path.read_text().splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == "rpc" and line.get("method") == method]
