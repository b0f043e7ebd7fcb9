"""OpenTelemetry traces, when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set.

One span per request (the route, model, items, tokens, status, request id; a caller's W3C `traceparent`
continues its trace), children for its stages (parse, validate, tokenize or preprocess, cache, queue,
inference), and one span per forward pass, linked to every request whose rows it ran: a pass serves many
traces, so it belongs to none of them.

Nothing here imports OpenTelemetry until a worker starts tracing: with no endpoint set the service never
imports it, and the master (which forks the workers) never holds its export thread. Spans leave each
worker through the SDK's BatchSpanProcessor, off the request path, from a bounded queue that drops when
full (OTEL_BSP_MAX_QUEUE_SIZE); a collector that is down costs one warning a worker until it is back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import nullcontext

from .metrics import TRACE_EXPORTS, MetricsObserver
from .version import __version__

log = logging.getLogger(__name__)

SERVICE_NAME = "embedding-service"
SHUTDOWN_FLUSH_MS = 3000
# While the collector is down a worker traces one request this often (to notice that it is back) and serves
# the others untraced: spans that could only be dropped are not made, so a dead collector costs nothing.
PROBE_SECONDS = 5.0
# The SDK's own loggers for what this module reports once per outage instead (one line per failed batch,
# and per dropped span, otherwise).
_QUIETED = ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "opentelemetry.sdk._shared_internal")


class TracingObserver(MetricsObserver):
    """The engine's hooks with traces: metrics as MetricsObserver records them, and spans as below."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self._tracer = None
        self._pid = None
        self._lock = threading.Lock()
        self._next_probe = 0.0

    # ---------------------------------------------------------------- worker
    def start(self) -> None:
        """Per worker, after fork (idempotent per pid): the provider, its exporter and export thread. One that
        cannot start (a broken SDK install) turns traces off in this worker, said once: requests are served."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            try:
                self._start()
            except Exception:  # noqa: BLE001 - whatever the SDK raises, serving goes on untraced
                log.exception("tracing: cannot start in worker %d; it serves untraced", os.getpid())
                self._tracer = None
            self._pid = os.getpid()

    def _start(self) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.version": __version__, "process.pid": os.getpid()})
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
        self._exporter = _ReportingExporter(OTLPSpanExporter(endpoint=self.endpoint), self.endpoint)
        for name in _QUIETED:
            logging.getLogger(name).addFilter(self._exporter.quiet)
        # Sampler, queue and batch sizes, headers and timeout: the SDK's own OTEL_* variables.
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(BatchSpanProcessor(self._exporter))
        trace.set_tracer_provider(self._provider)
        self._tracer = self._provider.get_tracer(SERVICE_NAME, __version__)
        self._trace, self._context, self._propagate = trace, context, propagate
        # perf_counter (what the engine times stages with) to the epoch nanoseconds spans carry
        self._offset = time.time_ns() - time.perf_counter_ns()
        log.info("tracing: spans go to %s", self.endpoint)

    def shutdown(self) -> None:
        """A worker on its way out: what is queued is sent, for at most SHUTDOWN_FLUSH_MS (a collector that
        is down must not hold a recycled worker past its graceful timeout)."""
        if self._tracer is not None and self._pid == os.getpid():
            self._provider.force_flush(SHUTDOWN_FLUSH_MS)

    def _ns(self, seconds: float) -> int:
        return int(seconds * 1e9) + self._offset

    # --------------------------------------------------------------- request
    def begin_request(self, method: str, route: str, path: str, headers, request_id: str):
        """The request's span, current until `end_request`; a caller's `traceparent` is its parent. None (the
        request goes untraced) while the collector is down, but for a probe every PROBE_SECONDS."""
        self.start()
        if self._tracer is None:
            return None
        if self._exporter.failing:
            now = time.monotonic()
            if now < self._next_probe:
                return None
            self._next_probe = now + PROBE_SECONDS
        parent = self._propagate.extract(headers)
        span = self._tracer.start_span(
            f"{method} {route}",
            context=parent,
            kind=self._trace.SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "http.route": route,
                "url.path": path,
                "request.id": request_id,
            },
        )
        token = self._context.attach(self._trace.set_span_in_context(span, parent))
        return span, token

    def end_request(self, handle, status: int | None, attributes: dict) -> None:
        span, token = handle
        try:
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            for key, value in attributes.items():
                if value is not None:
                    span.set_attribute(key, value)
            if status is None or status >= 500:  # a server's span is an error for 5xx only (semconv)
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
            span.end()
        finally:
            self._context.detach(token)

    # ------------------------------------------------------ the engine's hooks
    def _recording(self) -> bool:
        return self._tracer is not None and self._trace.get_current_span().is_recording()

    def trace_context(self):
        if not self._recording():
            return None
        return self._trace.get_current_span().get_span_context()

    def stage(self, name: str, **attributes):
        if not self._recording():
            return nullcontext()
        return self._tracer.start_as_current_span(name, attributes=_attributes(attributes))

    def interval(self, name: str, started: float, finished: float, **attributes) -> None:
        if not self._recording():
            return
        span = self._tracer.start_span(name, start_time=self._ns(started), attributes=_attributes(attributes))
        span.end(end_time=self._ns(finished))

    def batch(self, model: str, size: int, tokens: int, seconds: float, links: tuple = ()) -> None:
        super().batch(model, size, tokens, seconds, links)
        if not links or self._tracer is None:
            return  # warm-up and calibration passes carry no request
        finished = time.perf_counter()
        span = self._tracer.start_span(
            "batch",
            context=self._context.Context(),  # a root: the pass is part of every linked trace, child of none
            links=[self._trace.Link(link) for link in links],
            start_time=self._ns(finished - seconds),
            attributes=_attributes({"model": model, "rows": size, "tokens": tokens, "requests": len(links)}),
        )
        span.end(end_time=self._ns(finished))


def _attributes(attributes: dict) -> dict:
    return {f"embedding.{key}": value for key, value in attributes.items() if value is not None}


class _ReportingExporter:
    """The OTLP exporter, reporting its outages as one warning each (and a line when exports work again),
    counting every batch in embedding_trace_exports_total, in place of the SDK's line per failed batch."""

    def __init__(self, exporter, endpoint: str):
        self.exporter = exporter
        self.endpoint = endpoint
        self.failing = False

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        result = self.exporter.export(spans)
        ok = result is SpanExportResult.SUCCESS
        TRACE_EXPORTS.labels("ok" if ok else "failed").inc()
        if not ok and not self.failing:
            log.warning(
                "tracing: spans cannot be sent to %s (OTEL_EXPORTER_OTLP_ENDPOINT); they are dropped until it "
                "answers, and requests are served as before",
                self.endpoint,
            )
        elif ok and self.failing:
            log.info("tracing: spans reach %s again", self.endpoint)
        self.failing = not ok
        return result

    def quiet(self, record: logging.LogRecord) -> bool:
        """The SDK's loggers: its export errors are reported above; dropped spans only while no outage is."""
        if record.name.startswith("opentelemetry.exporter"):
            return False
        return not self.failing

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)
