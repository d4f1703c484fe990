"""The configuration reference and the files that repeat it say what cri/config.py reads."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from cri import cli, config, config_reference

REPO = Path(__file__).resolve().parents[2]
REGENERATE = "out of date: run script/genconfig.py"
# Defaults the help shows by what they mean.
_SHOWN_AS = {"address": "<state>/crishim.sock"}


def test_every_key_says_what_it_does() -> None:
    keys = [s.key for s in config_reference.settings()]
    assert {"root", "image.pull_progress_timeout", "registry.auths.HOST.password", "runtimes.NAME.binary",
            "runtimes.NAME.features.user_namespaces"} <= set(keys)
    assert len(keys) == len(set(keys))
    undocumented = [s.key for s in config_reference.settings() if len(s.doc) < 10]
    assert not undocumented


@pytest.mark.parametrize(("path", "render"), [("docs/configuration.md", config_reference.markdown),
                                              ("deploy/config.toml", config_reference.toml)])
def test_generated_files_are_current(path: str, render: object) -> None:
    assert callable(render)
    assert (REPO / path).read_text() == render(), f"{path} is {REGENERATE}"


def test_the_example_file_loads_as_the_defaults(tmp_path: Path) -> None:
    written = tmp_path / "config.toml"
    written.write_text(config_reference.toml())
    assert config.load(written) == config.Config()


def test_a_key_without_a_docstring_is_named() -> None:
    from dataclasses import dataclass

    @dataclass
    class Settings:
        documented: int = 1
        """Says what it does."""
        silent: int = 2

    with pytest.raises(KeyError, match="silent"):
        list(config_reference._walk(Settings, ""))


def test_readme_names_only_keys_the_daemon_reads() -> None:
    readme = (REPO / "README.md").read_text()
    assert "docs/configuration.md" in readme
    known = {s.key for s in config_reference.settings()}
    tables = {s.key for s in config_reference.settings() if s.table}
    named = set(re.findall(r"`\[([a-z_.]+)(?:\.\"[^\"]*\")?\]`", readme))  # `[stream]`, `[registry.auths."h"]`
    assert named, "the README names no config table"
    assert named <= tables, f"unknown tables in README: {named - tables}"
    dotted = set(re.findall(r"`((?:image|stream|registry)\.[a-z_]+)`", readme))  # `image.pull_progress_timeout`
    assert dotted <= known, f"unknown keys in README: {dotted - known}"


def test_serve_flags_show_the_defaults_of_their_keys() -> None:
    serve = _subparser(cli.build_parser(), "serve")
    defaults = config.Config()
    checked = []
    for action in serve._actions:
        key = action.dest
        match = re.search(r"\(default: ([^),]+)", action.help or "")
        if match is None or not hasattr(defaults, key):
            continue
        shown = _SHOWN_AS.get(key, str(getattr(defaults, key)))
        assert match.group(1) == shown, f"--{key.replace('_', '-')}: {action.help}"
        checked.append(key)
    assert {"root", "state", "metrics_address", "cni_conf_dir", "cni_bin_dir", "log_level"} <= set(checked)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise AssertionError(f"no {name} subcommand")
