"""Deployment: the Dockerfiles (checked statically here; scripts/check-images builds and runs them), the image's
install steps replayed in a fresh virtual environment, and real Nginx in front of two
real instances under ab and wrk load while instances die and restart."""

from __future__ import annotations

import collections
import fnmatch
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from app.config import Settings, setting_names

from .gunicorn_process import ROOT, GunicornProcess, free_port

DOCKERFILES = {"cpu": ROOT / "cpu/Dockerfile.prod", "gpu": ROOT / "gpu/Dockerfile.prod"}
RUNTIME_ENV = {
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "VIRTUAL_ENV",
    "PATH",
    "DEBIAN_FRONTEND",
    "PYTORCH_NVML_BASED_CUDA_CHECK",
    # the allocator (the CPU image preloads jemalloc)
    "LD_PRELOAD",
    "MALLOC_CONF",
}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in joined]


def env_of(steps) -> dict[str, str]:
    env = {}
    for kind, args in steps:
        if kind == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


# ---------------------------------------------------------------- static checks
@pytest.mark.parametrize("flavour", ["cpu", "gpu"])
def test_dockerfile_copies_only_what_exists_and_matches_the_service(flavour):
    steps = instructions(DOCKERFILES[flavour])
    assert sum(kind == "FROM" for kind, _ in steps) >= 2  # multi-stage
    for kind, args in steps:
        if kind == "COPY" and "--from=" not in args:
            *sources, _ = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} is missing"
    env = env_of(steps)
    unknown = set(env) - setting_names() - RUNTIME_ENV
    assert not unknown, f"ENV names no setting: {unknown}"
    settings = Settings.from_env({k: v for k, v in env.items() if k in setting_names()})
    port = settings.bind.rsplit(":", 1)[1]
    exposed = [args for kind, args in steps if kind == "EXPOSE"]
    assert exposed == [port]
    (healthcheck,) = [args for kind, args in steps if kind == "HEALTHCHECK"]
    assert f"127.0.0.1:{port}/health" in healthcheck
    (entrypoint,) = [args for kind, args in steps if kind == "ENTRYPOINT"]
    script = shlex.split(entrypoint.strip("[]").replace(",", " "))[0]
    copies = [shlex.split(args) for kind, args in steps if kind == "COPY"]
    assert ["deploy/docker-entrypoint.sh", script] in copies
    assert "exec gunicorn -c gunicorn.conf.py" in (ROOT / "deploy/docker-entrypoint.sh").read_text()
    assert ["gunicorn.conf.py", "./"] in copies
    users = [args for kind, args in steps if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert settings.worker_class == "gevent" and settings.enable_batching


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches a path, or a folder above it, decides."""
    ignored = False
    parts = path.split("/")
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            candidates = [part for part in parts]
            pattern = pattern[3:]
        if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
            ignored = not negated
    return ignored


@pytest.mark.parametrize("flavour", ["cpu", "gpu"])
def test_build_context_and_pip_secrets(flavour):
    """The build context keeps what the Dockerfile copies and nothing heavy; every step that runs pip can be
    handed pip's configuration as a secret (scripts/check-images builds the images for real)."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    steps = instructions(DOCKERFILES[flavour])
    for kind, args in steps:
        if kind == "COPY" and "--from=" not in args:
            *sources, _ = shlex.split(args)
            for source in sources:
                files = (
                    [source]
                    if (ROOT / source).is_file()
                    else [str(f.relative_to(ROOT)) for f in (ROOT / source).rglob("*.py")]
                )
                assert files and not any(dockerignored(f, patterns) for f in files), source
    for heavy in (".venv-test/bin/python", ".git/HEAD", "tests/test_deploy.py", "app/__pycache__/x.pyc"):
        assert dockerignored(heavy, patterns), heavy
    for kind, args in steps:
        if kind == "RUN" and "pip " in args:
            assert "--mount=type=secret,id=pip.conf,target=/etc/pip.conf" in args, args
            assert "--mount=type=secret,id=pip-ca.crt" in args, args
    assert re.search(r"^ARG TORCH_INDEX=https://download\.pytorch\.org/whl/", DOCKERFILES[flavour].read_text(), re.M)


def test_cpu_image_uses_cpu_wheels_and_the_cpu_profile():
    steps = instructions(DOCKERFILES["cpu"])
    text = " ".join(args for _, args in steps)
    assert "download.pytorch.org/whl/cpu" in text
    settings = Settings.from_env({k: v for k, v in env_of(steps).items() if k in setting_names()})
    assert settings.device == "cpu" and settings.workers == 0 and settings.cpu_threads == 0
    # The default RUNTIME=auto compiles on bf16 CPUs only with a C++ compiler: the image has one unless told not.
    cpu_file = DOCKERFILES["cpu"].read_text()
    assert "ARG WITH_CXX=true" in cpu_file and '[ "$WITH_CXX" = true ] && echo g++' in cpu_file


def test_gpu_image_matches_cuda_and_torch_builds():
    steps = instructions(DOCKERFILES["gpu"])
    args = dict(re.findall(r"^(\w+)=(\S+)$", "\n".join(a for k, a in steps if k == "ARG"), re.M))
    cuda = re.search(r"nvidia/cuda:(\d+)\.(\d+)", args["CUDA_IMAGE"])
    assert cuda and args["TORCH_INDEX"].endswith(f"/cu{cuda.group(1)}{cuda.group(2)}")
    assert (
        args["TORCH_VERSION"]
        == dict(
            re.findall(r"^(\w+)=(\S+)$", "\n".join(a for k, a in instructions(DOCKERFILES["cpu"]) if k == "ARG"), re.M)
        )["TORCH_VERSION"]
    )
    settings = Settings.from_env({k: v for k, v in env_of(steps).items() if k in setting_names()})
    assert settings.device == "cuda" and settings.resolved_workers() <= 2 and settings.max_batch_size >= 64


def test_cpu_image_preloads_jemalloc():
    """Every process of the CPU image allocates with jemalloc, returning freed pages within a second
    (benchmarks/lean_workers.py: bfloat16 workers' memory); scripts/check-images checks the running master maps it."""
    env = env_of(instructions(DOCKERFILES["cpu"]))
    assert env["LD_PRELOAD"] == "/usr/local/lib/libjemalloc.so.2"
    assert "background_thread:true" in env["MALLOC_CONF"] and "dirty_decay_ms:1000" in env["MALLOC_CONF"]
    text = DOCKERFILES["cpu"].read_text()
    assert "libjemalloc2" in text and "/usr/local/lib/libjemalloc.so.2" in text


def test_images_install_the_torchvision_built_for_their_torch():
    """Video models' processors need torchvision, and a torchvision imports only beside the torch release it was
    built for: torchvision 0.N goes with torch 2.(N - 15) (0.24 with 2.9, 0.29 with 2.14)."""
    for path in DOCKERFILES.values():
        args = dict(re.findall(r"^(\w+)=(\S+)$", "\n".join(a for k, a in instructions(path) if k == "ARG"), re.M))
        minor = int(args["TORCH_VERSION"].split(".")[1])
        assert args["TORCHVISION_VERSION"] == f"0.{minor + 15}.0", path
        assert '${TORCHVISION_VERSION:+"torchvision==${TORCHVISION_VERSION}"}' in path.read_text()


def test_every_setting_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in setting_names() if f"| `{name}` |" not in readme]
    assert not missing


