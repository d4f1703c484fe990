"""The e2e fixtures read the pinned versions from script/setup/build-kube, the one place they are written."""

from __future__ import annotations

import re

from tests.support.kube_build import BUILD_SCRIPT, pinned_versions


def test_pins_are_read_from_the_build_script() -> None:
    kube, critest = pinned_versions()
    script = BUILD_SCRIPT.read_text()
    assert re.fullmatch(r"v1\.\d+\.\d+", kube) and re.fullmatch(r"v1\.\d+\.\d+", critest)
    assert f"KUBE_VERSION=${{KUBE_VERSION:-{kube}}}" in script
    assert f"CRITEST_VERSION=${{CRITEST_VERSION:-{critest}}}" in script
