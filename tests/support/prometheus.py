"""A real Prometheus server (Debian's `prometheus` package) on loopback, for the tests.

`scripts/setup-prometheus.sh` installs it (`make test` runs it). Under `make test`
(AIM_REQUIRE_ENGINES=1) a missing binary fails the test; by hand it is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.harness import free_port, wait_until


def binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        message = f"{name} not installed (run scripts/setup-prometheus.sh; `make test` does)"
        if os.environ.get("AIM_REQUIRE_ENGINES") == "1":
            pytest.fail(message)
        pytest.skip(reason=message)
    return found


class Prometheus:
    """`prometheus` scraping `targets` ({job: "127.0.0.1:port"}) every `interval`."""

    def __init__(self, directory: Path, targets: dict[str, str], interval: str = "1s") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
                  "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                                     for job, target in targets.items()]}
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(directory / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [binary("prometheus"), f"--config.file={directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(self.ready, 60, 0.2, "prometheus to be ready")

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}: "
                                 f"{(self.directory / 'prometheus.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now (an error is an AssertionError)."""
        return self.api("query", query=expr, time=f"{time.time():.3f}")["result"]

    def targets_up(self) -> dict[str, str]:
        """{job: "up"/"down"/"unknown"}; a down target says why ("down: <last scrape error>")."""
        return {t["labels"]["job"]: t["health"] if t["health"] != "down" else f"down: {t.get('lastError')}"
                for t in self.api("targets")["activeTargets"]}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self) -> "Prometheus":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def promtool_check_rules(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True,
                          timeout=60)


# --- the chart's PromQL ---------------------------------------------------------------------------

RATE_INTERVAL = "1m"      # what Grafana's $__rate_interval stands for in a direct query
ALWAYS_FIRING = {"monitoring": {"rules": {"enabled": True, "bootBudgetSeconds": 1, "kvCacheUsageAbove": -1,
                                          "queueWaitingAbove": -1, "queueGrowthAbove": -1}}}


def dashboard_queries() -> dict[str, str]:
    """{panel title / refId: PromQL} of the chart's Grafana dashboard, ready for Prometheus."""
    from tests.deploy.manifests import CHART

    dashboard = json.loads((CHART / "dashboards/aim-engine.json").read_text())
    return {f"{p['title']} / {t['refId']}": t["expr"].replace("$__rate_interval", RATE_INTERVAL)
            for p in dashboard["panels"] for t in p["targets"]}


def alert_queries(values: dict[str, Any] | None = None) -> dict[str, str]:
    """{alert name: PromQL} of the chart's PrometheusRule, rendered with `values` (default: the
    thresholds that make every alert true, so a healthy system still returns its series)."""
    from tests.deploy.manifests import render_chart

    rule = next(d for d in render_chart(values or ALWAYS_FIRING) if d["kind"] == "PrometheusRule")
    return {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
