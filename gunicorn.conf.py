"""Gunicorn configuration for the embedding service.

Every value comes from the one Settings object (see the README's settings
table), so `gunicorn -c gunicorn.conf.py` needs no other argument. The model
is loaded once in the master (preload_app) and shared copy-on-write by the
workers; each worker sets its torch threads and warms up after fork.
"""

import sys

from app.config import ConfigError, Settings

try:
    _settings = Settings.from_env()
except ConfigError as exc:
    sys.exit(f"config error: {exc}")

# ------------------------------------------------------------------ server socket
bind = _settings.bind

# ------------------------------------------------------------------ application
wsgi_app = "app.wsgi:application"
# Load the model in the master before fork; workers share its pages.
preload_app = _settings.preload

# ------------------------------------------------------------------ worker processes
# Inference is CPU-bound: workers x torch threads should not exceed the cores,
# so the default is one worker per core (one in all on a GPU), not 2 x cores + 1.
workers = _settings.resolved_workers()
worker_class = _settings.worker_class
threads = _settings.threads
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive

# ------------------------------------------------------------------ server mechanics
# gunicorn >= 24 opens a control socket at one fixed path per user; several
# instances on one host would fight over it, and nothing here uses it.
control_socket_disable = True

# ------------------------------------------------------------------ logging
loglevel = _settings.log_level
errorlog = "-"


# ------------------------------------------------------------------ hooks
def when_ready(server):
    from app.runtime import freeze_master_heap

    freeze_master_heap()


def post_worker_init(worker):
    from app.runtime import start_worker

    start_worker(worker.wsgi)
