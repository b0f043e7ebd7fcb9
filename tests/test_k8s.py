"""Kubernetes manifests: every overlay rendered by `kubectl kustomize` (no cluster here), validated against the
API schemas offline, and its lifecycle numbers checked against the service's own settings and routes."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from app.config import Settings
from app.sizing import cpu_budget

from .gunicorn_process import ROOT

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir())
# Kinds of the Prometheus Operator's CRDs: not in the core API schemas, checked by hand below.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
KUBERNETES_VERSION = "1.32.0"

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl comes from Debian's package (.ci/run installs it)"
)


def render(path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True, timeout=60)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def one(docs: list[dict], kind: str, name: str = "embedding") -> dict:
    found = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind}s named {name}"
    return found[0]


def container(docs: list[dict]) -> dict:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def container_settings(docs: list[dict]) -> Settings:
    """The service's Settings as the container's environment makes them (paths left out: they are the pod's)."""
    env = {item["name"]: item["value"] for item in container(docs).get("env", []) if "value" in item}
    env.pop("MODEL_PATH", None)
    return Settings.from_env(env)


def cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[:-2]) * factor
    return float(quantity) / 2**20


def test_there_are_cpu_and_gpu_overlays():
    assert {"cpu", "gpu"} <= set(OVERLAYS)


@pytest.mark.parametrize("target", ["base", *[f"overlays/{name}" for name in OVERLAYS]])
def test_every_overlay_renders_and_validates(target):
    import kubernetes_validate

    docs = render(K8S / target)
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["spec"]["endpoints"][0]["port"] == "http"
            continue
        if doc["kind"] == "PrometheusRule":  # the same rules as deploy/prometheus/alerts.yaml (promtool-checked)
            alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yaml").read_text())
            assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["spec"]["groups"] == alerts["groups"]
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("target", ["base", *[f"overlays/{name}" for name in OVERLAYS]])
def test_lifecycle_numbers_match_the_service(target, app):
    docs = render(K8S / target)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    main = container(docs)
    settings = container_settings(docs)
    # SIGTERM comes after preStop; in-flight requests then get GRACEFUL_TIMEOUT, all within the grace period.
    pre_stop = int(main["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + settings.graceful_timeout
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["httpGet"]["path"] in routes and main[probe]["httpGet"]["port"] == "http"
    assert main["readinessProbe"]["httpGet"]["path"] == "/ready"  # the one that turns 503 while draining
    # A large model's load fits in the startup probe's window (at least 5 minutes).
    startup = main["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    tmp = {mount["mountPath"] for mount in main["volumeMounts"]}
    assert "/tmp" in tmp and settings.metrics_dir.startswith("/tmp/")


@pytest.mark.parametrize("target", ["base", *[f"overlays/{name}" for name in OVERLAYS]])
def test_cpu_limit_and_workers_agree(target, tmp_path):
    docs = render(K8S / target)
    main = container(docs)
    settings = container_settings(docs)
    limit = cpus(main["resources"]["limits"]["cpu"])
    assert cpus(main["resources"]["requests"]["cpu"]) == limit  # guaranteed CPU: no throttling surprises
    # What the service will find in the pod: the limit as its cgroup quota.
    (tmp_path / "cpu.max").write_text(f"{int(limit * 100000)} 100000\n")
    budget = cpu_budget(tmp_path, affinity=64)
    gpus = int(main["resources"]["limits"].get("nvidia.com/gpu", 0))
    workers = settings.resolved_workers(budget.cpus, gpu=gpus > 0)
    threads = settings.resolved_cpu_threads(budget.cpus, gpu=gpus > 0)
    assert workers * threads <= int(limit)
    if gpus:
        assert gpus == 1 and workers == 1 and settings.device == "cuda"
    else:
        assert workers == int(limit) and threads == 1
        # Memory: weights once + 300 MiB + 200 MiB compiled (a node may have bf16) + 110 MiB per worker
        # (docs/deployment.md), for the packaged model's 87 MiB.
        assert mebibytes(main["resources"]["requests"]["memory"]) >= 87 + 300 + 200 + 110 * workers


def test_the_model_comes_from_a_volume_the_overlay_chooses():
    for name in OVERLAYS:
        docs = render(K8S / "overlays" / name)
        main = container(docs)
        env = {item["name"]: item.get("value") for item in main.get("env", [])}
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        mounts = {mount["mountPath"]: mount for mount in main["volumeMounts"]}
        assert env["MODEL_PATH"] in mounts and mounts[env["MODEL_PATH"]]["readOnly"] is True
        source = volumes[mounts[env["MODEL_PATH"]]["name"]]
        assert {"persistentVolumeClaim", "hostPath", "emptyDir"} & set(source)
        if "emptyDir" in source:  # filled by an init container from an image, never downloaded by the service
            assert pod["initContainers"][0]["volumeMounts"][0]["name"] == mounts[env["MODEL_PATH"]]["name"]


def test_queue_depth_autoscaling_reads_the_metric_the_service_exports(client):
    docs = render(K8S / "overlays" / "production")
    metrics = one(docs, "HorizontalPodAutoscaler")["spec"]["metrics"]
    names = [m["pods"]["metric"]["name"] for m in metrics if m["type"] == "Pods"]
    assert names == ["embedding_queue_depth"] and any(m["type"] == "Resource" for m in metrics)
    client.post("/embed_text", json={"texts": "a"})
    assert "embedding_queue_depth" in client.get("/metrics").get_data(as_text=True)
    rule = yaml.safe_load((K8S / "components" / "queue-autoscaling" / "prometheus-adapter-rule.yaml").read_text())
    assert rule["rules"][0]["name"]["as"] == "embedding_queue_depth"
    ingress = one(docs, "Ingress")["metadata"]["annotations"]
    assert ingress["nginx.ingress.kubernetes.io/proxy-body-size"] == "16m"


def test_the_redis_component_points_the_service_at_its_cache():
    docs = render(K8S / "overlays" / "production")
    env = {item["name"]: item.get("value") for item in container(docs)["env"]}
    settings = Settings.from_env({"REDIS_URL": env["REDIS_URL"]})  # a URL the service accepts
    host = settings.redis_url.split("//", 1)[1].split(":", 1)[0]
    service = one(docs, "Service", host)
    assert service["spec"]["ports"][0]["port"] == 6379
    redis = one(docs, "Deployment", host)["spec"]["template"]["spec"]["containers"][0]
    assert "allkeys-lru" in redis["args"] and redis["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_bulk_job_in_the_docs_is_a_valid_job_against_the_service():
    """docs/deployment.md's Job: valid for the API, its command the installed one, its URL the Service's."""
    import kubernetes_validate

    from app.cli import _parser

    text = (ROOT / "docs/deployment.md").read_text()
    job = yaml.safe_load(re.search(r"```yaml\n(apiVersion: batch/v1\nkind: Job\n.*?)```", text, re.S).group(1))
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][0] == "embedding-service"
    args = _parser().parse_args(container["command"][1:])
    service = yaml.safe_load((ROOT / "deploy/k8s/base/service.yaml").read_text())
    port = service["spec"]["ports"][0]["port"]
    assert args.url == [f"http://{service['metadata']['name']}" + ("" if port == 80 else f":{port}")]