def test_the_readme_table_gives_each_declared_default():
    """One declaration per setting (app/config.py); the README's table must say the same default."""
    from dataclasses import fields

    readme = (ROOT / "README.md").read_text()
    wrong = []
    for declared in fields(Settings):
        default = declared.default
        if default in ("", ()):
            continue  # an empty default is described in words ("empty", "the packaged model")
        if isinstance(default, bool):
            text = str(default).lower()
        elif isinstance(default, float):
            text = f"{default:g}"
        elif isinstance(default, tuple):
            text = ",".join(default)
        else:
            text = str(default)
        row = re.search(rf"^\| `{declared.metadata['env']}` \| `([^`]*)` \|", readme, re.M)
        if row is None or row.group(1) != text:
            wrong.append((declared.metadata["env"], row and row.group(1), text))
    assert not wrong


def test_nginx_config_limits_fit_the_service():
    config = (ROOT / "deploy/nginx/nginx.conf").read_text()
    body_limit = int(re.search(r"client_max_body_size (\d+)m;", config).group(1)) * 1024 * 1024
    assert body_limit == Settings.from_env({}).max_content_length
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", config).group(1))
    assert read_timeout > Settings.from_env({}).timeout
    assert "least_conn;" in config and "non_idempotent" in config and "keepalive " in config
    assert re.search(r"location = /metrics \{\s*return 404;", config)


