"""ExecSync at its output caps: the answer still fits in one gRPC message of kubelet's 16 MiB limit."""

from __future__ import annotations

import grpc

from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
from tests.support.cri_env import CriEnv

KUBELET_MAX_MESSAGE = 16 << 20


def test_exec_sync_output_at_the_caps_is_truncated_to_fit_one_message(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("chatty"))
    cri.wait_state(container_id, "CONTAINER_RUNNING")
    # Both streams past their 16 MiB caps.
    command = ["sh", "-c", "head -c 17000000 /dev/zero; head -c 17000000 /dev/zero >&2; exit 7"]
    options = [("grpc.max_receive_message_length", KUBELET_MAX_MESSAGE)]
    with grpc.insecure_channel(f"unix://{cri.daemon.socket}", options=options) as channel:
        answer = api_pb2_grpc.RuntimeServiceStub(channel).ExecSync(
            api_pb2.ExecSyncRequest(container_id=container_id, cmd=command, timeout=60), timeout=120)
    assert answer.exit_code == 7
    assert answer.ByteSize() <= KUBELET_MAX_MESSAGE
    # Truncated, not dropped: stdout keeps at least half the message, stderr what is left.
    assert len(answer.stdout) >= 7 << 20 and set(answer.stdout) == {0}
    assert len(answer.stdout) + len(answer.stderr) >= 15 << 20
