"""Image URL fetching against real local HTTP servers: what is refused, and what gets through."""

from __future__ import annotations

import http.server
import io
import socket
import threading

import numpy as np
import pytest
from PIL import Image

from app import create_app
from app.config import ConfigError, Settings
from app.errors import InvalidRequest, PayloadTooLarge
from app.media.fetch import AddressPolicy, ImageFetcher, host_allowed

from .test_vision import encode, picture, tiny_vision_model

PNG = encode(picture(40, 30, 7))
RELEASE = threading.Event()  # holds the /slow handler until a test is done with it
TOGETHER = threading.Barrier(2, timeout=3)  # /together answers only once two fetches are in flight at once


class Handler(http.server.BaseHTTPRequestHandler):
    redirect_to = ""  # set per server

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/cat.png":
            self._send(200, PNG, {"Content-Type": "image/png"})
        elif self.path.startswith("/together"):
            try:
                TOGETHER.wait()
            except threading.BrokenBarrierError:
                TOGETHER.reset()
                self._send(503, b"fetched one at a time", {})
                return
            self._send(200, PNG, {"Content-Type": "image/png"})
        elif self.path == "/redirect":
            self._send(302, b"", {"Location": self.redirect_to})
        elif self.path == "/loop":
            self._send(302, b"", {"Location": "/loop"})
        elif self.path == "/big":
            self._send(200, bytes(50_000), {"Content-Type": "image/png"})
        elif self.path == "/big-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"1388\r\n" + bytes(5000) + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"x")
            self.wfile.flush()
            RELEASE.wait(30)
        else:
            self._send(404, b"missing", {})

    def _send(self, status, body, headers):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(host: str, redirect_to: str = ""):
    handler = type("H", (Handler,), {"redirect_to": redirect_to})
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"


@pytest.fixture(scope="module")
def local():
    """A server on 127.0.0.1, and one on 127.0.0.2 (also loopback) whose /redirect points at the first."""
    first, first_url = serve("127.0.0.1")
    second, second_url = serve("127.0.0.2", redirect_to=f"{first_url}/cat.png")
    yield first_url, second_url
    RELEASE.set()
    first.shutdown()
    second.shutdown()


def fetcher(**kwargs) -> ImageFetcher:
    return ImageFetcher(**{"timeout": 5.0, "max_bytes": 20_000, **kwargs})


def refused(fn) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        fn()
    return info.value


def test_loopback_is_refused_by_address_and_by_name(local):
    first_url, _ = local
    for url in (f"{first_url}/cat.png", first_url.replace("127.0.0.1", "localhost") + "/cat.png"):
        error = refused(lambda: fetcher().fetch(url, "images[0]"))
        assert error.code == "image_url_refused" and "loopback" in error.message and error.param == "images[0]"


def test_an_allowed_network_is_fetched(local):
    first_url, _ = local
    assert fetcher(allowed_networks=("127.0.0.1/32",)).fetch(f"{first_url}/cat.png", "images[0]") == PNG


def test_a_redirect_to_a_refused_address_is_refused(local):
    """127.0.0.2 is allowed, and redirects to 127.0.0.1, which is not: the second connection is checked too."""
    _, second_url = local
    error = refused(lambda: fetcher(allowed_networks=("127.0.0.2/32",)).fetch(f"{second_url}/redirect", "x"))
    assert "127.0.0.1" in error.message and "loopback" in error.message
    both = fetcher(allowed_networks=("127.0.0.0/8",))
    assert both.fetch(f"{second_url}/redirect", "x") == PNG


def test_a_redirect_off_the_host_allow_list_is_refused(local):
    _, second_url = local
    strict = fetcher(allowed_networks=("127.0.0.0/8",), allowed_hosts=("127.0.0.2",))
    error = refused(lambda: strict.fetch(f"{second_url}/redirect", "x"))
    assert "ALLOWED_IMAGE_HOSTS" in error.message and "127.0.0.1" in error.message
    error = refused(lambda: fetcher(allowed_networks=("127.0.0.0/8",)).fetch(f"{second_url}/loop", "x"))
    assert "redirects" in error.message


def test_names_are_checked_after_resolution_on_every_connection(local):
    first_url, _ = local
    port = int(first_url.rsplit(":", 1)[1])
    answers = {
        "images.example": "10.1.2.3",
        "metadata.example": "169.254.169.254",
        "v6.example": "::1",
        "mapped.example": "::ffff:127.0.0.1",
    }

    def resolve(host, port, type=0):  # noqa: A002 - getaddrinfo's keyword
        address = answers[host]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    for host, words in (
        ("images.example", "private"),
        ("metadata.example", "metadata"),
        ("v6.example", "loopback"),
        ("mapped.example", "loopback"),
    ):
        error = refused(lambda: fetcher(resolve=resolve).fetch(f"http://{host}:{port}/cat.png", "x"))
        assert words in error.message, (host, error.message)
    # Metadata stays refused even inside an allowed network.
    permissive = fetcher(resolve=resolve, allowed_networks=("169.254.0.0/16",))
    assert "metadata" in refused(lambda: permissive.fetch(f"http://metadata.example:{port}/", "x")).message