# ---------------------------------------------------- the image's install, replayed
@pytest.mark.extended
@pytest.mark.slow
def test_image_install_steps_in_a_fresh_virtualenv(tmp_path):
    """What the CPU image does, minus Docker: wheel -> fresh venv -> torch + wheel -> entrypoint."""
    torch_version = re.search(r"ARG TORCH_VERSION=(\S+)", DOCKERFILES["cpu"].read_text()).group(1)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), "."],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + [f"torch=={torch_version}"], check=True, timeout=900)
    subprocess.run(pip + [f"{next(wheels.glob('*.whl'))}[otel]"], check=True, timeout=900)
    home = tmp_path / "srv"
    home.mkdir()
    shutil.copy(ROOT / "gunicorn.conf.py", home)  # the image has the config, not the source tree
    env = {
        "APP_HOME": str(home),
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "WORKER_CLASS": "gevent",
    }
    server = GunicornProcess(
        env, workers=1, log_path=tmp_path / "log", cwd=home, command=["sh", str(ROOT / "deploy/docker-entrypoint.sh")]
    )
    with server:
        body = requests.post(server.url + "/v1/embeddings", json={"input": ["from the wheel"]}, timeout=60).json()
        assert len(body["data"][0]["embedding"]) == 384
        # The entrypoint exec'd gunicorn from the fresh environment, not from this one.
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert any(part.decode().startswith(str(venv)) for part in cmdline)
        assert requests.get(server.url + "/health", timeout=10).json()["status"] == "ok"


# ------------------------------------------------------------ nginx in front, for real
NGINX = shutil.which("nginx")
needs_tools = pytest.mark.skipif(
    not (NGINX and shutil.which("ab") and shutil.which("wrk")),
    reason="nginx, ab and wrk come from Debian (.ci/run installs them)",
)


