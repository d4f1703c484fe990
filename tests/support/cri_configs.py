"""Pod and container configs for ``crictl runp`` / ``crictl create``, as the JSON crictl reads.

crictl decodes these files with Go's encoding/json into the CRI structs, so keys are the protobuf field names
(snake_case) and enums are numbers: NamespaceMode POD=0, CONTAINER=1, NODE=2, TARGET=3; Protocol TCP=0, UDP=1.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

__all__ = ["CONTAINER", "NODE", "POD", "TCP", "container_config", "pod_config", "write_json"]

POD, CONTAINER, NODE, TARGET = 0, 1, 2, 3
TCP, UDP = 0, 1


def pod_config(
    name: str | None = None,
    *,
    log_directory: Path | None = None,
    hostname: str | None = None,
    dns: dict[str, list[str]] | None = None,
    labels: dict[str, str] | None = None,
    port_mappings: list[dict[str, Any]] | None = None,
    namespace_options: dict[str, int] | None = None,
    attempt: int = 0,
    uid: str | None = None,
) -> dict[str, Any]:
    """A pod with a unique name and uid unless given; each keyword adds that part of the config."""
    name = name or f"pod-{secrets.token_hex(4)}"
    config: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "crishim-tests", "uid": uid or secrets.token_hex(16),
                     "attempt": attempt},
        "labels": labels or {},
        "linux": {"security_context": {}},
    }
    if log_directory is not None:
        config["log_directory"] = str(log_directory)
    if hostname is not None:
        config["hostname"] = hostname
    if dns is not None:
        config["dns_config"] = dns
    if port_mappings is not None:
        config["port_mappings"] = port_mappings
    if namespace_options is not None:
        config["linux"]["security_context"]["namespace_options"] = namespace_options
    return config


def container_config(
    name: str,
    image: str,
    *,
    command: list[str] | None = None,
    args: list[str] | None = None,
    log_path: str | None = None,
    labels: dict[str, str] | None = None,
    envs: dict[str, str] | None = None,
    mounts: list[dict[str, Any]] | None = None,
    security_context: dict[str, Any] | None = None,
    resources: dict[str, Any] | None = None,
    attempt: int = 0,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "metadata": {"name": name, "attempt": attempt},
        "image": {"image": image},
        "log_path": log_path if log_path is not None else f"{name}.log",
        "labels": labels or {},
        "linux": {},
    }
    if command is not None:
        config["command"] = command
    if args is not None:
        config["args"] = args
    if envs:
        config["envs"] = [{"key": k, "value": v} for k, v in envs.items()]
    if mounts is not None:
        config["mounts"] = mounts
    if security_context is not None:
        config["linux"]["security_context"] = security_context
    if resources is not None:
        config["linux"]["resources"] = resources
    return config


def write_json(directory: Path, document: dict[str, Any], stem: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem or secrets.token_hex(4)}.json"
    path.write_text(json.dumps(document, indent=2))
    return path
