"""The files shipped in deploy/ are read by the same code that reads the real ones."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import yaml

from cri import config
from cri.api.runtime.v1 import api_pb2
from cri.metrics import Metrics
from cri.runtime_service.runtime_config import runtime_config
from cri.scrape_metrics import BuildInfo, DiskUsage, ObjectStates, ProcessThreads
from runtime.cgroups import CgroupDriver
from runtime.cni import load_config_list
from store.remote.hosts import HostsConfig
from tests.support.procs import run
from tests.support.tools import binary

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prometheus"


def test_example_config_is_the_defaults() -> None:
    assert config.load(DEPLOY / "config.toml") == config.Config()


def test_example_hosts_toml_puts_the_mirror_first() -> None:
    mirror, server = HostsConfig(DEPLOY / "certs.d").hosts_for("registry.example.com")
    assert mirror.base_url == "https://mirror.internal.example:5000/v2"
    assert mirror.capabilities == ("pull", "resolve")
    assert mirror.headers == {"x-mirror-tenant": "node-pool-a"}
    assert server.base_url == "https://registry.example.com/v2"


def test_cni_conflist_loads(tmp_path: Path) -> None:
    shutil.copy(DEPLOY / "cni" / "10-crishim-bridge.conflist", tmp_path)
    network = load_config_list(tmp_path)
    assert [p["type"] for p in network.plugins] == ["bridge", "portmap", "loopback"]


def test_alerting_rules_pass_promtool_and_fire_on_what_they_are_for() -> None:
    promtool = binary("promtool")
    run(promtool, "check", "config", DEPLOY / "prometheus.yml")  # also checks the rules file it names
    run(promtool, "check", "rules", DEPLOY / "prometheus-alerts.yml")
    run(promtool, "test", "rules", FIXTURES / "alerts_test.yml")


def test_prometheus_scrapes_the_default_metrics_address() -> None:
    (job,) = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]
    assert job["job_name"] == "crishim"
    assert job["static_configs"] == [{"targets": [config.Config().metrics_address]}]


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in (p for p in panels if p["type"] != "row"):
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs), panel["title"]
        assert panel["datasource"]["uid"].strip("${}") in variables, panel["title"]


def test_dashboard_and_rules_use_only_series_crishim_exports() -> None:
    exported = _exported_series()
    dashboard = (DEPLOY / "grafana-dashboard.json").read_text()
    rules = (DEPLOY / "prometheus-alerts.yml").read_text()
    for name, text in (("dashboard", dashboard), ("alerting rules", rules)):
        used = set(re.findall(r"\b(?:crishim|process)_[a-z_]+\b", text))
        assert used, name
        assert used <= exported, f"the {name} use series crishim does not export: {sorted(used - exported)}"


def _exported_series() -> set[str]:
    scrape_time = [ObjectStates(list, list), DiskUsage(DEPLOY, lambda: (0, 0), {}), BuildInfo("1", "abc"),
                   ProcessThreads()]
    names = {sample.name for family in Metrics().registry.collect() for sample in family.samples}
    # Labelled families without a child yet have no samples: their names, with a histogram's series.
    for family in Metrics().registry.collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
        if family.type == "histogram":
            names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum")}
    return names | {family.name for collector in scrape_time for family in collector.describe()}


def test_docs_name_only_series_and_alerts_that_exist() -> None:
    exported = _exported_series()
    alerts = {rule["alert"] for group in yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())["groups"]
              for rule in group["rules"]}
    metrics_doc = (REPO / "docs" / "metrics.md").read_text()
    for path in ("docs/metrics.md", "README.md"):
        named = _series_named((REPO / path).read_text())
        assert named, path
        assert named <= exported, f"{path} names series crishim does not export: {sorted(named - exported)}"
    assert set(re.findall(r"`(Crishim[A-Za-z]+)`", metrics_doc)) == alerts


def _series_named(text: str) -> set[str]:
    """crishim_ and process_ names, with `crishim_{a,b}_total` read as both."""
    names = set()
    for name in re.findall(r"\b(?:crishim|process)_[a-z_{},]+", text):
        head, brace, rest = name.partition("{")
        options, _, tail = rest.partition("}")
        if not brace:
            names.add(name.rstrip("_,"))
        elif "," in options:
            names |= {f"{head}{option}{tail}".rstrip("_,") for option in options.split(",")}
        else:  # a label selector, not a brace expansion
            names.add(head)
    return {n for n in names if not n.endswith("_")} - {"process_"}


def test_the_kubelet_settings_name_the_daemons_socket_and_cgroup_driver() -> None:
    settings = yaml.safe_load((DEPLOY / "kubelet-config.yaml").read_text())
    assert settings["kind"] == "KubeletConfiguration"
    endpoint = f"unix://{config.Config().socket}"
    assert settings["containerRuntimeEndpoint"] == settings["imageServiceEndpoint"] == endpoint
    # The driver a daemon of the default configuration reports.
    daemon = SimpleNamespace(cgroup_driver=CgroupDriver(config.Config().cgroup_driver))
    reported = runtime_config(daemon, api_pb2.RuntimeConfigRequest()).linux.cgroup_driver  # type: ignore[arg-type]
    assert settings["cgroupDriver"] == api_pb2.CgroupDriver.Name(reported).lower()
    assert settings["featureGates"]["PodAndContainerStatsFromCRI"] is True
