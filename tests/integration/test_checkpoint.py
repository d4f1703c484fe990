"""CheckpointContainer says why it cannot be done here: CRIU's own error where CRIU cannot run (this VM's
vDSO layout stops it), that it is missing where it is not installed."""

from __future__ import annotations

import shutil
import subprocess

from tests.integration.test_bad_requests import refused
from tests.support.cri_env import CriEnv


def test_a_checkpoint_is_refused_with_the_reason(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("app"))
    proc = cri.crictl("checkpoint", f"--export={cri.workdir / 'checkpoint.tar'}", container_id, check=False)
    criu = shutil.which("criu")
    if criu is None:
        assert "criu is not installed" in refused(proc, "FailedPrecondition")
        return
    check = subprocess.run([criu, "check"], capture_output=True, text=True, check=False)
    if check.returncode == 0:
        assert "not implemented" in refused(proc, "Unimplemented")
        return
    first_error = next(line for line in check.stderr.splitlines() if "Error" in line)
    message = refused(proc, "FailedPrecondition")
    print(f"criu check on this host: {first_error}")
    assert "cannot run here" in message and first_error in message
    assert not (cri.workdir / "checkpoint.tar").exists()
    assert cri.state(container_id) == "CONTAINER_RUNNING"
