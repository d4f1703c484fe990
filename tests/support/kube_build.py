"""The Kubernetes binaries the end-to-end tests drive, built by script/setup/build-kube into a cache by version.

Building kubelet and kube-apiserver takes tens of minutes on two cores, so a session that will run end-to-end
tests starts the build in the background as soon as collection is done (``start_background_build``), niced so
the tests running meanwhile keep the CPU, and the e2e fixtures wait for it (``wait_for_build``). The script
itself holds a lock while it builds, so sessions in other checkouts share one build and never see half a set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import tail

__all__ = [
    "BUILD_SCRIPT",
    "CACHE_ROOT",
    "Build",
    "KubeBinaries",
    "cached_binaries",
    "pinned_versions",
    "start_background_build",
    "wait_for_build",
]

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "script" / "setup" / "build-kube"
# The script's own default and override.
CACHE_ROOT = Path(os.environ.get("CRISHIM_CACHE", "/var/cache/crishim-tests"))
_PIN = re.compile(r"^(KUBE_VERSION|CRITEST_VERSION)=\$\{\1:-(v[0-9.]+)\}$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class KubeBinaries:
    version: str
    kubelet: Path
    kube_apiserver: Path
    kubectl: Path
    critest: Path
    kube_build_seconds: int  # as recorded by the build that made them, cached or not


@dataclass(slots=True)
class Build:
    """A build-kube run started by this session (None for process when everything was cached)."""

    process: subprocess.Popen[bytes] | None
    log: Path
    started: float


def pinned_versions() -> tuple[str, str]:
    """(kube, critest) versions, read from the build script so the pin lives in one place."""
    pins = dict(_PIN.findall(BUILD_SCRIPT.read_text()))
    return pins["KUBE_VERSION"], pins["CRITEST_VERSION"]


def cached_binaries() -> KubeBinaries | None:
    kube_version, critest_version = pinned_versions()
    kube, critest = CACHE_ROOT / "kube" / kube_version, CACHE_ROOT / "critest" / critest_version
    paths = (kube / "kubelet", kube / "kube-apiserver", kube / "kubectl", critest / "critest")
    if not all(p.is_file() for p in paths):
        return None
    seconds = (kube / "build-seconds").read_text().strip() if (kube / "build-seconds").is_file() else "0"
    return KubeBinaries(kube_version, *paths, kube_build_seconds=int(seconds or 0))


def _missing_tools() -> str | None:
    for tool in ("go", "curl", "flock", "nice"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed, so {BUILD_SCRIPT.name} cannot build kubelet and friends"
    return None


def _proxy_unreachable() -> str | None:
    proxy = subprocess.run(["go", "env", "GOPROXY"], capture_output=True, text=True).stdout.split(",")[0].strip()
    if proxy in ("", "off", "direct"):
        return f"GOPROXY is {proxy!r}, so kubelet and friends cannot be fetched"
    probe = subprocess.run(["curl", "-fsS", "-o", "/dev/null", "--max-time", "10",
                            f"{proxy}/k8s.io/kubernetes/@v/list"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"the Go module proxy {proxy} is unreachable: {probe.stderr.strip()}"


def start_background_build(log: Path) -> Build:
    """Start build-kube unless the pinned binaries are cached; never waits."""
    if cached_binaries() is not None or _missing_tools() is not None:
        return Build(None, log, time.monotonic())
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        # nice: the build is a background job; the tests that run meanwhile have timeouts and come first.
        # Only the sets the e2e tests run: `all` adds the binaries of kind's control-plane images.
        process = subprocess.Popen(["nice", "-n", "19", str(BUILD_SCRIPT), "critest", "kube"], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Build(process, log, time.monotonic())


def wait_for_build(build: Build | None, log: Path) -> tuple[KubeBinaries, float]:
    """The binaries, and how many seconds this call waited for them. Skips when they cannot be built here;
    fails when the build itself fails."""
    started = time.monotonic()
    binaries = cached_binaries()
    if binaries is not None:
        return binaries, 0.0
    missing = _missing_tools()
    if missing is not None:
        pytest.skip(missing)
    if build is None or build.process is None:
        build = start_background_build(log)
    assert build.process is not None
    code = build.process.wait()
    binaries = cached_binaries()
    if binaries is None:
        unreachable = _proxy_unreachable()
        if unreachable:
            pytest.skip(unreachable)
        pytest.fail(f"{BUILD_SCRIPT.name} exited with {code} and left no binaries; log {build.log}:\n"
                    f"{tail(build.log, 40)}")
    return binaries, time.monotonic() - started
