"""The README lists exactly the Debian packages install-deps installs for `make run`, `make test` and the kind
targets."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def script_packages(array: str) -> list[str]:
    text = (REPO / "script" / "setup" / "packages").read_text()
    body = re.search(rf"^{array}=\((.*?)\)", text, flags=re.MULTILINE | re.DOTALL)
    assert body, f"{array} not found in script/setup/packages"
    return body.group(1).split()


def readme_packages(row: str) -> list[str]:
    line = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith(f"| {row} |"))
    debian = line.split("Debian's", 1)[1].split(";", 1)[0]
    return re.findall(r"`([a-z0-9.+-]+)`", debian)


def test_make_run_row_is_the_runtime_set() -> None:
    assert readme_packages("`make run`") == script_packages("RUNTIME_PACKAGES")


def test_make_test_row_is_the_test_set() -> None:
    assert readme_packages("`make test` adds") == script_packages("TEST_PACKAGES")


def test_kind_row_is_the_kind_set() -> None:
    assert readme_packages("`make kind` and `make test-kind` add") == script_packages("KIND_PACKAGES")
