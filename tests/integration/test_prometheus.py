"""A real Prometheus scrapes crishim with deploy/prometheus.yml while crictl pulls images and runs containers;
PromQL through its HTTP API finds the series with the values those calls must have made. The shipped alerting
rules load and evaluate there without error, and every query of the shipped Grafana dashboard returns data;
a daemon restart shows as one.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import cri as crishim
from cri.containerd.version import revision
from tests.support.content import blob_dir
from tests.support.cri_env import CriEnv
from tests.support.images import PushedImage
from tests.support.prometheus import DEPLOY, Prometheus, start_prometheus
from tests.support.registry import Registry

# Grafana's variables as it would fill them in for every node and a few scrape intervals.
DASHBOARD_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*"}


@pytest.fixture
def prometheus(cri: CriEnv, tmp_path: Path) -> Iterator[Prometheus]:
    server = start_prometheus(tmp_path / "prometheus", f"127.0.0.1:{cri.daemon.metrics_port}")
    try:
        yield server
    finally:
        server.stop()


def test_prometheus_sees_what_crictl_did(cri: CriEnv, prometheus: Prometheus, registry: Registry,
                                         test_images: dict[str, PushedImage]) -> None:
    started = time.monotonic()
    before = prometheus.now()  # the scrapes so far saw the daemon as the fixture left it

    def since(expr: str) -> str:
        return f"{expr} - {expr} @ {before}"

    for name in ("docker", "zstd"):
        cri.crictl("pull", test_images[name].ref)
    assert cri.crictl("pull", f"{registry.host}/test/no-such-image:v1", check=False).returncode != 0
    pod_id = cri.runp()
    running = cri.run(pod_id, cri.container("running"))
    cri.create(pod_id, cri.container("created"))
    cri.crictl("stop", cri.run(pod_id, cri.container("stopped")))
    cri.crictl("exec", running, "true")  # a streaming exec session
    gone = cri.runp()
    cri.crictl("stopp", gone)
    cri.crictl("rmp", gone)
    cri.crictl("rmi", test_images["zstd"].ref)  # its blobs go in a background collection

    prometheus.wait_for(since('crishim_image_pulls_total{outcome="success"}'), 2)
    prometheus.wait_for(since('crishim_image_pulls_total{outcome="failure"}'), 1)
    # increase() extrapolates over the seconds of data it has, so it is at least the pulls, not exactly them.
    assert prometheus.value('increase(crishim_image_pulls_total{outcome="success"}[10m])') >= 2

    for state, count in {"running": 1, "created": 1, "exited": 1, "unknown": 0}.items():
        prometheus.wait_for(f'crishim_containers{{state="{state}"}}', count)
    prometheus.wait_for('crishim_pod_sandboxes{state="ready"}', 1)
    prometheus.wait_for('crishim_pod_sandboxes{state="notready"}', 0)

    # A removal stops the pod again, as containerd's does, and so runs CNI DEL a second time (it is idempotent).
    operations = {("container", "create"): 3, ("container", "start"): 2, ("container", "stop"): 1,
                  ("sandbox", "run"): 2, ("sandbox", "stop"): 1, ("sandbox", "remove"): 1,
                  ("cni", "setup"): 2, ("cni", "teardown"): 2}
    for (kind, operation), count in operations.items():
        prometheus.wait_for(since(f'crishim_{kind}_operations_total{{operation="{operation}", outcome="success"}}'),
                            count)
        prometheus.wait_for(since(f'crishim_{kind}_operation_duration_seconds_count{{operation="{operation}"}}'),
                            count)
    prometheus.wait_for(since('crishim_container_operations_total{operation="create", outcome="failure"}'), 0)
    # No session before this one: the series starts with it.
    prometheus.wait_for('sum(crishim_stream_sessions_total{kind="exec", outcome="completed"})', 1)

    # The failed pull's collection and the removal's.
    prometheus.wait_for(since('crishim_gc_runs_total{outcome="success"}'), lambda runs: runs >= 2)
    prometheus.wait_for(since('crishim_gc_freed_bytes_total'), lambda freed: freed > 0)
    prometheus.wait_for('crishim_gc_runs_total{outcome="failure"}', 0)
    _wait_for_disk_usage(cri, prometheus)

    assert prometheus.value('process_resident_memory_bytes{job="crishim"}') > 10 * 2**20
    assert prometheus.value('process_open_fds{job="crishim"}') > 3
    assert prometheus.value('process_threads{job="crishim"}') > 1
    assert prometheus.value('rate(process_cpu_seconds_total{job="crishim"}[1m])') >= 0
    build = {"version": crishim.__version__, "revision": revision()}
    assert prometheus.value(f'crishim_build_info{{version="{build["version"]}", revision="{build["revision"]}"}}') == 1

    _check_rules(prometheus, cri.daemon.root)
    _check_dashboard(prometheus)

    # A restart shows as a new start time; the counters start again, the containers are still there.
    cri.daemon.restart()
    prometheus.wait_for('changes(process_start_time_seconds{job="crishim"}[10m])', 1)
    prometheus.wait_for('crishim_containers{state="running"}', 1)
    prometheus.wait_for('crishim_image_pulls_total{outcome="success"}', 0)
    print(f"scraped and checked in {time.monotonic() - started:.1f} s")


def _wait_for_disk_usage(cri: CriEnv, prometheus: Prometheus) -> None:
    """Once the collection is over, the cached usage is measured again and matches the disk."""
    blobs = blob_dir(cri.daemon.root)
    prometheus.wait_for("crishim_content_bytes", lambda _: prometheus.value("crishim_content_bytes") == sum(
        path.stat().st_size for path in blobs.iterdir()))
    prometheus.wait_for("crishim_content_blobs", len(list(blobs.iterdir())))
    prometheus.wait_for('crishim_snapshots{snapshotter="overlayfs"}', len(cri.ctr.snapshots()))
    prometheus.wait_for('crishim_snapshot_bytes{snapshotter="overlayfs"}', lambda used: used > 0)
    prometheus.wait_for("crishim_root_filesystem_size_bytes", shutil.disk_usage(cri.daemon.root).total)


# The alerts about the disk crishim's root is on, and how little of it must be free for each: they speak of
# the host, not of the daemon, and may rightly be pending on a machine whose disk is that full.
DISK_ALERTS = {"CrishimRootFilesystemFull": 0.10, "CrishimRootFilesystemFillingUp": 0.25}


def _check_rules(prometheus: Prometheus, root: Path) -> None:
    """Every shipped rule is loaded and evaluates cleanly; none fires on a healthy daemon on a disk with room."""
    wanted = {rule["alert"] for group in _rules_file()["groups"] for rule in group["rules"]}

    def evaluated() -> list[dict[str, object]]:
        return [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]
                if rule.get("lastEvaluation", "").startswith("20")]

    prometheus.wait_for("vector(1)", lambda _: {r["name"] for r in evaluated()} == wanted)
    unhealthy = {r["name"]: r.get("lastError") for r in evaluated() if r["health"] != "ok"}
    assert not unhealthy
    disk = shutil.disk_usage(root)
    allowed = {name for name, share in DISK_ALERTS.items() if disk.free / disk.total < share}
    assert [a for a in prometheus.query("ALERTS") if a["metric"]["alertname"] not in allowed] == []


def _rules_file() -> dict[str, list[dict[str, list[dict[str, str]]]]]:
    loaded: dict[str, list[dict[str, list[dict[str, str]]]]] = yaml.safe_load(
        (DEPLOY / "prometheus-alerts.yml").read_text())
    return loaded


def _check_dashboard(prometheus: Prometheus) -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) > 20
    empty = []
    for expr in exprs:
        for variable, value in DASHBOARD_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"a dashboard variable the test does not fill in: {expr}"
        if not prometheus.query(expr):
            empty.append(expr)
    assert not empty, "dashboard queries without data:\n  " + "\n  ".join(empty)
