"""``crishim serve``: run the daemon; flags override the configuration file."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cri import config
from cri.commands.helptext import add_command
from cri.malloc_arenas import limit_malloc_arenas
from errdefs import PermissionDenied

HELP = "run the daemon: the CRI and containerd's API on a unix socket, until SIGTERM"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(subparsers, "serve", HELP, [
        "crishim serve                          # /etc/crishim/config.toml if there, on /run/crishim/crishim.sock",
        "crishim serve --log-level debug --metrics-address 127.0.0.1:1338"])
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"TOML configuration file (default: {config.DEFAULT_CONFIG_FILE}, if it exists)",
    )
    parser.add_argument("--root", metavar="DIR", help="persistent data (default: /var/lib/crishim)")
    parser.add_argument("--state", metavar="DIR", help="state lost at reboot (default: /run/crishim)")
    parser.add_argument("--address", metavar="SOCKET", help="unix socket (default: <state>/crishim.sock)")
    parser.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help='serve Prometheus metrics at /metrics here; "" disables (default: 127.0.0.1:1338)',
    )
    parser.add_argument("--cni-conf-dir", metavar="DIR", help="CNI network configs (default: /etc/cni/net.d)")
    parser.add_argument("--cni-bin-dir", metavar="DIRS",
                        help="CNI plugins, colon-separated (default: /usr/lib/cni:/opt/cni/bin)")
    parser.add_argument("--log-level", metavar="LEVEL", help="debug, info, warning, error (default: info)")
    parser.set_defaults(run=run)


NOT_ROOT = ("the daemon must run as root: it mounts image layers with overlayfs, makes network namespaces "
            "for pods and runs containers with runc (try: sudo crishim serve)")


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise PermissionDenied(NOT_ROOT)
    limit_malloc_arenas()
    # Imported here: the daemon pulls in the whole store, which client commands never need.
    from cri import daemon

    return daemon.serve(load_config(args))


def load_config(args: argparse.Namespace) -> config.Config:
    """The configuration file named by ``--config`` (or the default one), then the flags."""
    path: Path | None = args.config
    if path is None and config.DEFAULT_CONFIG_FILE.exists():
        path = config.DEFAULT_CONFIG_FILE
    overrides = {
        "root": args.root,
        "state": args.state,
        "address": args.address,
        "metrics_address": args.metrics_address,
        "log_level": args.log_level,
        "cni_conf_dir": args.cni_conf_dir,
        "cni_bin_dir": args.cni_bin_dir,
    }
    return config.load(path, overrides)
