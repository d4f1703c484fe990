"""GetContainerEvents as kubelet's evented PLEG reads it: each event carries the pod's status and its
containers' statuses, an exit is reported as it happens, and a pod has events of its own (the pod's id as the
container id) up to its removal, which still carries the pod's status."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator

import grpc

from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
from tests.support.cri_env import CriEnv

EVENT = api_pb2.ContainerEventType
STATE = api_pb2.ContainerState


def _read(stream: object, received: queue.Queue[api_pb2.ContainerEventResponse]) -> None:
    try:
        for event in stream:  # type: ignore[attr-defined]
            received.put(event)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:  # cancelled at the end of the test
            raise


@contextlib.contextmanager
def _events(cri: CriEnv) -> Iterator[queue.Queue[api_pb2.ContainerEventResponse]]:
    received: queue.Queue[api_pb2.ContainerEventResponse] = queue.Queue()
    channel = grpc.insecure_channel(f"unix://{cri.daemon.socket}")
    stream = api_pb2_grpc.RuntimeServiceStub(channel).GetContainerEvents(api_pb2.GetEventsRequest())
    reader = threading.Thread(target=_read, args=(stream, received), daemon=True)
    reader.start()
    try:
        time.sleep(0.5)  # the stream is open before anything happens
        yield received
    finally:
        stream.cancel()
        channel.close()


def _next(received: queue.Queue[api_pb2.ContainerEventResponse], about: str) -> api_pb2.ContainerEventResponse:
    """The next event about this container (or pod)."""
    while True:
        event = received.get(timeout=15)
        if event.container_id == about:
            return event


def test_events_carry_the_pod_and_container_statuses(cri: CriEnv) -> None:
    with _events(cri) as received:
        pod_id = cri.runp()
        container_id = cri.run(pod_id, cri.container("quick", command=["sh", "-c", "sleep 1"]))
        expected = [(EVENT.CONTAINER_CREATED_EVENT, STATE.CONTAINER_CREATED),
                    (EVENT.CONTAINER_STARTED_EVENT, STATE.CONTAINER_RUNNING),
                    (EVENT.CONTAINER_STOPPED_EVENT, STATE.CONTAINER_EXITED)]
        for kind, state in expected:
            event = _next(received, container_id)
            assert event.container_event_type == kind
            assert event.pod_sandbox_status.id == pod_id
            assert event.pod_sandbox_status.state == api_pb2.PodSandboxState.SANDBOX_READY
            assert [(s.id, s.state) for s in event.containers_statuses] == [(container_id, state)]
        cri.crictl("rm", container_id)
        deleted = _next(received, container_id)
        assert deleted.container_event_type == EVENT.CONTAINER_DELETED_EVENT
        assert deleted.pod_sandbox_status.id == pod_id and list(deleted.containers_statuses) == []


def test_a_pod_has_events_of_its_own_up_to_its_removal(cri: CriEnv) -> None:
    with _events(cri) as received:
        pod_id = cri.runp()
        cri.run(pod_id, cri.container("sleeper"))  # for the pod's stop to stop
        seen = []
        for kind in (EVENT.CONTAINER_CREATED_EVENT, EVENT.CONTAINER_STARTED_EVENT):
            event = _next(received, pod_id)
            seen.append(event)
            assert event.container_event_type == kind
        cri.crictl("stopp", pod_id)
        seen.append(_next(received, pod_id))
        cri.crictl("rmp", pod_id)
        seen.append(_next(received, pod_id))
    ready, not_ready = api_pb2.PodSandboxState.SANDBOX_READY, api_pb2.PodSandboxState.SANDBOX_NOTREADY
    assert [(e.container_event_type, e.pod_sandbox_status.id, e.pod_sandbox_status.state) for e in seen] == [
        (EVENT.CONTAINER_CREATED_EVENT, pod_id, ready), (EVENT.CONTAINER_STARTED_EVENT, pod_id, ready),
        (EVENT.CONTAINER_STOPPED_EVENT, pod_id, not_ready), (EVENT.CONTAINER_DELETED_EVENT, pod_id, not_ready)]
    # kubelet keys its cache by the pod's UID, from the metadata: the removal must carry it too.
    assert seen[-1].pod_sandbox_status.metadata.uid == seen[0].pod_sandbox_status.metadata.uid != ""
    assert [s.state for s in seen[2].containers_statuses] == [STATE.CONTAINER_EXITED]  # stopped with the pod
    assert list(seen[3].containers_statuses) == []
    assert [e.created_at for e in seen] == sorted(e.created_at for e in seen)


def test_a_stopping_daemon_ends_the_stream(cri: CriEnv) -> None:
    # Ended by the daemon as it stops (kubelet reads the stream's end), not cut off when the stop's grace
    # period for calls in flight runs out: a subscriber would make every stop wait that long.
    with grpc.insecure_channel(f"unix://{cri.daemon.socket}") as channel:
        stream = api_pb2_grpc.RuntimeServiceStub(channel).GetContainerEvents(api_pb2.GetEventsRequest())
        pod_id = cri.runp()
        assert next(stream).container_id == pod_id  # subscribed
        cri.daemon.stop()
        try:
            rest = list(stream)
        finally:
            cri.daemon.start()
    assert stream.code() == grpc.StatusCode.OK
    assert [e.container_event_type for e in rest] == [EVENT.CONTAINER_STARTED_EVENT]
