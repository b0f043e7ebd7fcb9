"""The WSGI entry point gunicorn loads: `app.wsgi:application`."""

import sys

from . import create_app
from .config import ConfigError

try:
    application = create_app()
except ConfigError as exc:
    print(f"config error: {exc}", file=sys.stderr, flush=True)
    # gunicorn's APP_LOAD_ERROR: without preload the master then stops instead of re-forking.
    sys.exit(4)
