"""The host facts a container's spec is built from are probed once, when the daemon builds its parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.spec import HostFacts
from tests.support.images import PushedImage
from tests.support.node import start_node
from tests.support.tools import require_root

SLEEP = ["sh", "-c", "trap 'exit 0' TERM; while true; do busybox sleep 1000 & wait $!; done"]


def test_creating_containers_probes_the_host_no_more(tmp_path: Path, test_images: dict[str, PushedImage],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    require_root("conmon, runc and overlay mounts")
    probes: list[HostFacts] = []
    real_probe = HostFacts.probe

    def counted() -> HostFacts:
        probes.append(real_probe())
        return probes[-1]

    monkeypatch.setattr(HostFacts, "probe", counted)
    node = start_node(tmp_path)
    try:
        assert len(probes) == 1
        image = test_images["oci"].ref
        node.pull(image)
        pod_id = node.run_pod()
        first, second = node.create(pod_id, image, SLEEP), node.create(pod_id, image, SLEEP)
        node.runtime.containers.start(first)
        assert {c.id for c in node.runtime.containers.all()} == {first, second}
        assert len(probes) == 1
    finally:
        node.close()
