"""`ctr plugin ls` of a containerd 1.6 with no plugin disabled.

The oracle fixture disables the snapshotters this machine cannot run (aufs, btrfs, devmapper, zfs) to keep its
log readable, so its plugin list lacks their rows; the seed's `ctr plugin ls | grep snapshot` shows them with
their status. This starts a second containerd briefly, on its own root, state and socket, with every plugin
left as shipped (CRI aside, which has nothing to do with snapshots), and returns what ctr prints.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.mounts import unmount_under
from tests.support.procs import run, spawn, stop_process, tail, wait_until
from tests.support.tools import binary


def plugin_ls_of_default_containerd(workdir: Path) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    socket = workdir / "state" / "containerd.sock"
    q = json.dumps  # TOML basic strings accept JSON string escapes
    config = workdir / "config.toml"
    config.write_text(f"""version = 2
root = {q(str(workdir / "root"))}
state = {q(str(workdir / "state"))}
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = {q(str(socket))}

[ttrpc]
  address = {q(str(socket) + ".ttrpc")}

[plugins."io.containerd.internal.v1.opt"]
  path = {q(str(workdir / "opt"))}
""")
    log = workdir / "containerd.log"
    process = spawn([binary("containerd"), "--config", config], log)
    ctr = binary("ctr")
    try:
        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"containerd exited with {process.returncode}:\n{tail(log)}")
            return socket.exists() and run(ctr, "-a", socket, "version", check=False).returncode == 0

        wait_until(answers, timeout=30, what="the default containerd's socket")
        return run(ctr, "-a", socket, "plugin", "ls").stdout
    finally:
        stop_process(process)
        unmount_under(workdir)
