"""Pod manifests for the end-to-end tests, as plain dicts (written as YAML for static pods, JSON for kubectl)."""

from __future__ import annotations

from typing import Any

__all__ = ["TICKER", "container", "pod"]

# Prints a numbered line every second; goes at once on SIGTERM (sh waits on the sleep, so the trap runs).
TICKER = ["sh", "-c", "trap 'exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); "
          "busybox sleep 1 & wait $!; done"]


def container(name: str, image: str, command: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent"}
    if command is not None:
        spec["command"] = command
    spec.update(fields)
    return spec


def pod(name: str, containers: list[dict[str, Any]], *, node_name: str | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": containers, "terminationGracePeriodSeconds": 2}
    if node_name is not None:
        body["nodeName"] = node_name
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": body}
