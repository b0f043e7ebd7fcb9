"""The operator's side of #31 that ships in deploy/: the alert rules (promtool's check and unit tests, which
make each alert fire on series that should fire it), the Grafana dashboard (a provisionable dashboard whose
every query is valid PromQL over metrics the service exports), and both against a real Prometheus (Debian's
package) scraping a real gunicorn under load: every panel's query returns data, every rule evaluates
without error, and overloading the instance sets off the saturation alert. Also the per-process memory and
worker-exit metrics these read."""

from __future__ import annotations

import concurrent.futures
import json
import re
import shutil
import subprocess
import time

import pytest
import requests
import yaml

from .gunicorn_process import ROOT, GunicornProcess, free_port

ALERTS = ROOT / "deploy/prometheus/alerts.yaml"
DASHBOARD = ROOT / "deploy/grafana/embedding-service.json"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool: Debian's prometheus")
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus package")


def dashboard_queries(rate_interval: str = "5m", value_range: str = "1h") -> dict[str, str]:
    """Every panel target's PromQL, with Grafana's variables as a query against one job would have them."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", rate_interval).replace("$__range", value_range)
            queries[f"{panel['title']} [{target['refId']}]"] = expr.replace("$job", ".*")
    return queries


def alert_expressions() -> dict[str, str]:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    return {rule["alert"]: rule["expr"] for rule in rules}


def metric_names(expr: str) -> set[str]:
    """The service's metric names an expression reads (histogram series by their family's name)."""
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in re.findall(r"\bembedding_[a-z_]+\b", expr)}


@needs_promtool
def test_alert_rules_pass_promtools_check_and_unit_tests():
    subprocess.run(["promtool", "check", "rules", str(ALERTS)], check=True, capture_output=True, timeout=60)
    tested = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yaml"],
        cwd=ROOT / "tests/prometheus",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tests = yaml.safe_load((ROOT / "tests/prometheus/alerts_test.yaml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == set(alert_expressions())  # every alert is shown to fire


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path):
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel_{i}", "expr": e} for i, e in enumerate(dashboard_queries().values())
                ],
            }
        ]
    }
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        ["promtool", "check", "rules", str(tmp_path / "dashboard.yaml")], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_is_provisionable():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 15
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards.yaml").read_text())
    assert provider["apiVersion"] == 1 and provider["providers"][0]["type"] == "file"


# ----------------------------------------------------------------- against a running instance
def listening(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).ok
    except requests.ConnectionError:  # not listening yet
        return False


def _load(server, seconds: float, concurrency: int, texts: int) -> None:
    """`concurrency` clients posting `texts` texts a request for `seconds`."""
    body = {"texts": [f"text number {i} of the load" for i in range(texts)], "cache": False}
    deadline = time.monotonic() + seconds

    def client(_):
        session = requests.Session()
        while time.monotonic() < deadline:
            session.post(server.url + "/embed_text", json=body, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"MAX_REQUESTS": "25", "MAX_REQUESTS_JITTER": "0", "MAX_QUEUE": "4", "THREADS": "1"}
    log = tmp_path_factory.mktemp("observability") / "server.log"
    with GunicornProcess(env, workers=2, log_path=log) as proc:
        # cached repeats (the cache's series) and enough requests that each worker is recycled at least once
        for index in range(80):
            requests.post(proc.url + "/embed_text", json={"texts": [f"repeat {index % 4}"]}, timeout=60)
        proc.wait_ready(120)  # the recycled workers are back
        yield proc


@pytest.mark.slow
def test_every_metric_the_dashboard_and_alerts_read_is_exported(server):
    exported = set(
        re.findall(r"^# TYPE (embedding_[a-z_]+) ", requests.get(server.url + "/metrics", timeout=30).text, re.M)
    )
    read = set().union(*(metric_names(e) for e in [*dashboard_queries().values(), *alert_expressions().values()]))
    assert read - exported == set()


def _memory_series(server) -> tuple[dict[str, dict], dict]:
    text = requests.get(server.url + "/metrics", timeout=30).text
    workers: dict[str, dict] = {}
    for labels, value in re.findall(r"^embedding_worker_memory_bytes\{([^}]*)\} (\S+)$", text, re.M):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        workers.setdefault(found["pid"], {})[found["kind"]] = float(value)
    master = {
        kind: float(value)
        for kind, value in re.findall(r'^embedding_master_memory_bytes\{kind="(\w+)"\} (\S+)$', text, re.M)
    }
    return workers, master


@pytest.mark.slow
def test_memory_and_worker_exits_are_metrics(server):
    # At most two live workers hold at most 24 requests each, so at least two of the fixture's 80 requests'
    # workers were recycled; the master counts an exit only once it reaps the worker, which may still be
    # under way for the last one when the fixture returns: poll until it has, within a deadline.
    deadline = time.monotonic() + 120
    while True:
        workers, master = _memory_series(server)
        recycled = server.metric("embedding_worker_exits_total", cause="recycled")
        if (len(workers) == 2 and recycled >= 2) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # one series per live worker: the several recycled ones' values went with them
    assert len(workers) == 2 and recycled >= 2, (workers.keys(), recycled)
    for kinds in [*workers.values(), master]:
        assert 0 < kinds["private"] <= kinds["pss"] <= kinds["rss"]
    # the weights live in the master's memory and are shared: a worker holds far less of its own
    assert all(kinds["private"] < master["private"] for kinds in workers.values())


@pytest.mark.extended
@pytest.mark.slow
@needs_prometheus
def test_a_real_prometheus_evaluates_every_panel_and_rule_and_sees_saturation(server, tmp_path):
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "embedding", "static_configs": [{"targets": [server.url.split("//")[1]]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(expr: str) -> list:
        answer = requests.get(api + "/query", params={"query": expr}, timeout=30).json()
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def until(condition, what: str, timeout: float = 120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = condition()
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"not within {timeout:g} s: {what}")

    try:
        until(lambda: listening(f"http://127.0.0.1:{port}/-/ready"), "Prometheus ready")
        until(lambda: query('up{job="embedding"} == 1'), "the instance scraped")
        # 16 clients of 64 texts against a queue of 4 per worker: some are refused with 503
        _load(server, 8, 16, 64)
        until(lambda: query('embedding_requests_total{job="embedding",status="503"}'), "503s scraped")
        time.sleep(2)  # two more scrapes after the load, so every rate has two points in its window
        empty = [title for title, expr in dashboard_queries("1m", "10m").items() if not query(expr)]
        assert empty == []
        rules = requests.get(api + "/rules", timeout=30).json()["data"]["groups"][0]["rules"]
        assert {rule["name"] for rule in rules} == set(alert_expressions())
        assert all(rule["health"] == "ok" for rule in rules), [r.get("lastError") for r in rules]
        saturated = next(rule for rule in rules if rule["name"] == "EmbeddingQueueSaturated")
        assert saturated["state"] in ("pending", "firing")  # `for: 1m`: pending first, firing a minute later
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
