"""script/setup/configure-node, as `make run` runs it, on a node's /etc and /usr/local/bin: on a fresh node it
writes crishim's config, a CNI network, /etc/crictl.yaml and the crishim link; what is there already stays.

Each run happens in a mount namespace of its own with empty tmpfs over /etc and /usr/local/bin, so the host's
files are neither read nor changed."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.daemon import REPO
from tests.support.tools import binary, require_root

SCRIPT = REPO / "script" / "setup" / "configure-node"


def on_fresh_node(before: str, after: str) -> subprocess.CompletedProcess[str]:
    """``before`` (shell) prepares the node, configure-node runs, ``after`` prints what the test checks."""
    require_root("mounting over /etc in a mount namespace")
    script = f"""set -eu
mount --make-rprivate /
mount -t tmpfs tmpfs /etc
mount -t tmpfs tmpfs /usr/local/bin
{before}
{SCRIPT}
{after}"""
    proc = subprocess.run([binary("unshare"), "-m", "bash", "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_a_fresh_node_gets_everything() -> None:
    proc = on_fresh_node("", "cat /etc/crictl.yaml; readlink /usr/local/bin/crishim; ls /etc/cni/net.d; "
                             "cmp /etc/crishim/config.toml deploy/config.toml && echo config-as-shipped")
    lines = proc.stdout.splitlines()
    assert lines[:3] == ["runtime-endpoint: unix:///run/crishim/crishim.sock",
                         "image-endpoint: unix:///run/crishim/crishim.sock", "timeout: 10"]
    assert lines[3] == str(REPO / ".venv" / "bin" / "crishim")
    assert lines[4:] == ["10-crishim-bridge.conflist", "config-as-shipped"]


@pytest.mark.parametrize(("before", "after", "expected"), [
    ("echo 'runtime-endpoint: unix:///run/containerd/containerd.sock' > /etc/crictl.yaml", "cat /etc/crictl.yaml",
     "runtime-endpoint: unix:///run/containerd/containerd.sock\n"),
    ("mkdir -p /etc/crishim && echo 'root = \"/srv/crishim\"' > /etc/crishim/config.toml",
     "cat /etc/crishim/config.toml", 'root = "/srv/crishim"\n'),
    ("mkdir -p /etc/cni/net.d && echo '{}' > /etc/cni/net.d/05-mine.conflist", "ls /etc/cni/net.d",
     "05-mine.conflist\n"),
    ("printf '#!/bin/sh\\n' > /usr/local/bin/crishim", "cat /usr/local/bin/crishim", "#!/bin/sh\n"),
], ids=["crictl.yaml", "config.toml", "cni", "crishim-program"])
def test_what_is_there_stays(before: str, after: str, expected: str) -> None:
    assert on_fresh_node(before, after).stdout == expected


def test_a_link_an_earlier_run_made_is_renewed() -> None:
    proc = on_fresh_node("ln -s /elsewhere/.venv/bin/crishim /usr/local/bin/crishim",
                         "readlink /usr/local/bin/crishim")
    assert proc.stdout == f"{REPO / '.venv' / 'bin' / 'crishim'}\n"
