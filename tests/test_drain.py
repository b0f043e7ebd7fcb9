"""What Kubernetes does to a pod on endpoint removal, on a real gunicorn.

kube-proxy stops sending new connections to a pod being removed, while its
clients' open keep-alive connections stay; the preStop sleep lets that
propagate, then SIGTERM arrives. Emulated here: clients hold keep-alive
connections and send requests back to back; "endpoint removal" forbids new
connections (a client whose connection the server closes, with `Connection:
close`, is done: behind a Service it would reconnect to another pod); then
SIGTERM. Not one request sent on an open connection may fail.
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time

import pytest

from .gunicorn_process import GunicornProcess

pytestmark = [pytest.mark.slow, pytest.mark.extended]


@pytest.mark.parametrize("worker_class", ["gevent", "gthread", "sync"])
def test_sigterm_after_endpoint_removal_fails_no_request(tmp_path, worker_class):
    server = GunicornProcess(
        {"WORKER_CLASS": worker_class, "ALLOW_UNBOUNDED_QUEUE": "true", "GRACEFUL_TIMEOUT": "20", "DTYPE": "float32"},
        workers=2,
        log_path=tmp_path / "server.log",
    ).start()
    removed = threading.Event()
    lock = threading.Lock()
    counts = {"ok": 0, "after_sigterm": 0}
    failures: list[str] = []
    sigterm_sent = threading.Event()

    def client(number: int):
        connection = None
        body = json.dumps({"texts": f"client {number} asks"})
        while True:
            if connection is None:
                if removed.is_set():
                    return  # kube-proxy no longer routes new connections here
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                connection.request("POST", "/embed_text", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    failures.append(f"client {number}: {exc!r}")
                return
            with lock:
                if response.status != 200:
                    failures.append(f"client {number}: HTTP {response.status} {payload[:200]!r}")
                    return
                counts["ok"] += 1
                counts["after_sigterm"] += sigterm_sent.is_set()
            if response.getheader("Connection", "").lower() == "close" or response.will_close:
                connection.close()
                connection = None

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while counts["ok"] < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert counts["ok"] >= 30, "no traffic before the endpoint removal"
    removed.set()
    time.sleep(0.2)  # the preStop sleep, shortened: the removal reaches every client
    sigterm_sent.set()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0
    for thread in threads:
        thread.join(timeout=60)
    assert failures == [], failures[:5]
