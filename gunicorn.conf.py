"""Gunicorn configuration for the embedding service.

Every value comes from the one Settings object (see the README's settings
table), so `gunicorn -c gunicorn.conf.py` needs no other argument. The model
is loaded once in the master (preload_app) and shared copy-on-write by the
workers; each worker sets its torch threads and warms up after fork.
"""

import os
import sys

from app.config import ConfigError, Settings
from app.logs import gunicorn_logconfig
from app.runtime import bind_problem, gpu_visible, prepare_metrics_dir
from app.sizing import cpu_budget

try:
    _settings = Settings.from_env()
except ConfigError as exc:
    sys.exit(f"config error: {exc}")
# Checked once per master: gunicorn re-reads this file on SIGHUP while it holds the port itself, and a
# re-executed master (USR2) inherits the socket (GUNICORN_FD).
if not os.environ.get("EMBEDDING_BIND_CHECKED") and "GUNICORN_FD" not in os.environ:
    if _problem := bind_problem(_settings.bind):
        sys.exit(f"config error: BIND: {_problem}")
    os.environ["EMBEDDING_BIND_CHECKED"] = "1"

# Before anything imports prometheus_client: every worker writes its metrics here.
_metrics_dir, _metrics_dir_is_ours = prepare_metrics_dir(_settings)

# ------------------------------------------------------------------ server socket
bind = _settings.bind

# ------------------------------------------------------------------ application
wsgi_app = "app.wsgi:application"
# Load the model in the master before fork; workers share its pages.
preload_app = _settings.preload

# ------------------------------------------------------------------ worker processes
# Inference is CPU-bound: workers x torch threads should not exceed the CPUs this
# process may use (its affinity and cgroup quota, not the host's cores), so the
# default is one worker per usable CPU (one in all on a GPU), not 2 x cores + 1.
_budget = cpu_budget()
_gpu = gpu_visible(_settings.device)
workers = _settings.resolved_workers(_budget.cpus, gpu=_gpu)
worker_class = _settings.worker_class
# gunicorn silently turns a sync worker with threads > 1 into gthread; THREADS is for gthread alone.
threads = _settings.threads if worker_class == "gthread" else 1
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
# Recycle workers now and then so a slow leak cannot grow forever; with preload a
# new worker is a fork of the master and needs no model load.
max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests_jitter

# ------------------------------------------------------------------ server mechanics
# gunicorn >= 24 opens a control socket at one fixed path per user; several
# instances on one host would fight over it, and nothing here uses it.
control_socket_disable = True

# ------------------------------------------------------------------ logging
loglevel = _settings.log_level
errorlog = "-"
logconfig_dict = gunicorn_logconfig(_settings) or {}
logger_class = "app.gunicorn_logger.Logger"


# ------------------------------------------------------------------ hooks
def on_starting(server):
    from app import gunicorn_errors, gunicorn_response

    gunicorn_errors.install()  # gunicorn's own 400/414/431 answers in the JSON envelope, not HTML
    gunicorn_response.install()  # a response's head and body in one write
    if worker_class != "gthread" and _settings.threads > 1:
        server.log.info(
            "WORKER_CLASS=%s: THREADS=%d applies to gthread workers only, not used", worker_class, _settings.threads
        )
    server.log.info(
        "sizing: %s%s -> %d workers x %d torch threads",
        _budget.found,
        ", a GPU" if _gpu else "",
        workers,
        _settings.resolved_cpu_threads(_budget.cpus, gpu=_gpu),
    )


def when_ready(server):
    from app.runtime import freeze_master_heap

    freeze_master_heap()


def post_worker_init(worker):
    from app.runtime import start_worker

    start_worker(worker)


def worker_exit(server, worker):
    from app.runtime import worker_leaving

    worker_leaving(worker)


def child_exit(server, worker):
    from app.runtime import worker_exited

    worker_exited(worker)


def on_exit(server):
    if _metrics_dir_is_ours:
        from app.runtime import remove_metrics_dir

        remove_metrics_dir(_metrics_dir)
