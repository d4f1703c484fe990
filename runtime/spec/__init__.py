"""The OCI runtime spec of a CRI container, as containerd 1.6's CRI plugin builds it: a typed spec
(``model``) made from the default one by composable options (``options``, as containerd's SpecOpts), which
the modules named for each part decide from the request (``process``, ``mounts``, ``namespaces``,
``resources``, ``devices``, ``security``) and ``container`` puts in order. ``container_spec(SpecInputs(...))``
is the one entry point.

It reads the host only where containerd does: the devices named in the request (their major/minor), the
mount table (for propagation checks) and missing bind-mount sources (created as directories). What does not
change while the daemon runs (the runtime's capabilities, cgroup controllers, kernel, LSMs) is
``HostFacts``, probed once at start-up.

Differences from containerd that follow from having no pause container: the pod's namespaces are given as
paths (``PodNamespaces``), a namespace the pod shares with the host is left out of the spec instead of being
joined through the pause process, and the pod's sysctls go into every container's spec (runc applies them
inside the joined namespaces, so applying them again is harmless).
"""

from runtime.spec.container import container_spec
from runtime.spec.host import DEFAULT_CAPS, KNOWN_CAPS, HostFacts
from runtime.spec.inputs import SpecInputs
from runtime.spec.process import capabilities, process_args
from runtime.spec.resources import linux_resources

__all__ = ["DEFAULT_CAPS", "KNOWN_CAPS", "HostFacts", "SpecInputs", "capabilities", "container_spec",
           "linux_resources", "process_args"]
