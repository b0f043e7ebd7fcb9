"""A response of known length leaves gunicorn in one write (app/gunicorn_response.py), byte for byte what
gunicorn itself would have sent in two; every other response is written as gunicorn writes it."""

from __future__ import annotations

import socket

import pytest
import requests
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import wsgi

from app import gunicorn_response

from .gunicorn_process import GunicornProcess


class Request:
    """What a gunicorn Response reads of its request."""

    def __init__(self, method: str = "POST"):
        self.method = method
        self.version = (1, 1)
        self.headers = []

    def should_close(self) -> bool:
        return False


class Socket:
    def __init__(self):
        self.calls: list[bytes] = []

    def sendall(self, data) -> None:
        self.calls.append(bytes(data))


def respond(method: str, headers: list[tuple[str, str]], chunks: list[bytes]) -> list[bytes]:
    sock = Socket()
    response = wsgi.Response(Request(method), sock, Config())
    response.start_response("200 OK", headers)
    for chunk in chunks:
        response.write(chunk)
    response.close()
    return sock.calls


@pytest.fixture
def patched(monkeypatch):
    """The original write, and the class patched for this test only (restored after it)."""
    original = wsgi.Response.write
    monkeypatch.setattr(wsgi.Response, "write", original)
    monkeypatch.setattr(util, "http_date", lambda *a: "Mon, 07 Dec 2026 18:00:00 GMT")
    gunicorn_response.install()
    gunicorn_response.install()  # twice is once
    assert wsgi.Response.write is not original and wsgi.Response.write.one_write
    return original


BODY = b'{"embeddings": [[0.25, -0.5]]}'
SIZED = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def test_a_sized_body_goes_out_in_one_write_with_the_bytes_gunicorn_writes_in_two(patched, monkeypatch):
    once = respond("POST", SIZED, [BODY])
    monkeypatch.setattr(wsgi.Response, "write", patched)
    twice = respond("POST", SIZED, [BODY])
    assert len(once) == 1 and len(twice) == 2
    assert once[0] == b"".join(twice) and once[0].endswith(b"\r\n\r\n" + BODY)


def test_head_chunked_and_pieced_responses_are_written_as_gunicorn_writes_them(patched, monkeypatch):
    cases = [
        ("HEAD", SIZED, [BODY]),  # the head only: gunicorn drops a HEAD's body
        ("POST", [("Content-Type", "application/x-ndjson")], [b'{"a": 1}\n', b'{"b": 2}\n']),  # chunked
        ("POST", SIZED, [BODY[:10], BODY[10:]]),  # a body in pieces: its first piece is not the whole
        ("POST", [("Content-Length", "0")], [b""]),
    ]
    ours = [respond(*case) for case in cases]
    monkeypatch.setattr(wsgi.Response, "write", patched)
    theirs = [respond(*case) for case in cases]
    assert [b"".join(calls) for calls in ours] == [b"".join(calls) for calls in theirs]
    assert b"Transfer-Encoding: chunked" in ours[1][0] and len(ours[1]) == len(theirs[1])
    assert not ours[0][0].endswith(BODY)


@pytest.mark.slow
def test_keep_alive_answers_stay_framed_over_real_gunicorn(tmp_path):
    """Answers of every shape on one connection, each read to its Content-Length: the next still parses."""
    with GunicornProcess({"DTYPE": "float32"}, workers=1, log_path=tmp_path / "log") as server:
        with requests.Session() as session:
            for _ in range(3):
                assert session.post(server.url + "/embed_text", json={"texts": ["a", "b"]}).status_code == 200
                assert session.head(server.url + "/health").status_code == 200
                assert session.post(server.url + "/embed_text", json={"texts": 3}).status_code == 400
                assert session.get(server.url + "/health").json()["status"]
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as raw:
            raw.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 2)  # pipelined: two answers, in order
            received = b""
            while received.count(b"HTTP/1.1 200") < 2:
                chunk = raw.recv(65536)
                assert chunk, received
                received += chunk
