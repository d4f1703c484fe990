"""Spec results from a ginkgo junit report (critest's ``--ginkgo.junit-report``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass(frozen=True)
class SpecResult:
    name: str  # ginkgo's full text without the "[It] " prefix, e.g. "[sig-node] Container ... [Conformance]"
    status: str  # PASSED, FAILED or SKIPPED
    message: str  # the failure or skip message, "" for a pass
    seconds: float


def read_report(path: Path) -> list[SpecResult]:
    """Every spec in the report; suite-level nodes (BeforeSuite, AfterSuite) count as specs when they fail."""
    results = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = str(case.get("name", ""))
        status = _status(case)
        if name.startswith(("[BeforeSuite]", "[AfterSuite]", "[SynchronizedBeforeSuite]",
                            "[SynchronizedAfterSuite]", "[ReportAfterSuite]")) and status != FAILED:
            continue
        results.append(SpecResult(_spec_name(name), status, _message(case), float(case.get("time", "0"))))
    return results


def _spec_name(name: str) -> str:
    return name.removeprefix("[It] ").strip()


def _status(case: ET.Element) -> str:
    if case.find("failure") is not None or case.find("error") is not None:
        return FAILED
    if case.find("skipped") is not None:
        return SKIPPED
    return PASSED


def _message(case: ET.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        node = case.find(tag)
        if node is not None:
            return str(node.get("message") or node.text or "").strip()
    return ""
