import signal

import pytest

from cri.api.runtime.v1 import api_pb2
from errdefs import InvalidArgument
from runtime.containers import _log_path, _signal


@pytest.mark.parametrize(("name", "number"), [
    ("SIGTERM", signal.SIGTERM), ("TERM", signal.SIGTERM), ("15", 15), ("sigquit", signal.SIGQUIT),
    ("SIGRTMIN+3", signal.SIGRTMIN + 3), ("RTMAX-1", signal.SIGRTMAX - 1),
])
def test_stop_signals_as_images_name_them(name: str, number: int) -> None:
    assert _signal(name) == number


@pytest.mark.parametrize("name", ["SIGNOPE", "RTMIN+99", ""])
def test_unknown_stop_signal(name: str) -> None:
    with pytest.raises(InvalidArgument):
        _signal(name)


def pod(log_directory: str) -> api_pb2.PodSandboxConfig:
    return api_pb2.PodSandboxConfig(log_directory=log_directory)


def test_log_path_stays_in_the_pod_directory() -> None:
    config = api_pb2.ContainerConfig(log_path="app/0.log")
    assert str(_log_path(pod("/var/log/pods/p"), config)) == "/var/log/pods/p/app/0.log"
    # No log named by the container or by its pod: no log at all, as containerd.
    assert _log_path(pod("/var/log/pods/p"), api_pb2.ContainerConfig()) is None
    assert _log_path(pod(""), config) is None
    for bad in ("/etc/shadow", "../../etc/cron.d/x", "a/../../b"):
        with pytest.raises(InvalidArgument):
            _log_path(pod("/var/log/pods/p"), api_pb2.ContainerConfig(log_path=bad))
    with pytest.raises(InvalidArgument):
        _log_path(pod("relative"), config)
