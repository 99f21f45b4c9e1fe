"""deploy/: Prometheus configs, alert rules and the Grafana dashboard, checked with promtool
(Debian's prometheus package) and against the metrics the code really exports."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.deploy.monitoring import DEPLOY, exported_metric_names, referenced_metric_names, tool

PROMETHEUS = DEPLOY / "prometheus"


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_static_config_and_its_rules_are_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 rules found" in result.stdout


def test_the_compose_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_fire_on_what_they_are_for() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_consul_config_is_valid_apart_from_the_plugin_debian_leaves_out(tmp_path: Path) -> None:
    """Debian builds Prometheus without Consul discovery, so promtool here rejects consul_sd_configs
    itself. Its shape is checked here, and the rest of the file by promtool with a static stand-in."""
    config = yaml.safe_load((PROMETHEUS / "prometheus-consul.yml").read_text())
    (workers,) = [job for job in config["scrape_configs"] if "consul_sd_configs" in job]
    (sd,) = workers.pop("consul_sd_configs")
    assert set(sd) == {"server", "services"} and sd["services"] == ["infercdn-worker"]
    assert any(r.get("source_labels") == ["__meta_consul_health"] for r in workers["relabel_configs"])
    workers["static_configs"] = [{"targets": ["127.0.0.1:8081"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path)
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_and_alerts_use_only_metrics_the_code_exports() -> None:
    exported = exported_metric_names()
    dashboard = json.loads((DEPLOY / "grafana" / "infercdn-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]  # rows have none
    used = referenced_metric_names("\n".join(exprs))
    alerts = referenced_metric_names((PROMETHEUS / "alerts.yml").read_text())
    assert used and alerts
    assert used - exported == set(), f"the dashboard uses metrics nobody exports: {used - exported}"
    assert alerts - exported == set(), f"alerts use metrics nobody exports: {alerts - exported}"
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    topics = ("requests", "failed", "time to first token p50", "p99", "worker load", "health", "region")
    usage_and_slos = ("served by worker", "used by client key", "availability", "success ratio", "burn rate")
    for topic in topics + usage_and_slos:
        assert topic in titles
