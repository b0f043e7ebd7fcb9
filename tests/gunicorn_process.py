"""Start a real `gunicorn -c gunicorn.conf.py` on a free port and wait until every worker is ready."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GunicornProcess:
    def __init__(
        self,
        env: dict[str, str] | None = None,
        workers: int = 2,
        log_path: Path | None = None,
        port: int | None = None,
        command: list[str] | None = None,
        cwd: Path | None = None,
    ):
        self.port = port or free_port()
        self.command = command
        self.cwd = cwd or ROOT
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = {
            **os.environ,
            "BIND": f"127.0.0.1:{self.port}",
            "WORKERS": str(workers),
            "LOG_FORMAT": "json",
            **(env or {}),
        }
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> GunicornProcess:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        command = self.command or [str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py"]
        self.proc = subprocess.Popen(
            command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()  # a server that never became ready is not left running after its test
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        """Ready once /ready answered 200 from as many distinct worker pids as there are workers."""
        deadline = time.monotonic() + timeout
        seen: set[int] = set()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with requests.Session() as fresh:  # a new connection may land on another worker
                    ready = fresh.get(self.url + "/ready", timeout=5)
                    if ready.status_code == 200:
                        seen.add(fresh.get(self.url + "/health", timeout=5).json()["pid"])
                if len(seen) >= self.workers:
                    return
            except (requests.ConnectionError, requests.Timeout):
                # Refused before the workers listen; on a busy machine a worker still warming up may also
                # leave a probe unanswered for seconds. Both mean "not ready yet": the deadline is the bound.
                pass
            time.sleep(0.1)
        raise TimeoutError(f"gunicorn not ready after {timeout}s: {self.log_tail()}")

    def log_records(self) -> list[dict]:
        """The server's JSON log lines, parsed (LOG_FORMAT=json)."""
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    pass
        return records

    def model_loads(self) -> list[int]:
        """Pids of the processes that loaded the model."""
        return [
            r["pid"]
            for r in self.log_records()
            if r.get("logger") == "app.engine.loader" and r["msg"].startswith("loaded model")
        ]

    def metric(self, name: str, **labels: str) -> float:
        """One sample from /metrics (0 when absent)."""
        text = requests.get(self.url + "/metrics", timeout=10).text
        for line in text.splitlines():
            match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
            if not match or match.group(1) != name:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(match.group(3))
        return 0.0

    def pinned_sessions(self, count: int, timeout: float = 30.0) -> dict[int, requests.Session]:
        """Keep-alive sessions each held by a different worker, keyed by that worker's pid."""
        sessions: dict[int, requests.Session] = {}
        deadline = time.monotonic() + timeout
        while len(sessions) < count and time.monotonic() < deadline:
            session = requests.Session()
            pid = session.get(self.url + "/health", timeout=10).json()["pid"]
            if pid in sessions:
                session.close()
            else:
                sessions[pid] = session
        assert len(sessions) == count, f"only reached workers {sorted(sessions)}"
        return sessions

    def worker_pids(self, timeout: float = 30.0) -> set[int]:
        """Pids of the live workers, as the master sees them."""
        return set(self.pinned_sessions(self.workers, timeout))

    def log_tail(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def kill(self) -> None:
        """SIGKILL the whole instance, master and workers, as a crash or OOM kill would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode if self.proc else 0

    def __enter__(self) -> GunicornProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
