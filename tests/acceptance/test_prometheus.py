"""A real Prometheus scraping a real daemon; the shipped alert rules and dashboard against the exposition."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import DaemonFactory, boot_time, free_port, wait_until, write_config
from scrape import scrape, settled

from secautod import JobStore

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "packaging" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "tests" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "packaging" / "grafana" / "secautod.json"
# Series Prometheus itself makes for every target, not the exposition.
SCRAPE_SERIES = {"up"}
METRIC_NAME = re.compile(r"\b((?:secautod|process)_[a-z_]+|up)\b(?!\s*\()")


def test_alert_rules_pass_their_promtool_unit_tests(promtool: str) -> None:
    """Every rule in alerts.yml fires when it should and stays quiet when not (`promtool test rules`)."""
    check = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run(
        [promtool, "test", "rules", ALERT_TESTS.name],
        cwd=ALERT_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_rule_has_a_unit_test() -> None:
    """Each alert in alerts.yml is evaluated by at least one promtool test."""
    rules = yaml.safe_load(ALERTS.read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    assert alerts == tested


def _dashboard_expressions() -> Iterator[str]:
    document = json.loads(DASHBOARD.read_text())
    for panel in document["panels"]:
        for target in panel["targets"]:
            yield target["expr"]
    for variable in document["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["query"]


def _names(expression: str) -> set[str]:
    """Metric names in a PromQL expression (functions are followed by a parenthesis)."""
    without_strings = re.sub(r'"[^"]*"', '""', expression)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    return set(METRIC_NAME.findall(without_labels))


@pytest.fixture
def exposition(tmp_path: Path, daemons: DaemonFactory, make_job: Any) -> set[str]:
    """Every metric name a real daemon (with a webhook outbox entry) exposes."""
    port = free_port()
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        store.save_job(
            make_job(id="gone", status="running", started_at=boot_time() - timedelta(hours=1))
        )  # recovered: a notification waits
    config = write_config(
        tmp_path,
        metrics={"listen": f"127.0.0.1:{port}", "refresh_seconds": 0.1},
        webhooks=[{"url": f"http://127.0.0.1:{free_port()}/hook", "timeout_seconds": 1}],
    )
    daemon = daemons.start(config)
    settled(port, "secautod_store_check_ok", 1)
    wait_until(
        lambda: any(name == "secautod_webhook_outbox_notifications" for name, _ in scrape(port)),
        what="the outbox in the figures",
    )
    samples = scrape(port)
    assert daemon.stop() == 0
    names = {name for name, _ in samples}
    # A family's samples carry suffixes (_total); PromQL names them so too.
    return names | SCRAPE_SERIES


def test_dashboard_and_alerts_name_only_exposed_metrics(exposition: set[str]) -> None:
    """Each metric the Grafana dashboard and the alert rules query is one the daemon really exposes."""
    dashboard = {name for expr in _dashboard_expressions() for name in _names(expr)}
    rules = yaml.safe_load(ALERTS.read_text())
    alerting = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in _names(rule["expr"])
    }
    assert dashboard, "no metric found in the dashboard"
    assert dashboard - exposition == set()
    assert alerting - exposition == set()


def test_prometheus_scrapes_the_daemon(
    tmp_path: Path, daemons: DaemonFactory, prometheus: str, make_job: Any
) -> None:
    """A real Prometheus scrapes the daemon: up{job="secautod"} is 1 and secautod_jobs{status} holds the stored counts."""
    metrics_port, web_port = free_port(), free_port()
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        for index in range(3):
            store.save_job(make_job(id=f"p{index}", status="pending"))
        for index in range(2):
            store.save_job(make_job(id=f"c{index}", status="completed"))
    config = write_config(
        tmp_path, metrics={"listen": f"127.0.0.1:{metrics_port}", "refresh_seconds": 0.2}
    )
    daemon = daemons.start(config)
    settled(metrics_port, "secautod_jobs", 3, status="pending")
    server = _start_prometheus(tmp_path / "prometheus", prometheus, metrics_port, web_port)
    try:
        api = f"http://127.0.0.1:{web_port}/api/v1/query"
        up = wait_until(
            lambda: _query(api, 'up{job="secautod"} == 1'), timeout=60, what="up == 1 in Prometheus"
        )
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{metrics_port}"
        jobs = wait_until(lambda: _query(api, 'secautod_jobs{job="secautod"}'), what="jobs series")
        by_status = {item["metric"]["status"]: float(item["value"][1]) for item in jobs}
        assert by_status == {
            "pending": 3,
            "running": 0,
            "completed": 2,
            "failed": 0,
            "cancelled": 0,
        }
    finally:
        server.terminate()
        server.wait(20)
    assert daemon.stop() == 0


def _start_prometheus(
    directory: Path, binary: str, metrics_port: int, web_port: int
) -> subprocess.Popen[bytes]:
    """Run Prometheus on loopback with its own config and data directory (never the system's)."""
    directory.mkdir()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {
                "job_name": "secautod",
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
            }
        ],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    with (directory / "prometheus.log").open("wb") as log:
        return subprocess.Popen(
            [
                binary,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{web_port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )


def _query(api: str, expression: str) -> list[dict[str, Any]] | None:
    url = f"{api}?{urllib.parse.urlencode({'query': expression})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http only
            answer = json.loads(response.read())
    except OSError:
        return None  # not listening yet
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result or None
