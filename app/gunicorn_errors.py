"""gunicorn's own error answers (a request line or header it will not parse: 400, 414, 431, ...) in the service's
JSON envelope instead of gunicorn's HTML page, so every answer a client gets parses the same way.

gunicorn writes them through `gunicorn.util.write_error` before any WSGI code runs; that function is replaced
once, in the master, and the workers inherit it.
"""

from __future__ import annotations

import json

_CODES = {
    400: "invalid_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
    500: "server_error",
}


def error_bytes(status: int, reason: str, message: str) -> bytes:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    text = f"{reason}: {message}" if message else reason
    body = json.dumps(
        {"error": {"message": text, "type": kind, "param": None, "code": _CODES.get(status, "invalid_request")}}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    return head + body


def install() -> None:
    from gunicorn import util

    def write_error(sock, status_int, reason, mesg):
        util.write_nonblock(sock, error_bytes(int(status_int), str(reason), str(mesg)))

    util.write_error = write_error
