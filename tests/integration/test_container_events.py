"""GetContainerEvents as kubelet's evented PLEG reads it: each event carries the pod's status and its
containers' statuses, and an exit is reported as it happens."""

from __future__ import annotations

import queue
import threading
import time

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


def test_events_carry_the_pod_and_container_statuses(cri: CriEnv) -> None:
    received: queue.Queue[api_pb2.ContainerEventResponse] = queue.Queue()
    channel = grpc.insecure_channel(f"unix://{cri.daemon.socket}")
    stream = api_pb2_grpc.RuntimeServiceStub(channel).GetContainerEvents(api_pb2.GetEventsRequest())
    reader = threading.Thread(target=_read, args=(stream, received), daemon=True)
    reader.start()
    try:
        time.sleep(0.5)  # the stream is open before anything happens
        pod_id = cri.runp()
        container_id = cri.run(pod_id, cri.container("quick", command=["sh", "-c", "sleep 1"]))
        expected = [(EVENT.CONTAINER_CREATED_EVENT, STATE.CONTAINER_CREATED),
                    (EVENT.CONTAINER_STARTED_EVENT, STATE.CONTAINER_RUNNING),
                    (EVENT.CONTAINER_STOPPED_EVENT, STATE.CONTAINER_EXITED)]
        for kind, state in expected:
            event = received.get(timeout=15)
            assert (event.container_id, event.container_event_type) == (container_id, kind)
            assert event.pod_sandbox_status.id == pod_id
            assert event.pod_sandbox_status.state == api_pb2.PodSandboxState.SANDBOX_READY
            assert [(s.id, s.state) for s in event.containers_statuses] == [(container_id, state)]
        cri.crictl("rm", container_id)
        deleted = received.get(timeout=15)
        assert deleted.container_event_type == EVENT.CONTAINER_DELETED_EVENT
        assert deleted.pod_sandbox_status.id == pod_id and list(deleted.containers_statuses) == []
    finally:
        stream.cancel()
        channel.close()
