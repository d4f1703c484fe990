"""Seeded kill -9 trials: the daemon is killed at a random moment of a pull or a removal, restarted, and
``crishim check`` must find nothing once the restart's collection has run; the image pulls again.

The suite runs a bounded number of trials; ``CRISHIM_CRASH_TRIALS`` and ``CRISHIM_CRASH_SEED`` run more.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.support.daemon import Crishim, python_executable
from tests.support.images import PushedImage
from tests.support.procs import wait_until
from tests.support.seed_image import SeedImage

TRIALS = int(os.environ.get("CRISHIM_CRASH_TRIALS", "8"))
SEED = int(os.environ.get("CRISHIM_CRASH_SEED", "20261201"))


def _check(daemon: Crishim) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python_executable()), "-m", "cri", "check", "--root", str(daemon.root),
                           "--state", str(daemon.state)], capture_output=True, text=True, timeout=120)


def _clean(daemon: Crishim) -> bool:
    return _check(daemon).returncode == 0


@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_9_during_pull_or_rmi_leaves_a_consistent_node(
    crishim_factory: Callable[..., Crishim], seed_image: SeedImage, test_images: dict[str, PushedImage],
    trial: int,
) -> None:
    rng = random.Random(SEED * 1000 + trial)
    daemon = crishim_factory()
    big, small = seed_image.pushed.ref, test_images["oci"].ref
    operation = rng.choice(["pull", "rmi"])
    if operation == "rmi":
        daemon.crictl("pull", big)
    delay = rng.uniform(0.0, 3.0)
    print(f"trial {trial}: kill -9 {delay:.2f}s into {operation} (seed {SEED})")
    victim = subprocess.Popen(daemon.crictl_client.command(operation, big), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(delay)
    daemon.kill()
    victim.wait(timeout=60)
    daemon.start()
    try:
        wait_until(lambda: _clean(daemon), timeout=60, what="crishim check to find nothing")
    except TimeoutError:
        pytest.fail(f"after kill -9 {delay:.2f}s into {operation}:\n{_check(daemon).stdout}")
    daemon.crictl("pull", small)
    daemon.crictl("pull", big)
    assert {small, big} <= {tag for image in daemon.images() for tag in image["repoTags"]}
