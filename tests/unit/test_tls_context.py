"""One TLS context per set of files, built again when a file changes."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from errdefs import InvalidArgument
from store.remote.tls import tls_context
from tests.support.tls import make_ca


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ca(tmp_path_factory.mktemp("ca")).ca


def test_pulls_share_a_context(ca_files: Path) -> None:
    assert tls_context((str(ca_files),), None, True) is tls_context((str(ca_files),), None, True)
    assert tls_context((), None, True) is tls_context((), None, True)


def test_a_changed_file_gives_a_new_context(ca_files: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ca.pem"
    copy.write_bytes(ca_files.read_bytes())
    before = tls_context((str(copy),), None, True)
    os.utime(copy, ns=(1, 1))
    assert tls_context((str(copy),), None, True) is not before


def test_skip_verify_checks_nothing() -> None:
    context = tls_context((), None, False)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname


def test_missing_files_are_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no-such.pem"):
        tls_context((str(tmp_path / "no-such.pem"),), None, True)
