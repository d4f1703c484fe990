"""The README's first-run walkthrough, run as written (taken from the README, so the two cannot drift) against
a real daemon on a throw-away network; it must end with nothing left behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.support.cri_env import CriEnv
from tests.support.daemon import REPO, python_executable

SECTION = "## First run: an image, a pod, a container"
POD_LOGS = Path("/tmp/crishim-demo")


def section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:end if end != -1 else None]


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", section(), flags=re.MULTILINE | re.DOTALL)


def test_the_examples_shown_are_the_shipped_files() -> None:
    shown = [json.loads(block) for block in code_blocks("json")]
    shipped = [json.loads((REPO / "deploy" / "examples" / name).read_text()) for name in ("pod.json",
                                                                                        "container.json")]
    assert shown == shipped


def test_walkthrough_runs_as_written(cri: CriEnv, tmp_path: Path) -> None:
    script = code_blocks("sh")[0]
    crictl_config = tmp_path / "crictl.yaml"
    endpoint = f"unix://{cri.daemon.socket}"
    crictl_config.write_text(f"runtime-endpoint: {endpoint}\nimage-endpoint: {endpoint}\ntimeout: 10\n")
    env = {**os.environ, "CRI_CONFIG_FILE": str(crictl_config), "CRISHIM_ADDRESS": str(cri.daemon.socket),
           "PATH": f"{python_executable().parent}:{os.environ['PATH']}"}
    try:
        proc = subprocess.run(["bash", "-euxo", "pipefail", "-c", script], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(POD_LOGS, ignore_errors=True)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    out = proc.stdout
    assert "unpacking localhost/crishim-demo:1 (sha256:" in out, out
    assert "hello from crishim" in out, out
    assert "serving /www on port 80" in out, out
    assert cri.crictl("pods", "-q").stdout == "", "the walkthrough's last line removes its pod"
