"""The lint configuration types CRI messages: a misspelt field is an error, a right one is not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

HANDLER = """
from cri.api.runtime.v1 import api_pb2


def container_of(request: api_pb2.StartContainerRequest) -> str:
    return request.{field}
"""


def test_only_a_misspelt_message_field_fails_lint(tmp_path: Path) -> None:
    # The probes live in the repository so the project's mypy configuration and packages apply; one run checks
    # both (mypy's cache from `make lint` keeps it short).
    fields = ("container_id", "container_idd")
    probes = {field: REPO / "cri" / f"_probe_{tmp_path.name}_{field}.py" for field in fields}
    try:
        for field, module in probes.items():
            module.write_text(HANDLER.format(field=field))
        result = subprocess.run([sys.executable, "-m", "mypy", *map(str, probes.values())], cwd=REPO,
                                capture_output=True, text=True, timeout=300)
    finally:
        for module in probes.values():
            module.unlink(missing_ok=True)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert errors, result.stdout
    assert all(probes["container_idd"].name in line for line in errors), result.stdout
    assert any('"StartContainerRequest" has no attribute "container_idd"' in line for line in errors), result.stdout
