"""The request's span (app/tracing.py), opened before the view and closed after the answer is sent; and
the web layer's own stage (parsing the body) as its child. Registered only when tracing is
on: without it nothing here runs."""

from __future__ import annotations

from contextlib import nullcontext

from flask import Flask, current_app, g, request

TRACING_KEY = "embedding_tracing"
# Probes and scrapes, every few seconds from every kubelet and Prometheus: spans nobody reads.
UNTRACED = frozenset({"/health", "/ready", "/metrics"})


def init_tracing(app: Flask, tracing) -> None:
    """After init_observability, whose request id the span carries and whose record of the request's
    model work it reads."""
    app.extensions[TRACING_KEY] = tracing

    @app.before_request
    def _begin():
        if request.path in UNTRACED:
            return
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        g.trace = tracing.begin_request(request.method, route, request.path, request.headers, g.request_id)

    @app.after_request
    def _answered(response):
        g.trace_status = response.status_code
        return response

    @app.teardown_request
    def _end(_exc):
        handle = g.pop("trace", None)  # None: untraced (the collector is down)
        if handle is None:
            return
        embedding = g.get("embedding")
        error = g.get("error")
        tracing.end_request(
            handle,
            g.get("trace_status"),
            {
                "embedding.model": embedding.model if embedding else None,
                "embedding.items": embedding.items if embedding else None,
                "embedding.tokens": embedding.prompt_tokens if embedding else None,
                "embedding.cache": embedding.cache if embedding else None,
                "error.type": error[0] if error else None,
            },
        )


def stage(name: str):
    """A span around one of the web layer's stages of the current request, when tracing."""
    tracing = current_app.extensions.get(TRACING_KEY)
    return nullcontext() if tracing is None else tracing.stage(name)
