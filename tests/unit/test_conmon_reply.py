"""conmon's answer on the sync pipe, read whatever the pipe's number: a daemon watching a thousand containers
holds a pidfd for each, so the pipes it opens next are numbered past the 1024 that select() can wait on."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator

import pytest

from errdefs import DeadlineExceeded
from runtime.conmon import SyncReply, _read_reply

HIGH_FD = 1500


@pytest.fixture
def high_pipe() -> Iterator[tuple[int, int]]:
    """A pipe whose read end is numbered HIGH_FD: (read end, write end)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= HIGH_FD:
        pytest.skip(f"the hard limit on open files ({hard}) does not reach file number {HIGH_FD}")
    if soft != resource.RLIM_INFINITY and soft <= HIGH_FD:
        resource.setrlimit(resource.RLIMIT_NOFILE, (HIGH_FD + 1, hard))
    read_end, write_end = os.pipe()
    try:
        os.dup2(read_end, HIGH_FD)
        yield HIGH_FD, write_end
    finally:
        for fd in (read_end, write_end, HIGH_FD):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_container_pid_is_read_from_a_pipe_numbered_past_1024(high_pipe: tuple[int, int]) -> None:
    read_end, write_end = high_pipe
    os.write(write_end, b'{"data": 4242}\n')
    assert _read_reply(read_end, time.monotonic() + 10) == SyncReply(4242)


def test_a_silent_pipe_numbered_past_1024_runs_out_of_time(high_pipe: tuple[int, int]) -> None:
    read_end, _ = high_pipe
    with pytest.raises(DeadlineExceeded):
        _read_reply(read_end, time.monotonic() + 0.05)


def test_conmon_gone_without_an_answer_is_no_reply(high_pipe: tuple[int, int]) -> None:
    read_end, write_end = high_pipe
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, write_end)  # the pipe's only writer is gone: EOF
    os.close(null)
    assert _read_reply(read_end, time.monotonic() + 10) is None
