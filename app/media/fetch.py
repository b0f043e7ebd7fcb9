"""Fetching image URLs without letting callers reach what the server can reach.

An image URL asks this server to make a request on the caller's behalf
(server-side request forgery). So, for every connection, redirects included:

- the scheme is http or https and the host is on ALLOWED_IMAGE_HOSTS (when set);
- the name is resolved here, every address it resolves to is checked, and the
  socket connects to a checked address, so DNS cannot answer differently
  between the check and the connection (rebinding);
- loopback, private, link-local, shared, multicast, reserved and unspecified
  addresses are refused unless ALLOWED_IMAGE_NETWORKS names them, and cloud
  metadata endpoints are refused always;
- at most MAX_REDIRECTS redirects, each checked as a new URL;
- one deadline (IMAGE_FETCH_TIMEOUT) covers connecting, every read and the
  redirects, and the body is streamed against MAX_IMAGE_BYTES, whatever
  Content-Length claims.

TLS is verified against the host name (SNI and certificate), as usual: only
the TCP connection goes to the checked address. Proxy variables are ignored.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import time
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

from ..config import Settings
from ..errors import InvalidRequest
from .images import image_too_large

MAX_REDIRECTS = 3
_CHUNK = 64 * 1024
_REDIRECTS = {301, 302, 303, 307, 308}
# Instance metadata services (AWS/GCP/Azure/OpenStack, AWS IPv6, ECS task role, Alibaba):
# never reachable, whatever ALLOWED_IMAGE_NETWORKS says.
_METADATA = tuple(
    ipaddress.ip_network(n)
    for n in ("169.254.169.254/32", "169.254.170.2/32", "fd00:ec2::254/128", "100.100.100.200/32")
)


class _Refused(Exception):
    """Raised inside http.client's connect; turned into a 400 by the fetcher."""


class AddressPolicy:
    def __init__(self, allowed_networks: tuple[str, ...] = ()):
        self.allowed = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)

    def refusal(self, address: str) -> str | None:
        """Why a connection to `address` is refused, or None if it is allowed."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in _METADATA):
            return "a cloud metadata address"
        if any(ip.version == network.version and ip in network for network in self.allowed):
            return None
        for kind, flag in (
            ("a loopback", ip.is_loopback),
            ("a link-local", ip.is_link_local),
            ("a private", ip.is_private),
            ("a multicast", ip.is_multicast),
            ("an unspecified", ip.is_unspecified),
            ("a non-public", not ip.is_global),
        ):
            if flag:
                return f"{kind} address"
        return None


def host_allowed(host: str, allowed_hosts: tuple[str, ...]) -> bool:
    """Exact names (or IP literals), and `*.example.com` for any subdomain of example.com."""
    if not allowed_hosts:
        return True
    host = host.lower().rstrip(".")
    for entry in allowed_hosts:
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
        if host == entry:
            return True
    return False


class ImageFetcher:
    def __init__(
        self,
        *,
        allowed_hosts: tuple[str, ...] = (),
        allowed_networks: tuple[str, ...] = (),
        timeout: float = Settings.image_fetch_timeout,
        max_bytes: int = Settings.max_image_bytes,
        max_redirects: int = MAX_REDIRECTS,
        resolve: Callable | None = None,
        accept: str = "image/*, application/pdf",
        too_large: Callable[[str, int], Exception] = image_too_large,
    ):
        self.allowed_hosts = allowed_hosts
        self.policy = AddressPolicy(allowed_networks)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.accept = accept
        self.too_large = too_large  # the caller's 413, naming its own limit
        # Looked up per call by default: under gevent the module is patched after this object exists.
        self.resolve = resolve

    def fetch(self, url: str, param: str) -> bytes:
        deadline = time.monotonic() + self.timeout
        for _ in range(self.max_redirects + 1):
            location = self._get(url, param, deadline)
            if isinstance(location, bytes):
                return location
            url = urljoin(url, location)
        raise InvalidRequest(
            f"{param}: more than {self.max_redirects} redirects", param=param, code="image_fetch_failed"
        )

    # ------------------------------------------------------------------ one hop
    def _get(self, url: str, param: str, deadline: float) -> bytes | str:
        """The body, or the Location of a redirect."""
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # "http://[::1" and the like: the caller's malformed URL, not our fault
            raise _refused(param, f"{url!r} is not a valid URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise _refused(param, f"{scheme or 'no'} scheme (only http and https)")
        host = parts.hostname
        if not host:
            raise _refused(param, f"{url!r} has no host")
        if not host_allowed(host, self.allowed_hosts):
            raise _refused(param, f"the host {host!r} is not in ALLOWED_IMAGE_HOSTS")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise _refused(param, f"{url!r} has an invalid port") from None
        connection_class = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        connection = connection_class(host, port, timeout=self._left(deadline, param))
        # Every socket http.client opens goes through the address checks.
        connection._create_connection = self._connect
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request(
                "GET",
                target,
                headers={
                    "Accept": self.accept,
                    "Accept-Encoding": "identity",
                    "User-Agent": "embedding-service/1 (image fetch)",
                },
            )
            sock = connection.sock  # the TLS socket for https; kept before getresponse may drop it
            sock.settimeout(self._left(deadline, param))
            response = connection.getresponse()
            if response.status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise _failed(param, f"HTTP {response.status} without a Location header")
                return location
            if response.status != 200:
                raise _failed(param, f"HTTP {response.status} {response.reason}".strip())
            return self._read(response, sock, param, deadline)
        except _Refused as exc:
            raise _refused(param, str(exc)) from None
        except TimeoutError:
            raise _failed(param, f"timed out after {self.timeout:g}s (IMAGE_FETCH_TIMEOUT)") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _failed(param, f"{type(exc).__name__}: {exc}") from None
        finally:
            connection.close()

    def _read(self, response: http.client.HTTPResponse, sock: socket.socket, param: str, deadline: float) -> bytes:
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise self.too_large(param, self.max_bytes)
        chunks, size = [], 0
        while True:
            # read1 returns after one receive, so the deadline bounds a slow drip too.
            sock.settimeout(self._left(deadline, param))
            chunk = response.read1(_CHUNK)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_bytes:
                raise self.too_large(param, self.max_bytes)
            chunks.append(chunk)

    def _connect(self, address, timeout=None, source_address=None):
        host, port = address
        try:
            infos = (self.resolve or socket.getaddrinfo)(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise _Refused(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
        for *_, sockaddr in infos:
            reason = self.policy.refusal(sockaddr[0])
            if reason:
                raise _Refused(
                    f"{host!r} resolves to {sockaddr[0]}, {reason} (ALLOWED_IMAGE_NETWORKS can allow internal networks)"
                )
        error: OSError | None = None
        for family, kind, proto, _, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        raise error or OSError(f"no address for {host!r}")

    def _left(self, deadline: float, param: str) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _failed(param, f"timed out after {self.timeout:g}s (IMAGE_FETCH_TIMEOUT)")
        return left


def _refused(param: str, reason: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: the URL is refused: {reason}", param=param, code="image_url_refused")


def _failed(param: str, reason: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: the image could not be fetched: {reason}", param=param, code="image_fetch_failed")
