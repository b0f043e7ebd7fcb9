"""gunicorn's logger, building its access line only when a handler would write it.

In JSON mode (the default) logconfig_dict switches `gunicorn.access` off, since the app writes a richer line
per request (app/logs.py). gunicorn still counts its access log as enabled whenever a logconfig is given, and
then builds the line's atoms (a dozen header and environ lookups, a strftime) for every request and drops the
result: about 3 % of a one-text request's event-loop time (docs/performance.md, "Small requests").
"""

from __future__ import annotations

import logging

from gunicorn.glogging import Logger as GunicornLogger


class Logger(GunicornLogger):
    def access(self, resp, req, environ, request_time):
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)
