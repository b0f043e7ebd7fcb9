"""OpenTelemetry traces: a real gunicorn (preload, two gevent workers) exporting to an OTLP/HTTP receiver
in the test, which decodes the exporter's protobuf; and the same service with the collector down."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time
import uuid

import pytest
import requests

from app.config import ConfigError, Settings

from .gunicorn_process import ROOT, GunicornProcess, free_port
from .otlp_receiver import SERVER_KIND, OTLPReceiver

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
STAGES = {"parse", "tokenize", "cache", "queue", "inference"}


# ------------------------------------------------------------------ settings
@pytest.mark.parametrize(
    "env, endpoint",
    [
        ({}, ""),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}, "http://collector:4318/v1/traces"),
        # a signal's own endpoint is used as it is, and wins over the shared one
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b/otlp/traces",
            },
            "https://b/otlp/traces",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_SDK_DISABLED": "true"}, ""),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_TRACES_EXPORTER": "none"}, ""),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_TRACES_EXPORTER": "otlp"}, "http://a:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, None),
    ],
)
def test_traces_are_on_exactly_when_an_endpoint_is_set(env, endpoint):
    expected = "http://a:4318/v1/traces" if endpoint is None else endpoint
    assert Settings.from_env(env).otel_traces_endpoint == expected


@pytest.mark.parametrize(
    "env, variable, words",
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT", "http://"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "PROTOCOL", "4318"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_TRACES_EXPORTER": "zipkin"}, "EXPORTER", "otlp"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_SDK_DISABLED": "maybe"}, "DISABLED", "true or"),
    ],
)
def test_what_tracing_cannot_do_stops_start_up_naming_the_variable(env, variable, words):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    assert variable in refused.value.variable and words in str(refused.value)


def test_a_worker_whose_tracing_cannot_start_serves_untraced(fake, monkeypatch, caplog):
    from dataclasses import replace

    from app import create_app
    from app.tracing import TracingObserver

    def broken(self):
        raise ImportError("a broken SDK install")

    monkeypatch.setattr(TracingObserver, "_start", broken)
    settings = replace(Settings.from_env({}), otel_traces_endpoint="http://127.0.0.1:9/v1/traces")
    client = create_app(settings, fake).test_client()
    for _ in range(2):
        assert client.post("/embed_text", json={"texts": ["still served"]}).status_code == 200
    assert [r.levelname for r in caplog.records if "cannot start" in r.getMessage()] == ["ERROR"]


@pytest.mark.slow
def test_the_master_imports_no_sdk_and_without_an_endpoint_nothing_does():
    """What gunicorn's master runs with preload (create_app, models loaded) never imports the SDK or starts
    its export thread, traces on or off; without an endpoint, neither does a worker serving requests."""
    # torch's inductor imports OpenTelemetry's metrics SDK itself where it is installed: what is checked is
    # the tracing SDK, its exporter and its export thread
    script = """
import sys, threading
from app import create_app
from app.config import Settings

TRACING = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http")

def tracing_loaded():
    # (the namespace packages above the exporter's are imported by the settings' check that it is installed)
    return sorted(m for m in sys.modules if m.startswith(TRACING))

def export_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("OtelBatch")]

app = create_app(Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": sys.argv[1], "RUNTIME": "eager"}))
assert not tracing_loaded() and not export_threads(), (tracing_loaded(), export_threads())
plain = create_app(Settings.from_env({"RUNTIME": "eager"}))
answer = plain.test_client().post("/embed_text", json={"texts": ["hello"]})
assert answer.status_code == 200, answer.get_json()
assert not tracing_loaded() and not export_threads(), (tracing_loaded(), export_threads())
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script, "http://127.0.0.1:9/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


# ------------------------------------------------------------ a live collector
@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    log = tmp_path_factory.mktemp("tracing") / "server.log"
    with OTLPReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            # a partial batch waits this long for more rows: concurrent requests share passes
            "MAX_WAIT_MS": "1000",
        }
        with GunicornProcess(env, workers=2, log_path=log) as server:
            yield server, receiver


