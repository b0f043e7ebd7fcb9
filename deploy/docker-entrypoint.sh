#!/bin/sh
# Container entrypoint: an empty Prometheus multiprocess directory, then gunicorn
# as PID 1's replacement so SIGTERM from `docker stop` reaches its master.
set -eu
: "${PROMETHEUS_MULTIPROC_DIR:=/tmp/embedding-metrics}"
export PROMETHEUS_MULTIPROC_DIR
rm -rf "$PROMETHEUS_MULTIPROC_DIR"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
cd "${APP_HOME:-/srv/embedding}"
exec gunicorn -c gunicorn.conf.py "$@"
