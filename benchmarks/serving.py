"""What the benchmark scripts share: a free port, and a server run from start to ready to stopped.

Standard library only; the scripts import it from their own directory.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def wait_compiled(url: str, workers: int, timeout: float) -> None:
    """Until every worker's /health says no model is still compiling (RUNTIME=compile finishes after /ready)."""
    deadline, latest = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=30) as response:
                health = json.load(response)
        except TimeoutError:
            continue  # a worker compiling on busy cores may answer late: the deadline bounds the wait
        latest[health["pid"]] = "compiling" in health.get("runtime", {}).values()
        if len(latest) >= workers and not any(latest.values()):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{url}: workers still compiling after {timeout}s")


def gunicorn_command() -> list[str]:
    return [str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py"]


def figure(row: dict, key: str, spec: str) -> str:
    """A table cell: the row's value in `spec`, or "-" where this run did not measure it."""
    return format(row[key], spec) if key in row else "-"


def service_env(model_path: str, port: int, config: str, **settings: str) -> dict:
    """This project's environment for one run: the model, the port, quiet logs, then `config`'s overrides."""
    env = {
        **os.environ,
        "MODEL_PATH": model_path,
        "BIND": f"127.0.0.1:{port}",
        "LOG_REQUESTS": "false",
        "MAX_REQUESTS": "0",
        **settings,
    }
    env.update(dict(item.split("=", 1) for item in shlex.split(config)))
    return env


@contextlib.contextmanager
def running(name: str, command: list[str], env: dict, ready_url: str, timeout: float):
    """Start a server in its own process group, wait for `ready_url`, stop it after the block.

    A failure to start or to measure is reported with the server's log and
    swallowed, so one failed configuration does not end a whole run.
    """
    log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False)
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(ready_url, proc, timeout)
        if env.get("RUNTIME", "auto") != "eager" and "gunicorn" in command[0]:
            # WORKERS=0 (the default) means one per CPU: wait for that many.
            wait_compiled(ready_url.rsplit("/", 1)[0], int(env.get("WORKERS") or 0) or os.cpu_count(), timeout)
        print(f"  {name}: ready, measuring", file=sys.stderr, flush=True)
        yield proc
    except Exception as exc:  # noqa: BLE001 - reported, and the run goes on
        print(f"  {name}: failed ({exc}); server log {log.name}", file=sys.stderr, flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def post_json(port: int, route: str, body, connection: http.client.HTTPConnection | None = None) -> tuple[int, str]:
    """POST a JSON body (dict or pre-encoded bytes) on a keep-alive connection (or a new one): status, text."""
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection.request("POST", route, data, {"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = response.read().decode()
    if own:
        connection.close()
    return response.status, payload


def run_clients(client, count: int) -> float:
    """`count` threads running `client(number)` at once; the seconds until the last one is done."""
    threads = [threading.Thread(target=client, args=(number,)) for number in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started
