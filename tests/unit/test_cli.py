from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cri import cli
from cri.commands import serve


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(argv)


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "serve" in capsys.readouterr().err


def test_serve_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('root = "/file"\nstate = "/from/file/state"\n[image]\nmax_concurrent_downloads = 7\n')
    args = parse("serve", "--config", str(path), "--root", "/from/flag", "--metrics-address", "")
    config = serve.load_config(args)
    assert config.root == Path("/from/flag")
    assert config.state == Path("/from/file/state")
    assert config.metrics_address == ""
    assert config.image.max_concurrent_downloads == 7


def test_serve_reports_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[image]\nsnapshoter = 'native'\n")
    assert cli.main(["serve", "--config", str(path)]) == 1
    assert "unknown key 'image.snapshoter'" in capsys.readouterr().err


def test_serve_reports_a_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--config", str(tmp_path / "absent.toml")]) == 1
    assert "cannot read" in capsys.readouterr().err
