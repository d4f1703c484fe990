"""GetContainerEvents: a stream of created, started, stopped and deleted events as they happen.

Each event carries its pod's status and the statuses of the pod's containers as they are when the event
goes out, which kubelet's evented PLEG puts in its pod cache instead of asking again (it drops an event
without a pod status). A pod removed meanwhile has none to carry, unless the event is the pod's own: those
carry the pod as they left it, so that kubelet gets the removal (a deleted event with the pod's id) and
forgets the pod.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cri.api.runtime.v1 import api_pb2
from cri.runtime_service.container_status import to_status as container_status
from cri.runtime_service.pod_sandbox_status import to_status as pod_status
from errdefs import NotFound
from runtime.events import Event
from runtime.records import SandboxRecord

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService

KINDS = {
    "created": api_pb2.ContainerEventType.CONTAINER_CREATED_EVENT,
    "started": api_pb2.ContainerEventType.CONTAINER_STARTED_EVENT,
    "stopped": api_pb2.ContainerEventType.CONTAINER_STOPPED_EVENT,
    "deleted": api_pb2.ContainerEventType.CONTAINER_DELETED_EVENT,
}


def get_container_events(svc: RuntimeService, request: api_pb2.GetEventsRequest,
                         context: Any) -> Iterator[api_pb2.ContainerEventResponse]:
    alive = threading.Event()
    alive.set()
    context.add_callback(alive.clear)  # the client went away: stop the stream
    for event in svc.events.subscribe(alive):
        response = api_pb2.ContainerEventResponse(container_id=event.container_id,
                                                  container_event_type=KINDS[event.kind],
                                                  created_at=event.created_at)
        pod = _pod(svc, event)
        if pod is not None:
            response.pod_sandbox_status.CopyFrom(pod_status(pod))
            response.containers_statuses.extend(container_status(svc, record)
                                                for record in svc.containers.all(event.sandbox_id))
        yield response


def _pod(svc: RuntimeService, event: Event) -> SandboxRecord | None:
    """The pod as it is now, or as the event left it once it is gone."""
    try:
        return svc.pods.get(event.sandbox_id)
    except NotFound:
        return event.sandbox