def render_nginx(directory: Path, ports: list[int], listen: int) -> Path:
    config = (ROOT / "deploy/nginx/nginx.conf").read_text()
    config = config.replace("server instance1:8080", f"server 127.0.0.1:{ports[0]}")
    config = config.replace("server instance2:8080", f"server 127.0.0.1:{ports[1]}")
    config = config.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    config = config.replace("pid /tmp/nginx-embedding.pid;", f"pid {directory}/nginx.pid;")
    temp = "".join(
        f"    {kind}_temp_path {directory}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = config.replace("http {\n", "http {\n" + temp, 1)
    # What nginx saw, for a failing test's message: each answer's status and which instance gave which.
    config = config.replace(
        "access_log off;",
        "log_format diagnostic '$status $upstream_addr $upstream_status';\n"
        f"    access_log {directory}/access.log diagnostic;",
        1,
    )
    config = config.replace("error_log stderr warn;", f"error_log {directory}/error.log warn;")
    path = directory / "nginx.conf"
    path.write_text(config)
    return path


class Cluster:
    def __init__(self, directory: Path, env: dict[str, str] | None = None):
        self.directory = directory
        # No recycling: with the cache answering ab's repeated body at ~1500 requests/s, a one-worker instance
        # would reach MAX_REQUESTS within seconds and be re-forked mid-test; nginx then marks it failed for
        # fail_timeout, and if that falls while the other instance restarts, nothing is left to answer.
        # Recycling has its own tests.
        self.env = {"LOG_REQUESTS": "false", "MAX_REQUESTS": "0", **(env or {})}
        self.ports = [free_port(), free_port()]
        self.instances = [self._instance(i) for i in range(2)]
        self.listen = free_port()
        self.url = f"http://127.0.0.1:{self.listen}"
        self.nginx = None

    def _instance(self, index: int) -> GunicornProcess:
        return GunicornProcess(
            self.env,
            workers=1,
            port=self.ports[index],
            log_path=self.directory / f"instance{index}-{time.monotonic_ns()}.log",
        )

    def start(self):
        try:
            return self._start()
        except BaseException:
            self.stop()  # never leave instances behind a failed start
            raise

    def _start(self):
        for instance in self.instances:
            instance.start()
        config = render_nginx(self.directory, self.ports, self.listen)
        self.nginx = subprocess.Popen(
            [NGINX, "-p", str(self.directory), "-c", str(config), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(self.url + "/nginx-health", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)

    def restart(self, index: int) -> None:
        self.instances[index] = self._instance(index)
        self.instances[index].start()

    def served(self, index: int) -> float:
        return self.instances[index].metric(
            "embedding_requests_total", route="/embed_text", method="POST", status="200"
        )

    def diagnosis(self) -> str:
        """The answers that were not 200, counted by (status, instances tried, their statuses), and nginx's errors."""
        access = (self.directory / "access.log").read_text().splitlines()
        counts = collections.Counter(line for line in access if not line.startswith("200 "))
        errors = (self.directory / "error.log").read_text().splitlines()
        return f"{counts.most_common(8)}\nnginx errors: {errors[:5]} ... {errors[-5:]}"

    def stop(self):
        if self.nginx:
            self.nginx.send_signal(signal.SIGQUIT)
            self.nginx.wait(timeout=30)
        for instance in self.instances:
            instance.stop()


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path).start()
    yield cluster
    cluster.stop()


def wait_until(predicate, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {message}"
        time.sleep(0.05)


WRK_CONNECTIONS = 8


def wrk(url: str, seconds: int, connections: int = WRK_CONNECTIONS) -> subprocess.Popen:
    return subprocess.Popen(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            "-s",
            str(ROOT / "bench/wrk_embed.lua"),
            url,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def ab(url: str, requests_: int, concurrency: int = 4) -> subprocess.Popen:
    return subprocess.Popen(
        [
            "ab",
            "-k",
            "-n",
            str(requests_),
            "-c",
            str(concurrency),
            "-s",
            "60",
            "-p",
            str(ROOT / "bench/embed_text.json"),
            "-T",
            "application/json",
            url + "/embed_text",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def ab_result(proc: subprocess.Popen) -> tuple[int, int]:
    out, _ = proc.communicate(timeout=300)
    ab_result.last_summary = out[out.find("Complete requests") :][:600]
    complete = int(re.search(r"Complete requests:\s+(\d+)", out).group(1))
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    return complete, failed + (int(non_2xx.group(1)) if non_2xx else 0)


@pytest.mark.extended
@pytest.mark.slow
@needs_tools
def test_nginx_spreads_load_and_hides_metrics(cluster):
    complete, failed = ab_result(ab(cluster.url, 200))
    assert complete == 200 and failed == 0
    assert cluster.served(0) > 0 and cluster.served(1) > 0  # least_conn used both
    assert requests.get(cluster.url + "/metrics", timeout=5).status_code == 404
    response = requests.post(
        cluster.url + "/embed_text", json={"texts": "id"}, headers={"X-Request-ID": "via-nginx"}, timeout=30
    )
    assert response.headers["X-Request-ID"] == "via-nginx"
    generated = requests.post(cluster.url + "/embed_text", json={"texts": "id"}, timeout=30).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)  # nginx's $request_id, passed through
    too_big = requests.post(
        cluster.url + "/embed_text",
        data=b"x" * (17 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    # nginx's own errors come in the service's JSON envelope too
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
    long_line = requests.get(cluster.url + "/" + "a" * 20_000, timeout=10)
    assert long_line.status_code == 414 and long_line.json()["error"]["code"] == "uri_too_long"
    huge_header = requests.get(cluster.url + "/health", headers={"X-Big": "b" * 20_000}, timeout=10)
    assert huge_header.status_code == 400 and huge_header.json()["error"]["code"] == "invalid_request"
    for instance in cluster.instances:
        instance.kill()
    down = requests.post(cluster.url + "/embed_text", json={"texts": "anyone?"}, timeout=30)
    assert down.status_code == 503 and down.headers["Retry-After"] == "1"
    assert down.json()["error"]["code"] == "overloaded"


@pytest.mark.extended
@pytest.mark.slow
@needs_tools
def test_sigkill_of_an_instance_under_load_loses_nothing_and_it_comes_back(cluster):
    load = wrk(cluster.url, seconds=10)
    wait_until(lambda: cluster.served(1) >= 20, 30, "the second instance serves part of the load")
    cluster.instances[1].kill()
    out, _ = load.communicate(timeout=120)
    print(out)  # the README quotes this run's figures
    # nginx retries every request the dead instance had not started answering (connection
    # refused or reset before a status line). A response SIGKILL tears between gunicorn's
    # header and body writes already sent its 200 to the client and cannot be retried:
    # wrk counts it as a read error, at most one per connection.
    assert "non-2xx: 0," in out, out
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        connect, read, write, timeout = map(int, errors.groups())
        assert connect == write == timeout == 0 and read <= WRK_CONNECTIONS, out
    total = int(re.search(r"requests: (\d+)", out).group(1))
    assert total > 50
    cluster.restart(1)

    def back_in_rotation():
        requests.post(cluster.url + "/embed_text", json={"texts": "are you back?"}, timeout=30).raise_for_status()
        return cluster.served(1) > 0

    wait_until(back_in_rotation, 60, "nginx sends traffic to the restarted instance")


@pytest.mark.extended
@pytest.mark.slow
@needs_tools
def test_rolling_restart_loses_nothing(cluster):
    load = ab(cluster.url, 100_000, concurrency=4)
    for index in (0, 1):
        wait_until(lambda: cluster.served(1 - index) >= 10, 30, "the other instance carries load")
        cluster.instances[index].stop()  # SIGTERM: drain, then exit
        cluster.restart(index)
        wait_until(lambda: cluster.served(index) > 0, 60, f"instance {index} is back in rotation")
    load.send_signal(signal.SIGINT)  # ab prints its summary on SIGINT
    complete, failed = ab_result(load)
    print(f"rolling restart under ab: {complete} requests, {failed} failed")
    assert complete > 50 and failed == 0, ab_result.last_summary + cluster.diagnosis()


@pytest.mark.extended
@pytest.mark.slow
@needs_tools
def test_nginx_shields_gthread_instances_from_slow_clients(tmp_path):
    """gthread and sync workers hold a thread per connection; 40 clients dripping their bodies would take every
    thread of both instances. In front of them nginx reads whole bodies itself, so the instances never see the
    slow ones and a normal request is answered at once."""
    cluster = Cluster(tmp_path, {"WORKER_CLASS": "gthread", "ALLOW_UNBOUNDED_QUEUE": "true", "THREADS": "2"}).start()
    slow = []
    try:
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", cluster.listen), timeout=10)
            sock.sendall(
                b"POST /embed_text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"texts": '
            )  # and then nothing for now
            slow.append(sock)
        started = time.monotonic()
        for _ in range(8):
            response = requests.post(cluster.url + "/embed_text", json={"texts": "not slow"}, timeout=30)
            assert response.status_code == 200
        assert time.monotonic() - started < 10
        assert cluster.served(0) + cluster.served(1) == 8  # the slow ones never reached an instance
    finally:
        for sock in slow:
            sock.close()
        cluster.stop()


@pytest.mark.extended
@pytest.mark.slow
@needs_tools
def test_a_bulk_job_through_nginx_survives_a_rolling_restart(tmp_path):
    """`embedding-service bulk` against the project's nginx in front of two instances, each restarted in turn
    mid-job: the job ends with every record, vectors equal to /embed_text's, and both instances did work."""
    import json

    import numpy as np
    import pyarrow.parquet as pq

    cluster = Cluster(tmp_path, env={"DTYPE": "float32"}).start()
    try:
        texts = [f"record {i}: " + "the corpus of a bulk job " * (1 + i % 7) for i in range(6000)]
        source = tmp_path / "in.txt"
        source.write_text("".join(text + "\n" for text in texts))
        command = [str(Path(sys.executable).with_name("embedding-service")), "bulk", str(source)]
        command += [str(tmp_path / "out.parquet"), "--url", cluster.url, "--chunk-size", "200", "--json"]
        # small requests, two at a time: the job lasts through both restarts
        command += ["--concurrency", "2", "--batch-tokens", "256"]
        job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        restarted_mid_job = 0
        for index in (0, 1):
            wait_until(lambda: cluster.served(1 - index) >= 5, 120, "the other instance carries the job")
            restarted_mid_job += job.poll() is None
            cluster.instances[index].stop()  # SIGTERM: drain, then exit; nginx sends the job to the other
            cluster.restart(index)
        assert restarted_mid_job >= 1
        out, err = job.communicate(timeout=600)
        assert job.returncode == 0, err[-3000:]
        assert json.loads(out)["embedded"] == 6000
        table = pq.read_table(tmp_path / "out.parquet")
        assert table.column("id").to_pylist() == [str(i) for i in range(6000)]
        vectors = np.asarray(table.column("embedding").to_pylist()[::100], dtype=np.float32)
        answer = requests.post(cluster.url + "/embed_text", json={"texts": texts[::100]}, timeout=120).json()
        assert np.allclose(vectors, np.asarray(answer["embeddings"], dtype=np.float32), atol=1e-5)
    finally:
        cluster.stop()
