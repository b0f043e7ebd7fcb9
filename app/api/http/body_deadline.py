"""A deadline on reading a request body, so a client that sends it one byte at a time, or stops halfway, holds a
worker's connection for BODY_TIMEOUT seconds at most (408), not forever.

Under gevent the deadline covers the whole body (a gevent.Timeout, which interrupts the greenlet's socket read);
under gthread and sync each read of the socket gets the timeout (a thread cannot be interrupted), which stops a
client that stalls but not one that drips: those deployments put nginx in front, which buffers whole bodies.
"""

from __future__ import annotations

import functools
import socket
from contextlib import contextmanager

from flask import request

from ...errors import RequestTimeout


@functools.cache  # a worker is patched (or not) before it serves its first request
def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket")


def _too_slow(seconds: float) -> RequestTimeout:
    return RequestTimeout(f"the request body did not arrive within {seconds:g} seconds (BODY_TIMEOUT)")


def _stop_reading(sock) -> None:
    """The rest of a late body is not wanted: gunicorn would otherwise wait for it before closing."""
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass


@contextmanager
def body_deadline(seconds: float):
    sock = request.environ.get("gunicorn.socket")
    if sock is None:  # not under gunicorn (Flask's test client, `flask run`)
        yield
        return
    if _gevent_patched():
        import gevent

        timeout = gevent.Timeout(seconds)
        timeout.start()
        try:
            yield
        except gevent.Timeout as exc:
            if exc is not timeout:
                raise
            _stop_reading(sock)
            raise _too_slow(seconds) from None
        finally:
            timeout.close()
        return
    previous = sock.gettimeout()
    sock.settimeout(seconds)
    try:
        yield
    except TimeoutError:
        _stop_reading(sock)
        raise _too_slow(seconds) from None
    finally:
        try:
            sock.settimeout(previous)
        except OSError:
            pass
