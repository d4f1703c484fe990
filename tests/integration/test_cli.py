"""crishim's own client commands print what Debian's ctr prints for the same daemon."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.daemon import Crishim, python_executable
from tests.support.images import PushedImage
from tests.support.tools import binary


def crishim_cli(daemon: Crishim, *args: str) -> str:
    proc = subprocess.run([str(python_executable()), "-m", "cri", "-a", str(daemon.socket), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def ctr(daemon: Crishim, *args: str) -> str:
    proc = subprocess.run([binary("ctr"), "-a", str(daemon.socket), "-n", "k8s.io", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def content_rows(text: str) -> list[tuple[str, str, frozenset[str]]]:
    """DIGEST, SIZE and the set of LABELS: AGE may tick between two calls, and ctr prints labels in Go map order."""
    rows = []
    for line in text.splitlines():
        digest, size, _age, labels = re.split(r"\t+", line)
        rows.append((digest, size, frozenset(labels.split(","))))
    return rows


@pytest.fixture
def pulled(crishim: Crishim, test_images: dict[str, PushedImage]) -> Crishim:
    for name in ("oci", "multiarch"):
        crishim.crictl("pull", test_images[name].ref)
    return crishim


@pytest.mark.parametrize("command", [["image", "ls"], ["snapshot", "ls"], ["plugin", "ls"]])
def test_listings_equal_ctr(pulled: Crishim, command: list[str]) -> None:
    assert crishim_cli(pulled, *command) == ctr(pulled, *command)


def test_content_ls_equals_ctr(pulled: Crishim) -> None:
    assert content_rows(crishim_cli(pulled, "content", "ls")) == content_rows(ctr(pulled, "content", "ls"))


def test_pull_shows_each_descriptor_then_rm(crishim: Crishim, test_images: dict[str, PushedImage]) -> None:
    image = test_images["multiarch"]
    out = crishim_cli(crishim, "image", "pull", image.ref)
    # Not a terminal: plain lines as downloads start and end, then the table.
    phase = re.compile(r"^\S+: (downloading .+|unpacking|done)$")
    phases = [line for line in out.splitlines() if phase.match(line)]
    assert all(line.split(":")[0] in ("layer-sha256", "config-sha256", "manifest-sha256", "index-sha256")
               for line in phases), phases
    lines = [line for line in out.splitlines() if line not in phases]
    assert re.match(rf"^{re.escape(image.ref)}:\s+resolved\s+\|\+{{40}}\|", lines[0]), out
    kinds = [line.split("-sha256:")[0] for line in lines[1:] if "-sha256:" in line]
    assert kinds[:3] == ["index", "manifest", "config"] and set(kinds[3:]) == {"layer"}, out
    assert f"index-{image.digest}:" in out and f"config-{image.config_digest}:" in out
    assert all("done" in line for line in lines[1 : 1 + len(kinds)])
    assert any(line.startswith("elapsed: ") for line in lines)
    assert f"unpacking linux/amd64 {image.digest}..." in out
    assert image.ref in crishim_cli(crishim, "image", "ls", "-q").split()
    crishim_cli(crishim, "image", "rm", image.ref)
    assert image.ref not in crishim_cli(crishim, "image", "ls", "-q").split()


def test_version_names_both_sides(crishim: Crishim) -> None:
    out = crishim_cli(crishim, "version")
    assert out.startswith("Client:\n  Version:  ") and "\nServer:\n  Version:  " in out
    assert out.count("\n  Revision: ") == 2, out


def test_info_shows_what_the_daemon_runs_with(crishim: Crishim) -> None:
    info = json.loads(crishim_cli(crishim, "info"))
    shown = crishim.crictl_json("info")
    # The parts crictl info shows come from the same Status call.
    assert info["status"] == shown["status"]
    assert info["config"] == shown["config"] and info["lastCNILoadStatus"] == shown["lastCNILoadStatus"]
    assert info["config"]["root"] == str(crishim.root) and info["config"]["address"] == str(crishim.socket)
    conditions = {c["type"]: c for c in info["status"]["conditions"]}
    assert conditions["RuntimeReady"]["status"] is True and "NetworkReady" in conditions
    assert info["version"]["version"] == crishim_cli(crishim, "version").split("Server:\n  Version:  ")[1].split()[0]
    plugins = {(p["type"], p["id"]): p for p in info["plugins"]}
    assert plugins[("io.containerd.snapshotter.v1", "overlayfs")]["status"] == "ok"
    assert all(p["status"] == "ok" or p["reason"] for p in info["plugins"])


def test_no_daemon_is_one_line_naming_the_socket(tmp_path: Path) -> None:
    proc = subprocess.run([str(python_executable()), "-m", "cri", "-a", str(tmp_path / "none.sock"), "info"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("crishim: "), proc.stderr