def test_byte_cap_timeout_and_http_errors(local):
    first_url, _ = local
    allowed = fetcher(allowed_networks=("127.0.0.1/32",))
    for path in ("/big", "/big-chunked"):
        with pytest.raises(PayloadTooLarge):
            allowed.fetch(first_url + path, "x")
    error = refused(lambda: allowed.fetch(first_url + "/missing", "x"))
    assert error.code == "image_fetch_failed" and "404" in error.message
    quick = fetcher(allowed_networks=("127.0.0.1/32",), timeout=0.5)
    assert "timed out" in refused(lambda: quick.fetch(first_url + "/slow", "x")).message


def test_url_shapes():
    assert "scheme" in refused(lambda: fetcher().fetch("ftp://example.com/a.png", "x")).message
    assert host_allowed("cdn.example.com", ("*.example.com",))
    assert not host_allowed("example.com.evil.net", ("*.example.com",))
    assert not host_allowed("evil.net", ("example.com",))
    assert host_allowed("anything.net", ())
    policy = AddressPolicy(("10.0.0.0/8",))
    assert policy.refusal("10.2.3.4") is None and "private" in policy.refusal("192.168.1.1")
    assert policy.refusal("8.8.8.8") is None and policy.refusal("100.64.0.1")


def test_settings_validate_networks():
    with pytest.raises(ConfigError, match="ALLOWED_IMAGE_NETWORKS"):
        Settings.from_env({"ALLOWED_IMAGE_NETWORKS": "not-a-network"})
    settings = Settings.from_env(
        {"ALLOWED_IMAGE_NETWORKS": "10.0.0.0/8, 127.0.0.1", "ALLOWED_IMAGE_HOSTS": "Images.Example.com.,*.cdn.net"}
    )
    assert settings.allowed_image_networks == ("10.0.0.0/8", "127.0.0.1/32")
    assert settings.allowed_image_hosts == ("images.example.com", "*.cdn.net")


# ----------------------------------------------------------------- through the route
@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_vision_model(tmp_path_factory.mktemp("fetch") / "clip", "clip")


def route_client(clip_dir, **env):
    settings = Settings.from_env({"MODEL_PATH": str(clip_dir), "DTYPE": "float32", "IMAGE_URL_FETCH": "true", **env})
    return create_app(settings).test_client()


def test_routes_refuse_loopback_and_redirects_to_it_by_default(clip_dir, local):
    first_url, second_url = local
    client = route_client(clip_dir)
    for url in (f"{first_url}/cat.png", f"{second_url}/redirect"):
        response = client.post("/embed_image", json={"images": [url]})
        assert response.status_code == 400
        error = response.get_json()["error"]
        assert error["param"] == "images[0]" and error["code"] == "image_url_refused"


def test_routes_fetch_from_an_allowed_network(clip_dir, local):
    first_url, second_url = local
    client = route_client(clip_dir, ALLOWED_IMAGE_NETWORKS="127.0.0.0/8")
    from_url = client.post("/embed_image", json={"images": [f"{first_url}/cat.png", f"{second_url}/redirect"]})
    inline = client.post(
        "/embed_image", data={"image": (io.BytesIO(PNG), "cat.png")}, content_type="multipart/form-data"
    )
    assert from_url.status_code == 200 and inline.status_code == 200
    urls = np.array(from_url.get_json()["embeddings"])
    np.testing.assert_allclose(urls[0], inline.get_json()["embeddings"][0], atol=1e-6)
    np.testing.assert_allclose(urls[1], urls[0], atol=1e-6)
    openai = client.post("/v1/embeddings", json={"input": f"{first_url}/cat.png", "modality": "image"})
    np.testing.assert_allclose(openai.get_json()["data"][0]["embedding"], urls[0], atol=1e-6)


def test_a_requests_urls_are_fetched_concurrently(clip_dir, local):
    first_url, _ = local
    client = route_client(clip_dir, ALLOWED_IMAGE_NETWORKS="127.0.0.1")
    response = client.post("/embed_image", json={"images": [f"{first_url}/together?a", f"{first_url}/together?b"]})
    assert response.status_code == 200, response.get_json()


def test_routes_apply_the_byte_cap_to_fetched_images(clip_dir, local):
    first_url, _ = local
    client = route_client(clip_dir, ALLOWED_IMAGE_NETWORKS="127.0.0.1", MAX_IMAGE_BYTES="10000")
    response = client.post("/embed_image", json={"images": [f"{first_url}/cat.png", f"{first_url}/big"]})
    assert response.status_code == 413 and response.get_json()["error"]["param"] == "images[1]"


def test_decoded_image_is_the_one_served(local):
    first_url, _ = local
    data = fetcher(allowed_networks=("127.0.0.1/32",)).fetch(f"{first_url}/cat.png", "x")
    assert Image.open(io.BytesIO(data)).size == (40, 30)


@pytest.mark.parametrize("url", ["http://[::1", "http://[::1/cat.png", "https://[not-an-address]/x.png"])
def test_a_malformed_url_is_the_callers_400(url):
    fetcher = ImageFetcher(allowed_hosts=(), allowed_networks=(), timeout=2, max_bytes=1024)
    with pytest.raises(InvalidRequest) as info:
        fetcher.fetch(url, "images[0]")
    assert info.value.status == 400 and info.value.param == "images[0]"
