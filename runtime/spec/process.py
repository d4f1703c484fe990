"""The container's process: command, environment, working directory, user, capabilities, and what the
security context asks of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import errdefs
from cri.api.runtime.v1 import api_pb2
from runtime import lsm
from runtime.spec import options as o
from runtime.spec.host import DEFAULT_CAPS, KNOWN_CAPS
from runtime.spec.inputs import SpecInputs, image_string, image_strings
from runtime.spec.model import User
from runtime.spec.options import SpecOpt

__all__ = ["capabilities", "process_args", "process_options"]

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def process_options(inputs: SpecInputs, caps: list[str]) -> list[SpecOpt]:
    config, sc, host = inputs.config, inputs.security_context, inputs.host
    cwd = config.working_dir or image_string(inputs.image_config, "WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise errdefs.InvalidArgument(f"working directory {cwd!r} is not an absolute path")
    resolved = inputs.user
    options = [
        o.with_user(User(resolved.uid, resolved.gid, tuple(resolved.additional_gids))),
        o.with_process_args(process_args(config, inputs.image_config)),
        o.with_env(_env(inputs)),
        o.with_process_cwd(cwd),
        o.with_capabilities(caps),
    ]
    if config.tty:
        options.append(o.with_terminal)
    if sc.no_new_privs:
        options.append(o.with_no_new_privileges)
    resources = inputs.resources
    if resources is not None:
        adj = int(resources.oom_score_adj)
        options.append(o.with_oom_score_adj(max(adj, host.oom_score_adj) if inputs.restrict_oom_score_adj else adj))
    profile = lsm.apparmor_profile(sc, host.lsms)
    if profile is not None:
        options.append(o.with_apparmor_profile(profile))
    return options


def process_args(config: api_pb2.ContainerConfig, image_config: Mapping[str, Any]) -> list[str]:
    """CRI command replaces the image's Entrypoint, CRI args its Cmd; a CRI command alone drops the image's Cmd."""
    command, args = list(config.command), list(config.args)
    if not command:
        if not args:
            args = image_strings(image_config, "Cmd")
        entrypoint = image_strings(image_config, "Entrypoint")
        # [""] is how docker records a cleared entrypoint: it means none.
        if entrypoint != [""]:
            command = entrypoint
    if not command and not args:
        raise errdefs.InvalidArgument("no command specified: the request and the image give neither command nor args")
    return command + args


def capabilities(sc: api_pb2.LinuxContainerSecurityContext, host_caps: Sequence[str]) -> list[str]:
    """The bounding (= effective = permitted) set: the default set edited by add/drop; privileged gets all."""
    if sc.privileged:
        return list(host_caps)
    caps = list(DEFAULT_CAPS)
    if not sc.HasField("capabilities"):
        return caps
    add, drop = list(sc.capabilities.add_capabilities), list(sc.capabilities.drop_capabilities)
    # "ALL" first, so that individual entries still apply: add ALL + drop CHOWN is everything but CHOWN.
    if any(c.upper() == "ALL" for c in add):
        caps = list(host_caps)
    if any(c.upper() == "ALL" for c in drop):
        caps = []
    for name in (_cap_name(c) for c in add if c.upper() != "ALL"):
        if name not in caps:
            caps.append(name)
    dropped = {_cap_name(c) for c in drop if c.upper() != "ALL"}
    return [c for c in caps if c not in dropped]


def _env(inputs: SpecInputs) -> list[str]:
    env = [DEFAULT_PATH_ENV]
    if inputs.config.tty:
        env.append("TERM=xterm")
    hostname = inputs.hostname or inputs.sandbox_config.hostname or inputs.host.hostname
    env = _replace_or_append(env, [f"HOSTNAME={hostname}"])
    # Image and CRI variables go in one batch, as containerd does: a CRI variable the image also sets is
    # appended after the image's rather than replacing it, and runc lets the later one win.
    wanted = image_strings(inputs.image_config, "Env") + [f"{e.key}={e.value}" for e in inputs.config.envs]
    return _replace_or_append(env, wanted)


def _replace_or_append(defaults: list[str], overrides: list[str]) -> list[str]:
    # An override replaces a default of the same name in place; one without "=" unsets that default.
    results = list(defaults)
    index = {entry.split("=", 1)[0]: i for i, entry in enumerate(defaults)}
    for value in overrides:
        if "=" not in value:
            if value in index:
                results[index[value]] = ""
            continue
        name = value.split("=", 1)[0]
        if name in index:
            results[index[name]] = value
        else:
            results.append(value)
    return [entry for entry in results if entry]


def _cap_name(name: str) -> str:
    upper = name.upper()
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in KNOWN_CAPS:
        raise errdefs.InvalidArgument(f"unknown capability {name!r}")
    return full
