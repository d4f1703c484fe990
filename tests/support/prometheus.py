"""A real Prometheus (Debian's ``prometheus``) on loopback, scraping with deploy/prometheus.yml.

The shipped config is templated, not rewritten: its one crishim job keeps its name and relabelling, gets the
daemon's metrics address as its target and a short scrape interval, and the rules file it names is loaded
from deploy/. Prometheus keeps its data in a folder of its own and listens on a free loopback port.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.procs import free_port, spawn, stop_process, tail, wait_until
from tests.support.tools import binary

__all__ = ["DEPLOY", "Prometheus", "scrape_config", "start_prometheus"]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCRAPE_INTERVAL = "1s"


def scrape_config(target: str, deploy: Path = DEPLOY) -> dict[str, Any]:
    """deploy/prometheus.yml with ``target`` scraped every second and its rules evaluated as often."""
    config: dict[str, Any] = yaml.safe_load((deploy / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (static,) = job["static_configs"]
    static["targets"] = [target]
    job["scrape_interval"] = SCRAPE_INTERVAL
    config.setdefault("global", {})["evaluation_interval"] = SCRAPE_INTERVAL
    config["rule_files"] = [str(deploy / name) for name in config.get("rule_files", [])]
    return config


@dataclass
class Prometheus:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a successful API answer; an AssertionError naming Prometheus's error otherwise."""
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert body.get("status") == "success", f"{path} {params}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector, as a list of {"metric": labels, "value": [time, "text"]}."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", f"{expr}: a {data['resultType']}, not a vector"
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float:
        """The value of a query that yields exactly one series."""
        result = self.query(expr)
        assert len(result) == 1, f"{expr}: {len(result)} series, not one: {result}"
        return float(result[0]["value"][1])

    def wait_for(self, expr: str, expected: float | Callable[[float], bool], timeout: float = 20) -> float:
        """Until the one series of ``expr`` is ``expected`` (or satisfies it); a scrape takes a moment."""
        check = expected if callable(expected) else (lambda value: value == expected)
        seen: list[float] = []

        def matches() -> bool:
            result = self.query(expr)
            seen.append(self.value(expr) if result else float("nan"))
            return check(seen[-1])

        try:
            wait_until(matches, timeout=timeout, what=f"{expr} to be {expected}", interval=0.2)
        except TimeoutError:
            raise AssertionError(f"{expr} is {seen[-1] if seen else 'nothing'}, expected {expected}") from None
        return seen[-1]

    def now(self) -> float:
        """Prometheus's evaluation time for a query made now, for ``@`` modifiers later."""
        return float(self.api("query", query="time()")["result"][0])

    def stop(self) -> None:
        stop_process(self.process)

    def log_tail(self) -> str:
        return tail(self.log_path)


def start_prometheus(workdir: Path, target: str) -> Prometheus:
    """Prometheus scraping ``target`` with the shipped config; ready once its first scrape found it up."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(scrape_config(target)))
    port = free_port()
    log_path = workdir / "prometheus.log"
    process = spawn([
        binary("prometheus"), f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
    ], log_path)
    server = Prometheus(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_until(lambda: _up(server), timeout=30, what="Prometheus to scrape crishim")
    except (TimeoutError, AssertionError) as error:
        server.stop()
        raise RuntimeError(f"Prometheus did not start scraping ({error}); log tail:\n{server.log_tail()}") from None
    return server


def _up(server: Prometheus) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"prometheus exited with code {server.process.returncode}")
    try:
        # Until its storage is open, Prometheus answers queries with a plain-text 503.
        if httpx.get(f"{server.url}/-/ready", timeout=5).status_code != 200:
            return False
        result = server.query('up{job="crishim"}')
    except httpx.TransportError:
        return False
    return bool(result) and result[0]["value"][1] == "1"
