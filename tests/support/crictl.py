"""crictl pointed at one CRI socket, never reading /etc/crictl.yaml."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.procs import run
from tests.support.tools import binary


@dataclass(frozen=True)
class Crictl:
    socket: Path
    config: Path  # an empty file: crictl otherwise merges /etc/crictl.yaml into its settings
    timeout: str = "60s"

    def command(self, *args: str) -> list[str]:
        """The argv, for callers that drive crictl themselves (a terminal, a stdin pipe)."""
        endpoint = f"unix://{self.socket}"
        return [binary("crictl"), "--config", str(self.config), "--runtime-endpoint", endpoint,
                "--image-endpoint", endpoint, "--timeout", self.timeout, *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(*self.command(*args), check=check, timeout=180)

    def json(self, command: str, *args: str) -> Any:
        # urfave/cli stops parsing flags at the first positional argument, so -o goes before them.
        return json.loads(self.run(command, "-o", "json", *args).stdout)

    def images(self) -> list[dict[str, Any]]:
        images: list[dict[str, Any]] = self.json("images").get("images") or []
        return sorted(images, key=lambda image: str(image["id"]))

    def pull(self, ref: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("pull", *extra, ref)


def empty_config(directory: Path) -> Path:
    path = directory / "crictl.yaml"
    path.touch()
    return path