def _spans_of(receiver: OTLPReceiver, request_ids: list[str], timeout: float = 60.0) -> dict[str, dict]:
    """Each request's server span by its request id, once the receiver has all of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = {
            span["attributes"].get("request.id"): span
            for span in receiver.snapshot()
            if span["kind"] == SERVER_KIND and span["attributes"].get("request.id") in request_ids
        }
        if len(found) == len(request_ids):
            return found
        assert time.monotonic() < deadline, f"spans of {set(request_ids) - set(found)} never arrived"
        time.sleep(0.05)


def _children(receiver: OTLPReceiver, parent: dict, names: set[str], timeout: float = 60.0) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = {
            span["name"]: span
            for span in receiver.snapshot()
            if span["trace_id"] == parent["trace_id"] and span["parent_span_id"] == parent["span_id"]
        }
        if names <= found.keys():
            return found
        assert time.monotonic() < deadline, f"children {names - found.keys()} never arrived"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_callers_traceparent_continues_its_trace_with_a_span_per_stage(traced):
    server, receiver = traced
    request_id = uuid.uuid4().hex
    answer = requests.post(
        server.url + "/embed_text",
        json={"texts": [f"a traced text {request_id}", "and another one"]},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "X-Request-ID": request_id},
        timeout=60,
    )
    assert answer.status_code == 200
    span = _spans_of(receiver, [request_id])[request_id]
    assert (span["trace_id"], span["parent_span_id"]) == (CALLER_TRACE, CALLER_SPAN)
    assert span["name"] == "POST /embed_text"
    attributes = span["attributes"]
    assert attributes["http.route"] == "/embed_text" and attributes["http.request.method"] == "POST"
    assert attributes["http.response.status_code"] == 200
    assert attributes["embedding.model"] == "all-MiniLM-L6-v2" and attributes["embedding.items"] == 2
    assert attributes["embedding.tokens"] == int(answer.headers["X-Compute-Tokens"])
    assert attributes["embedding.cache"] == answer.headers["X-Cache"] == "miss"
    assert span["resource"]["service.name"] == "embedding-service"
    children = _children(receiver, span, STAGES)
    for name in STAGES:  # each stage within the request, in the order a request goes through them
        assert span["start"] <= children[name]["start"] <= children[name]["end"] <= span["end"], name
    order = ["parse", "tokenize", "cache", "queue", "inference"]
    starts = [children[name]["start"] for name in order]
    assert starts == sorted(starts)
    assert children["inference"]["attributes"]["embedding.rows"] == 2


@pytest.mark.slow
def test_without_traceparent_each_request_starts_its_own_trace_and_probes_make_none(traced):
    server, receiver = traced
    ids = [uuid.uuid4().hex for _ in range(3)]
    for request_id in ids:
        answer = requests.post(
            server.url + "/v1/embeddings",
            json={"input": f"untraced caller {request_id}", "model": "all-MiniLM-L6-v2"},
            headers={"X-Request-ID": request_id},
            timeout=60,
        )
        assert answer.status_code == 200
    for probe in ("/health", "/ready", "/metrics"):
        assert requests.get(server.url + probe, timeout=30).ok
    spans = _spans_of(receiver, ids)
    assert all(span["parent_span_id"] is None for span in spans.values())
    assert len({span["trace_id"] for span in spans.values()}) == 3
    assert all(span["attributes"]["http.route"] == "/v1/embeddings" for span in spans.values())
    probes = [s for s in receiver.snapshot() if s["attributes"].get("http.route") in ("/health", "/ready", "/metrics")]
    assert probes == []


@pytest.mark.slow
def test_a_pass_links_to_every_request_whose_rows_it_ran(traced):
    server, receiver = traced
    ids = [uuid.uuid4().hex for _ in range(8)]

    def post(request_id):
        return requests.post(
            server.url + "/embed_text",
            json={"texts": [f"batched {request_id}"]},
            headers={"X-Request-ID": request_id},
            timeout=60,
        )

    # Eight at once over two workers: one worker holds four or more, whose rows a pass takes together
    with concurrent.futures.ThreadPoolExecutor(len(ids)) as pool:
        assert all(answer.status_code == 200 for answer in pool.map(post, ids))
    spans = _spans_of(receiver, ids)
    requests_by_context = {(span["trace_id"], span["span_id"]): span for span in spans.values()}
    deadline = time.monotonic() + 60
    while True:
        passes = [
            span
            for span in receiver.snapshot()
            if span["name"] == "batch" and set(span["links"]) & requests_by_context.keys()
        ]
        linked = set().union(*(set(span["links"]) for span in passes))
        if requests_by_context.keys() <= linked:
            break
        assert time.monotonic() < deadline, "a request's pass never arrived"
        time.sleep(0.05)
    for span in passes:
        # a pass is a trace of its own, linked to the requests it carried: one row each here
        assert span["parent_span_id"] is None and span["trace_id"] not in {t for t, _ in requests_by_context}
        assert span["attributes"]["embedding.requests"] == len(span["links"]) == span["attributes"]["embedding.rows"]
        for context in span["links"]:
            request = requests_by_context[context]
            assert request["start"] <= span["start"] <= span["end"] <= request["end"]
    assert max(len(span["links"]) for span in passes) >= 2


@pytest.mark.slow
def test_a_refused_request_is_a_span_with_its_status_and_error(traced):
    server, receiver = traced
    request_id = uuid.uuid4().hex
    answer = requests.post(
        server.url + "/embed_text", json={"texts": 5}, headers={"X-Request-ID": request_id}, timeout=60
    )
    assert answer.status_code == 400
    span = _spans_of(receiver, [request_id])[request_id]
    assert span["attributes"]["http.response.status_code"] == 400
    assert span["attributes"]["error.type"] == answer.json()["error"]["code"]
    assert span["status"] == 0  # unset: a 4xx is the caller's error, not the server's (semconv)
    names = set(_children(receiver, span, {"parse"}))
    assert not names & {"tokenize", "queue", "inference"}


# ------------------------------------------------------------ a collector that is down
@pytest.mark.extended
@pytest.mark.slow
def test_with_the_collector_down_requests_are_served_and_each_worker_warns_once(tmp_path):
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "0.5",
    }
    with GunicornProcess(env, workers=2, log_path=tmp_path / "server.log") as server:
        deadline = time.monotonic() + 120
        while True:
            answer = requests.post(server.url + "/embed_text", json={"texts": ["collector down"]}, timeout=60)
            assert answer.status_code == 200 and len(answer.json()["embeddings"][0]) == 384
            failed = server.metric("embedding_trace_exports_total", result="failed")
            if failed >= 6:
                break
            assert time.monotonic() < deadline, f"only {failed} failed exports"
        warnings = [r for r in server.log_records() if "spans cannot be sent" in r.get("msg", "")]
        assert 1 <= len(warnings) <= 2 and all(r["level"] == "warning" for r in warnings)
        assert len({r["pid"] for r in warnings}) == len(warnings)  # one a worker, however many batches failed
        sdk_lines = [r for r in server.log_records() if r.get("logger", "").startswith("opentelemetry")]
        assert sdk_lines == []
