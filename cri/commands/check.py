"""``crishim check [--repair]``: a consistency check of the node's root and state (see cri.node_check)."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from cri.commands.helptext import add_command
from cri.config import Config
from errdefs import FailedPrecondition

HELP = "check the node's store and runtime state for inconsistencies (exit 1 on a finding)"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(subparsers, "check", HELP, [
        "crishim check                 # list what is inconsistent; exit 1 when something is",
        "crishim check --repair        # with the daemon stopped: fix what is safe to fix"])
    defaults = Config()
    parser.add_argument("--root", type=Path, default=defaults.root, help="the daemon's root folder")
    parser.add_argument("--state", type=Path, default=defaults.state, help="the daemon's state folder")
    parser.add_argument("--repair", action="store_true",
                        help="fix what is safe to fix (needs the daemon stopped)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cri.node_check import check_node, repair

    root, state = args.root.resolve(), args.state.resolve()
    findings = check_node(root, state)
    if args.repair and findings:
        if _daemon_answers(state / "crishim.sock"):
            raise FailedPrecondition(f"a daemon serves on {state / 'crishim.sock'}: stop it before --repair")
        repaired = len(findings)
        findings = repair(root, findings)
        print(f"repaired {repaired - len(findings)} finding(s)", file=sys.stderr)
        findings = check_node(root, state)
    for finding in findings:
        print(finding)
    return 1 if findings else 0


def _daemon_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
