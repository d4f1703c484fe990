"""docs/conformance.md's generator, on junit reports written the way ginkgo writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.conformance_report import main, render
from tests.support.junit import FAILED, PASSED, SKIPPED, read_report

CASES = {
    "crishim": """
  <testcase name="[BeforeSuite]" classname="CRI validation" status="passed" time="0.1"></testcase>
  <testcase name="[It] [k8s.io] PodSandbox runtime should support running PodSandbox [Conformance]" status="passed"
            time="0.5"></testcase>
  <testcase name="[It] [k8s.io] Streaming runtime should support attach [Conformance]" status="failed" time="0.4">
    <failure message="failed to attach in container &quot;abc&quot;&#xA;Unexpected error" type="failed">x</failure>
  </testcase>
  <testcase name="[It] [k8s.io] Container runtime should start a container" status="failed" time="0.4">
    <failure message="failed to start container 0123abcd-0000-4000-8000-0123456789ab: nope" type="failed"/>
  </testcase>
  <testcase name="[It] [k8s.io] AppArmor runtime should enforce a profile | with a bar" status="skipped" time="0">
    <skipped message="skipped - AppArmor is disabled on this host"></skipped>
  </testcase>
  <testcase name="[It] [k8s.io] Image Manager public image with digest should be pulled and removed [Conformance]"
            status="skipped" time="0"><skipped message="skipped"></skipped></testcase>
""",
    "containerd": """
  <testcase name="[It] [k8s.io] PodSandbox runtime should support running PodSandbox [Conformance]" status="failed"
            time="0.5"><failure message="Timed out after 60.001s." type="failed"></failure></testcase>
  <testcase name="[It] [k8s.io] Idempotence StopContainer should not return an error if not found" status="failed">
    <failure type="failed"
             message="Unexpected error:&#xA;  &lt;*status.Error&gt;: &#xA;  rpc error: code = NotFound desc = gone&#xA;"
             ></failure></testcase>
  <testcase name="[It] [k8s.io] Streaming runtime should support attach [Conformance]" status="passed"
            time="0.4"></testcase>
  <testcase name="[It] [k8s.io] Image benchmark about listing Image" status="skipped" time="0">
    <skipped message="skipped"></skipped></testcase>
""",
}


def _write(folder: Path, name: str, cases: str) -> Path:
    path = folder / f"{name}.xml"
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites><testsuite name="CRI validation">'
                    f"{cases}</testsuite></testsuites>\n")
    return path


def test_reads_statuses_and_messages_and_leaves_out_passing_suite_nodes(tmp_path: Path) -> None:
    specs = read_report(_write(tmp_path, "crishim", CASES["crishim"]))
    assert [s.status for s in specs] == [PASSED, FAILED, FAILED, SKIPPED, SKIPPED]
    assert specs[0].name == "[k8s.io] PodSandbox runtime should support running PodSandbox [Conformance]"
    assert specs[1].message.startswith('failed to attach in container "abc"\n')


def test_report_has_both_runtimes_spec_by_spec_with_every_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 ) -> None:
    for name, cases in CASES.items():
        _write(tmp_path, name, cases)
    assert main([str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "| crishim | 1 | 2 | 2 | 5 |" in text
    assert "| containerd 1.6 | 1 | 2 | 1 | 4 |" in text
    assert "| PodSandbox runtime should support running PodSandbox [Conformance] | pass | **FAIL** |" in text
    assert "| AppArmor runtime should enforce a profile \\| with a bar | skip | — |" in text
    assert "(crishim): AppArmor is disabled on this host" in text
    assert "public image with digest should be pulled and removed [Conformance] (crishim): pulls " in text
    assert "Image benchmark about listing Image (containerd 1.6): a benchmark" in text
    assert 'Streaming runtime should support attach [Conformance] (crishim): failed to attach in container "abc"' \
        in text
    assert "0123abcd-" not in text and "failed to start container <id>: nope" in text
    assert "(containerd 1.6): Timed out after 60.001s." in text
    assert "not found (containerd 1.6): Unexpected error: rpc error: code = NotFound desc = gone" in text


def test_a_skip_without_a_reason_is_an_error(tmp_path: Path) -> None:
    cases = '<testcase name="[It] [k8s.io] Mystery spec" status="skipped"><skipped message="skipped"/></testcase>'
    specs = read_report(_write(tmp_path, "crishim", cases))
    with pytest.raises(ValueError, match="Mystery spec"):
        render([specs, []])
