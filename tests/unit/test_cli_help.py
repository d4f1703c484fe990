"""Every command's --help says what it does and shows it used."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cri.cli import build_parser


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:
                    continue  # an alias
                seen.add(id(sub))
                yield (*path, name)
                yield from commands(sub, (*path, name))


ALL = list(commands(build_parser()))


def help_of(path: tuple[str, ...]) -> str:
    proc = subprocess.run([sys.executable, "-m", "cri", *path, "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_every_command_is_listed() -> None:
    assert {"serve", "image", "run", "stop", "rm", "content", "snapshot", "plugin", "info", "check",
            "version"} <= {path[0] for path in ALL}
    assert ("image", "import") in ALL and ("image", "pull") in ALL


@pytest.mark.parametrize("path", [(), *ALL], ids=lambda path: " ".join(path) or "crishim")
def test_help_says_what_and_shows_an_example(path: tuple[str, ...]) -> None:
    text = help_of(path)
    usage, _, rest = text.partition("\n\n")
    assert usage.startswith(f"usage: crishim {' '.join(path)}".rstrip())
    summary = rest.split("\n\n")[0]
    assert len(summary.split()) >= 3, f"no summary of what it does:\n{text}"
    examples = text.split("\nexamples:\n", 1)[1].splitlines()
    assert examples and all("crishim " in line for line in examples if line.strip()), text
    assert any(f"crishim {' '.join(path)}" in line for line in examples), text
