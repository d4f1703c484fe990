"""GetContainerEvents: a stream of created, started, stopped and deleted events as they happen."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cri.api.runtime.v1 import api_pb2

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
        yield api_pb2.ContainerEventResponse(container_id=event.container_id,
                                             container_event_type=KINDS[event.kind],
                                             created_at=event.created_at)
