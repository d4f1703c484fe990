"""The files shipped in deploy/ are read by the same code that reads the real ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from cri import config
from runtime.cni import load_config_list
from store.remote.hosts import HostsConfig
from tests.support.procs import run
from tests.support.tools import binary

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
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
