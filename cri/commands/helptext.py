"""Every ``crishim`` command's parser says what the command does and shows it used: ``add_command``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["add_command"]


def add_command(group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str,
                examples: Sequence[str], aliases: Sequence[str] = ()) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` starts with ``summary`` and ends with the example command lines."""
    epilog = "examples:\n" + "".join(f"  {line}\n" for line in examples)
    return group.add_parser(name, aliases=list(aliases), help=summary, description=summary, epilog=epilog,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
