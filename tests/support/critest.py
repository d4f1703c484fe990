"""critest (cri-tools' CRI validation suite) run against one CRI socket, leaving the host as it was.

critest works on the host directly: it makes temporary folders (some with bind and tmpfs mounts on them) and,
for the HostIpc specs, System V shared memory segments with ``ipcmk`` that it never removes. So it runs with
TMPDIR in the run's own folder (whatever is left there, mounts included, goes afterwards) and with an ``ipcmk``
first in PATH that records the ids of the segments it creates, which are removed after the run.

Specs no runtime can pass on this host are skipped by name, each with its reason (``SKIPPED``); critest skips
others itself (AppArmor on a kernel without it, features a runtime does not report), saying why in the report.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.kube_build import CACHE_ROOT, pinned_versions
from tests.support.mounts import unmount_under
from tests.support.procs import run
from tests.support.tools import binary

VERSION = pinned_versions()[1]  # script/setup/build-kube's pin
RUN_TIMEOUT = 60 * 60


@dataclass(frozen=True)
class NamedSpec:
    pattern: str  # a regular expression over the spec's full name, as ginkgo's --skip takes it
    reason: str


SKIPPED = (
    NamedSpec(r"public image with digest should be pulled and removed",
              "pulls gcr.io/k8s-staging-cri-tools/test-image-digest by a fixed upstream digest; no local build "
              "can produce those bytes and the tests never reach a public registry"),
)


@dataclass(frozen=True)
class CritestRun:
    report: Path  # junit XML
    log: Path
    returncode: int
    seconds: float


def critest_binary() -> Path:
    path = CACHE_ROOT / "critest" / VERSION / "critest"
    if not os.access(path, os.X_OK):
        pytest.skip(f"critest {VERSION} is not built at {path} (script/setup/build-kube critest builds it)")
    return path


def run_critest(endpoint: Path, reports: Path, name: str, scratch: Path, *, focus: str = "") -> CritestRun:
    """Run the whole suite (or the specs matching focus) against the CRI socket at endpoint; the junit report
    and critest's output go to reports/<name>.xml and .log."""
    exe = critest_binary()
    reports.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    report, log = reports / f"{name}.xml", reports / f"{name}.log"
    config = scratch / "crictl.yaml"
    config.touch()  # critest reads /etc/crictl.yaml otherwise
    args = [str(exe), f"--runtime-endpoint=unix://{endpoint}", f"--image-endpoint=unix://{endpoint}",
            f"--config={config}", f"--ginkgo.junit-report={report}", "--ginkgo.no-color", "--ginkgo.v",
            "--ginkgo.skip=" + "|".join(s.pattern for s in SKIPPED)]
    if focus:
        args.append(f"--ginkgo.focus={focus}")
    started = time.monotonic()
    with _host_guard(scratch) as env, log.open("wb") as out:
        proc = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=RUN_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
    return CritestRun(report, log, proc.returncode, time.monotonic() - started)


def skip_reason(spec_name: str) -> str | None:
    return next((s.reason for s in SKIPPED if re.search(s.pattern, spec_name)), None)


@contextlib.contextmanager
def _host_guard(folder: Path) -> Iterator[dict[str, str]]:
    """critest's environment; on exit, its shm segments, temporary folders and their mounts are gone."""
    tmp, bindir, segments = folder / "tmp", folder / "bin", folder / "shm-segments"
    tmp.mkdir(parents=True, exist_ok=True)
    bindir.mkdir(exist_ok=True)
    _write_ipcmk_wrapper(bindir / "ipcmk", binary("ipcmk"), segments)
    env = {**os.environ, "TMPDIR": str(tmp), "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    try:
        yield env
    finally:
        _remove_segments(segments)
        unmount_under(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _write_ipcmk_wrapper(path: Path, real: str, ledger: Path) -> None:
    # ipcmk prints "Shared memory id: N"; keep a copy of every line so the segment can be removed later.
    path.write_text(f'#!/bin/sh\nout=$("{real}" "$@") || exit $?\necho "$out" >> "{ledger}"\necho "$out"\n')
    path.chmod(0o755)


def created_segments(ledger: Path) -> list[str]:
    if not ledger.is_file():
        return []
    return re.findall(r"Shared memory id: (\d+)", ledger.read_text())


def _remove_segments(ledger: Path) -> None:
    for segment in created_segments(ledger):
        run(binary("ipcrm"), "-m", segment, check=False)
