"""MAX_CONTENT_LENGTH on every framing, over raw sockets against a real gunicorn: a chunked body is counted as it
is read and refused with 413 as soon as it goes over; a body shorter than its Content-Length is a 400. A body that
arrives too slowly is a 408 after BODY_TIMEOUT; gunicorn's own errors (a request line or headers too long, a
request it cannot parse) are in the JSON envelope too."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from .gunicorn_process import GunicornProcess

pytestmark = pytest.mark.slow

LIMIT = 64 * 1024
BODY_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("limits") / "server.log"
    env = {"MAX_CONTENT_LENGTH": str(LIMIT), "DTYPE": "float32", "BODY_TIMEOUT": str(BODY_TIMEOUT)}
    with GunicornProcess(env, workers=1, log_path=log) as proc:
        yield proc


def exchange(server, head: bytes, chunks, half_close: bool = False) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and stopped reading: what we want to see
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
            more = sock.recv(65536)
            if not more:
                break
            data += more
    status = int(data.split(b" ", 2)[1])
    body = data.split(b"\r\n\r\n", 1)[1]
    return status, json.loads(body) if body.startswith(b"{") else {}


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def chunked(payloads):
    for payload in payloads:
        yield f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
    yield b"0\r\n\r\n"


HEAD = (
    b"POST /embed_text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
)


def test_a_chunked_body_within_the_limit_is_served(server):
    status, body = exchange(server, HEAD, chunked([b'{"texts": ', b'"chunked"}']))
    assert status == 200 and body["dimension"] == 384


def test_valid_json_padded_past_the_limit_is_a_413(server):
    status, body = exchange(server, HEAD, chunked([b'{"texts": "x"}', b" " * (LIMIT + 10)]))
    assert status == 413 and body["error"]["code"] == "payload_too_large"


def test_a_50_mb_chunked_body_is_refused_without_reading_it_all(server):
    status, body = exchange(server, HEAD, chunked(b"x" * 65536 for _ in range(800)))
    assert status == 413 and body["error"]["code"] == "payload_too_large"


def test_a_body_shorter_than_its_content_length_is_a_400(server):
    head = (
        b"POST /embed_text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\nConnection: close\r\n\r\n"
    )
    status, body = exchange(server, head, [b'{"texts": "x"}'], half_close=True)
    assert status == 400 and "Content-Length" in body["error"]["message"]
    status, _ = exchange(server, HEAD, chunked([b'{"texts": "after all that"}']))
    assert status == 200


def drip(data: bytes, pause: float):
    for byte in data:
        yield bytes([byte])
        time.sleep(pause)


@pytest.mark.extended
@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_a_stalled_body_is_a_408_and_the_worker_serves_on(tmp_path, worker_class):
    env = {
        "DTYPE": "float32",
        "BODY_TIMEOUT": str(BODY_TIMEOUT),
        "WORKER_CLASS": worker_class,
        "ALLOW_UNBOUNDED_QUEUE": "true",
    }
    with GunicornProcess(env, workers=1, log_path=tmp_path / "server.log") as server:
        head = b"POST /embed_text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        started = time.monotonic()
        status, body = exchange(server, head, [b'{"texts": '])  # then nothing, connection kept open
        assert status == 408 and body["error"]["code"] == "body_timeout"
        assert BODY_TIMEOUT <= time.monotonic() - started < BODY_TIMEOUT + 5
        status, _ = exchange(server, HEAD, chunked([b'{"texts": "still serving"}']))
        assert status == 200


def test_a_dripped_body_is_cut_off_as_a_whole_under_gevent(server):
    """Each byte arrives well within BODY_TIMEOUT; the body as a whole does not."""
    head = b"POST /embed_text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    started = time.monotonic()
    status, body = exchange(server, head, drip(b'{"texts": "one byte at a time........"}', 0.2))
    assert status == 408 and time.monotonic() - started < BODY_TIMEOUT + 3


@pytest.mark.parametrize(
    "raw,status,code",
    [
        (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 10_000 + b"\r\n\r\n", 431, "headers_too_large"),
        (b"NOT A REQUEST\r\n\r\n", 400, "invalid_request"),
    ],
)
def test_gunicorns_own_errors_are_json(server, raw, status, code):
    got, body = exchange(server, raw, [])
    assert got == status and body["error"]["code"] == code and body["error"]["message"]
    assert exchange(server, HEAD, chunked([b'{"texts": "fine"}']))[0] == 200


@pytest.mark.parametrize(
    "route,body,status,param",
    [
        ("/embed_text", b'{"texts": ["a"], "texts": ["b"]}', 400, "texts"),
        ("/v1/embeddings", b'{"input": "a", "model": "x", "input": "b"}', 400, "input"),
        ("/v1/embeddings", b'{"input": [[{"type": "text", "text": "a", "text": "b"}]]}', 400, "text"),
    ],
)
def test_a_key_given_twice_is_refused_not_guessed(server, route, body, status, param):
    """#32 finding 11: JSON parsers disagree on which of two equal keys wins; the body is ambiguous."""
    response = requests.post(server.url + route, data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json" and error["param"] == param and "more than once" in error["message"]


def test_tei_answers_a_duplicate_key_in_its_shape(server):
    response = requests.post(server.url + "/embed", data=b'{"inputs": "a", "inputs": "b"}', timeout=30)
    assert response.status_code == 422 and "more than once" in response.json()["error"]
