"""A response of known length goes out in one write: its head and its body in one `sendall`.

gunicorn writes a response's head and its body with two `sendall` calls (TCP_NODELAY is on, so two segments),
and the client is woken twice for one answer. For a one-text embedding that second system call and wake-up
are a measurable share of the request (docs/performance.md, "Small requests"); hyper (behind TEI) writes both
at once. `install` wraps `Response.write` once, in the master (the workers inherit it): the first write of a
body that is the whole of a declared Content-Length runs gunicorn's own `write` against a buffer (its
bookkeeping, HEAD and no-body rules unchanged) and sends what it wrote in one call. Chunked, streamed and
sendfile responses are written as gunicorn writes them.
"""

from __future__ import annotations


class _Collected:
    """Stands in for the socket while gunicorn's own `write` runs: keeps what it sends."""

    def __init__(self):
        self.parts: list[bytes] = []

    def sendall(self, data) -> None:
        self.parts.append(bytes(data))


def install() -> None:
    from gunicorn.http import wsgi

    if getattr(wsgi.Response.write, "one_write", False):
        return
    write = wsgi.Response.write

    def write_once(self, data):
        whole = (
            not self.headers_sent and not self.chunked and isinstance(data, bytes) and self.response_length == len(data)
        )
        if not whole:
            return write(self, data)
        sock, collected = self.sock, _Collected()
        self.sock = collected
        try:
            write(self, data)
        finally:
            self.sock = sock
        sock.sendall(b"".join(collected.parts))

    write_once.one_write = True
    wsgi.Response.write = write_once
