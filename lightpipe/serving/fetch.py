"""Fetching a client's http(s) URL on the server without opening a way in (SSRF):

- only http and https, on the default or a given port, without user:password;
- the host is resolved once and every address it resolves to must be public: no private,
  loopback, link-local, multicast, reserved or unspecified address (IPv4-mapped, 6to4 and
  Teredo IPv6 addresses are judged by the IPv4 address inside); the connection goes to the
  checked address, so a second DNS answer cannot swap it (DNS rebinding);
- redirects are followed by hand (at most 5), each target checked the same way, never to
  another scheme than http(s);
- one deadline for the whole fetch and a size cap on the body.

Whatever goes wrong, the caller learns only ``UrlRefused`` (the reason goes to the log), so a
client cannot map what lies behind the server. Runs in a thread: it blocks.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import ipaddress
import logging
import os
import socket
import ssl
import time
import urllib.parse

logger = logging.getLogger("lightpipe.serving")

MAX_REDIRECTS = 5


class UrlRefused(Exception):
    """The URL could not be used (the reason is logged, not told)."""


def fetch(url: str, timeout: float, max_bytes: int) -> bytes:
    """The body at ``url`` (see the module docstring), or ``UrlRefused``."""
    deadline = time.monotonic() + timeout
    try:
        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
            raise ValueError("HF_HUB_OFFLINE is set")
        for _ in range(MAX_REDIRECTS + 1):
            status, location, body = _get(url, deadline, max_bytes)
            if location is None:
                if status != 200:
                    raise ValueError(f"HTTP {status}")
                return body
            url = urllib.parse.urljoin(url, location)
        raise ValueError("too many redirects")
    except UrlRefused:
        raise
    except Exception as error:  # anything: refused, without the reason
        logger.info("URL input refused (%s): %s", type(error).__name__, error)
        raise UrlRefused() from None


def public_address(address: str) -> bool:
    """Whether ``address`` is a public unicast address a server may connect to."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None and not public_address(str(inner)):
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified
                                 or ip.is_loopback or ip.is_link_local or ip.is_private)


# getaddrinfo has no timeout of its own: lookups run here and are waited for until the
# fetch's deadline (a lookup that hangs holds one of these threads, never a request).
_DNS_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="lightpipe-dns")


def _resolve(host: str, port: int, deadline: float | None = None) -> str:
    """One checked address of ``host`` (every address it resolves to must be public), looked
    up before ``deadline`` (time.monotonic())."""
    lookup = _DNS_POOL.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        infos = lookup.result(timeout=wait)
    except concurrent.futures.TimeoutError:
        lookup.cancel()
        raise TimeoutError(f"looking up {host} took too long") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise ValueError(f"{host} does not resolve")
    for address in addresses:
        if not public_address(address):
            raise ValueError(f"{host} resolves to a non-public address {address}")
    return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _get(url: str, deadline: float, max_bytes: int) -> tuple[int, str | None, bytes]:
    """One GET: (status, the redirect's Location or None, the body of a 200)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"scheme {parts.scheme!r} or host missing")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = _resolve(parts.hostname, port, deadline)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("out of time")
    kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = kind(parts.hostname, address, port, remaining)
    try:
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        connection.request("GET", path, headers={"User-Agent": "lightpipe", "Accept-Encoding": "identity"})
        sock = connection.sock  # kept: getresponse() may let go of it when the answer closes
        response = connection.getresponse()
        if response.status in (301, 302, 303, 307, 308):
            return response.status, response.getheader("Location") or "", b""
        if response.status != 200:
            return response.status, None, b""
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise ValueError(f"{length} bytes is over the limit")
        chunks, size = [], 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("out of time")
            sock.settimeout(remaining)
            chunk = response.read1(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise ValueError("the body is over the limit")
            chunks.append(chunk)
        return 200, None, b"".join(chunks)
    finally:
        connection.close()
