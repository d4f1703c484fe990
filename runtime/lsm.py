"""AppArmor and SELinux options of pods and containers: applied where the host can, refused where it cannot.

A security option crishim drops would leave a workload less confined than its author asked, so none is
dropped: an AppArmor profile is set in the spec when the host runs AppArmor and refused when it does not;
SELinux labels are refused (crishim does not label files, so a process label alone would be half the
job). ``Unconfined`` is always honoured, and the runtime's default is no profile on a host without AppArmor,
as containerd's is. The host is probed once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import errdefs
from cri.api.runtime.v1 import api_pb2

__all__ = ["HostLSMs", "apparmor_profile", "check_pod_apparmor", "check_selinux", "probe"]

_PROFILE = api_pb2.SecurityProfile.ProfileType
_LOCALHOST_PREFIX = "localhost/"
_RUNTIME_DEFAULT = "runtime/default"
_UNCONFINED = "unconfined"


@dataclass(frozen=True, slots=True)
class HostLSMs:
    apparmor: bool = False
    selinux: bool = False


@functools.cache
def probe() -> HostLSMs:
    try:
        apparmor = Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        apparmor = False
    return HostLSMs(apparmor=apparmor, selinux=Path("/sys/fs/selinux/enforce").exists())


def apparmor_profile(sc: api_pb2.LinuxContainerSecurityContext, host: HostLSMs) -> str | None:
    """The AppArmor profile for a container's process, None for none; FailedPrecondition if it cannot be had."""
    profile = sc.apparmor if sc.HasField("apparmor") else None
    return _resolve(_requested(profile, sc.apparmor_profile), host)


def check_pod_apparmor(sc: api_pb2.LinuxSandboxSecurityContext) -> None:
    """A pod's profile would confine its sandbox process; crishim runs none, but refuses what it could not apply."""
    _resolve(_requested(sc.apparmor if sc.HasField("apparmor") else None, ""), probe())


def _resolve(name: str, host: HostLSMs) -> str | None:
    if name in ("", _RUNTIME_DEFAULT):
        if host.apparmor:
            raise errdefs.FailedPrecondition("crishim has no runtime default AppArmor profile: name a "
                                             "localhost profile, or Unconfined")
        return None  # the runtime's default on a host without AppArmor is no profile, as containerd's
    if name == _UNCONFINED:
        return None
    if not host.apparmor:
        raise errdefs.FailedPrecondition(f"AppArmor profile {name!r} was asked for, but AppArmor is not "
                                         "enabled on this node")
    return name


def check_selinux(options: api_pb2.SELinuxOption, what: str) -> None:
    """Refuse SELinux labels: on a host without SELinux they mean nothing, and crishim applies none."""
    if not (options.user or options.role or options.type or options.level):
        return
    host = probe()
    if not host.selinux:
        raise errdefs.FailedPrecondition(f"{what} asks for SELinux options, but SELinux is not enabled on "
                                         "this node")
    raise errdefs.Unimplemented(f"{what} asks for SELinux options; crishim does not apply SELinux labels")


def _requested(profile: api_pb2.SecurityProfile | None, legacy: str) -> str:
    """The profile asked for: the ``apparmor`` field, else the deprecated ``apparmor_profile`` string."""
    if profile is not None:
        if profile.profile_type == _PROFILE.Unconfined:
            return _UNCONFINED
        if profile.profile_type == _PROFILE.Localhost:
            name = profile.localhost_ref.removeprefix(_LOCALHOST_PREFIX)
            if not name:
                raise errdefs.InvalidArgument("a Localhost AppArmor profile needs localhost_ref")
            return name
        return _RUNTIME_DEFAULT
    if legacy in ("", _RUNTIME_DEFAULT, _UNCONFINED):
        return legacy
    if legacy.startswith(_LOCALHOST_PREFIX) and legacy != _LOCALHOST_PREFIX:
        return legacy.removeprefix(_LOCALHOST_PREFIX)
    raise errdefs.InvalidArgument(f"invalid AppArmor profile {legacy!r}: want runtime/default, unconfined or "
                                  "localhost/<name>")
