"""The SSRF-safe fetcher every share link goes through (DESIGN §7).

A link a person pastes is fetched from inside our network, so it must never become a way to reach the
metadata server, a VPC address or the function's own loopback. The rules:

* ``http`` and ``https`` only, written ``scheme://host[:port]/...``; no user info (``user@host``), no
  backslashes, whitespace or control characters, which URL parsers disagree about.
* The host is normalised the way browsers and the C resolver read it (percent-decoding, UTS #46
  mapping of full-width characters and ideographic dots, one trailing dot, IPv4 in decimal, hex, octal
  and short forms, bracketed IPv6) and then checked; the string is never trusted.
* A name is resolved once. Every address it resolves to must be public; the connection then goes to one
  of exactly those addresses (no second lookup, so DNS rebinding cannot swap the target), while the
  ``Host`` header, TLS SNI and certificate verification keep using the name.
* Redirects are followed by hand, at most ``max_redirects``, each hop checked with the same rules.
* The body is capped while it streams (and up front when ``Content-Length`` admits it is too large), and
  one deadline covers the lookup, connect, TLS handshake and every read of every hop.

The connection pinning is a urllib3 connection class whose ``_new_conn`` opens the socket to the
checked address instead of resolving ``host``; urllib3 then wraps that socket in TLS with
``server_hostname=host``, so SNI and the certificate check are about the name the person gave.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import functools

import certifi
import idna
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError as Urllib3Error,
    NewConnectionError,
    SSLError,
)

from shared.errors import AppError, DependencyDown, PermanentError, Refused, TooLarge
from shared.ports import FetchedPage

USER_AGENT = "LeadVoice-LinkFetcher/1.0 (voice training import of a shared link)"

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 8192
_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Retrying later can help with these client errors; every other 4xx is about the link itself.
_RETRYABLE_4XX = frozenset({408, 425, 429})

# Names that only ever mean something inside a network. Single-label names are refused as a class
# (below): on Google Cloud the resolver's search list turns ``metadata`` into the metadata server.
_BLOCKED_NAMES = frozenset({"metadata.google.internal", "metadata", "localhost"})
_BLOCKED_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa", ".intranet", ".corp",
                     ".lan", ".private")

# Headers a caller may not set: they would change the target or the framing we rely on.
_CALLER_HEADERS_DROPPED = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-authorization",
    "proxy-connection", "te", "trailer", "upgrade",
})
# Credentials a caller meant for one site are not sent to another one a redirect names.
_CROSS_ORIGIN_DROPPED = frozenset({"authorization", "cookie"})

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_PORT = re.compile(r"^[0-9]{1,5}$")
_DIGITS = re.compile(r"^[0-9]+$")  # ASCII only: str.isdigit() also accepts "²", which int() rejects
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
# Everything a URL parser strips, skips or reads differently: C0 controls, space, DEL, backslash.
_AMBIGUOUS = re.compile(r"[\x00-\x20\x7f\\]")
_PATH_SAFE = "!$&'()*+,/:;=?@-._~%"

_PRIVATE_MESSAGE = "Links to private or internal addresses are not allowed ({host} is not a public address)."


def _networks(*specs: tuple[str, str]) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.ip_network(net), label) for net, label in specs)


# IANA special-purpose registries, spelled out so the rules do not move with the Python version.
_V4_BLOCKED = _networks(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignment"),
    ("192.0.2.0/24", "documentation"),
    ("192.31.196.0/24", "AS112"),
    ("192.52.193.0/24", "AMT"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("192.175.48.0/24", "AS112"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
_V6_BLOCKED = _networks(
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignment"),  # Teredo (2001::/32) included: a relay picks the target
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("3ffe::/16", "reserved"),  # the retired 6bone
    ("5f00::/16", "segment routing"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
_V6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_V6_COMPATIBLE = ipaddress.ip_network("::/96")
_V6_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def classify_address(address: IPAddress) -> str | None:
    """Say why an address may not be fetched, or None when it is a public unicast address.

    IPv6 forms that carry an IPv4 address (IPv4-mapped, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``)
    are judged by the IPv4 address inside them; IPv4-compatible ``::/96`` addresses are deprecated and
    always refused.

    Args:
        address: a parsed IPv4 or IPv6 address.

    Returns:
        A short category (``"loopback"``, ``"private"``, ``"link-local"`` ...) or None.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "scoped"
        if address.ipv4_mapped is not None:
            return classify_address(address.ipv4_mapped)
        if address in _V6_COMPATIBLE:
            return {0: "unspecified", 1: "loopback"}.get(int(address), "IPv4-compatible")
        if address in _V6_NAT64:
            return classify_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:
            return classify_address(address.sixtofour)
        for network, label in _V6_BLOCKED:
            if address in network:
                return label
        if address not in _V6_GLOBAL_UNICAST:
            return "reserved"
        # Belt and braces: the standard library's view, should IANA add a block we have not listed.
        if (address.is_private or address.is_multicast or address.is_reserved or address.is_link_local
                or address.is_site_local or address.is_loopback or address.is_unspecified):
            return "reserved"
        return None
    for network, label in _V4_BLOCKED:
        if address in network:
            return label
    if not address.is_global or address.is_multicast or address.is_reserved:
        return "reserved"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the C resolver, as an absolute name, to its TCP addresses.

    The trailing dot stops the resolver from appending search domains: on Google Cloud those are
    ``<zone>.c.<project>.internal`` and ``google.internal``, which turn harmless-looking names into
    internal ones.

    Args:
        host: an ASCII host name (never an address literal; those are not resolved).
        port: the port the connection will use.

    Returns:
        Address strings in the resolver's order of preference.
    """
    infos = socket.getaddrinfo(host + ".", port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)
    return [str(info[4][0]) for info in infos]


# --- parsing -------------------------------------------------------------------------------------


class _Target:
    """A checked-syntax URL: lower-case scheme, normalised host, port, and the request target."""

    __slots__ = ("scheme", "host", "literal", "port", "target")

    def __init__(self, scheme: str, host: str, literal: IPAddress | None, port: int, target: str):
        self.scheme = scheme
        self.host = host  # ASCII name, or the address's compressed text for literals
        self.literal = literal
        self.port = port
        self.target = target  # path and query, percent-encoded, never empty

    @property
    def default_port(self) -> int:
        return 443 if self.scheme == "https" else 80

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if isinstance(self.literal, ipaddress.IPv6Address) else self.host
        return host if self.port == self.default_port else f"{host}:{self.port}"

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.target}"


def _shown(text: str) -> str:
    """A host as it may appear in a message: printable and short."""
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= 80 else text[:77] + "..."


def _parse_url(url: object) -> _Target:
    if not isinstance(url, str):
        raise Refused("The link must be text.")
    # People paste links with surrounding spaces and line breaks; anything inside is refused below.
    url = url.strip(" \t\r\n\x0b\x0c")
    if not url:
        raise Refused("The link is empty.")
    if len(url) > MAX_URL_LENGTH:
        raise Refused(f"The link is longer than {MAX_URL_LENGTH} characters.")
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not text any browser could have produced
        raise Refused("The link contains characters that are not valid text.") from None
    url = url.split("#", 1)[0]  # the fragment never leaves the client
    scheme_match = _SCHEME.match(url)
    if not scheme_match:
        raise Refused("Links must start with http:// or https://.")
    scheme = scheme_match.group(1).lower()
    if scheme not in ("http", "https"):
        raise Refused(f"Only http and https links can be imported, not {_shown(scheme)}: links.")
    if _AMBIGUOUS.search(url):
        # Browsers read "\" as "/" and drop tabs and newlines; other parsers do not. Rather than pick one
        # reading, refuse the link.
        raise Refused("The link contains spaces, control characters or backslashes; paste it as the "
                      "browser's address bar shows it.")
    rest = url[scheme_match.end():]
    if not rest.startswith("//") or rest.startswith("///"):
        raise Refused("Links must have the form http://host/path.")
    rest = rest[2:]
    end = len(rest)
    for stop in "/?":
        index = rest.find(stop)
        if index != -1:
            end = min(end, index)
    authority, target = rest[:end], rest[end:]
    if "@" in authority:
        raise Refused("Links with a user name or password in them are not allowed.")
    host_text, port = _split_authority(authority, 443 if scheme == "https" else 80)
    host, literal = _normalise_host(host_text)
    if not target.startswith("/"):
        target = "/" + target
    # Non-ASCII path characters are sent as UTF-8 percent-escapes, as browsers send them; existing
    # escapes are kept as they are.
    target = urllib.parse.quote(target, safe=_PATH_SAFE)
    return _Target(scheme, host, literal, port, target)


def _split_authority(authority: str, default_port: int) -> tuple[str, int]:
    if not authority:
        raise Refused("The link has no host name.")
    if authority.startswith("["):
        close = authority.find("]")
        if close == -1:
            raise Refused("The link's address is malformed.")
        host, after = authority[:close + 1], authority[close + 1:]
        if after and not after.startswith(":"):
            raise Refused("The link's address is malformed.")
        port_text = after[1:] if after else None
    else:
        if authority.count(":") > 1:
            raise Refused("IPv6 addresses in links must be written in brackets.")
        host, colon, port_text = authority.partition(":")
        if not colon:
            port_text = None
    if port_text is None or port_text == "":
        return host, default_port
    if not _PORT.match(port_text) or not 0 < int(port_text) < 65536:
        raise Refused(f"The link's port {_shown(port_text)} is not valid.")
    return host, int(port_text)


def _normalise_host(text: str) -> tuple[str, IPAddress | None]:
    if text.startswith("["):
        inner = text[1:-1]
        if "%" in inner:
            # A zone id only means something on one machine's link: it is never a public address.
            raise Refused(_PRIVATE_MESSAGE.format(host=_shown(text)))
        try:
            address = ipaddress.IPv6Address(inner)
        except ValueError:
            raise Refused(f"{_shown(text)} is not a valid address.") from None
        return address.compressed, address
    try:
        decoded = urllib.parse.unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise Refused("The link's host name is not valid.") from None
    if not decoded.isascii():
        try:
            # UTS #46 is what browsers apply: full-width letters and digits become ASCII, the
            # ideographic and full-width full stops become ".", invisible characters disappear.
            decoded = idna.uts46_remap(decoded, std3_rules=False, transitional=False)
        except (idna.IDNAError, UnicodeError, ValueError):
            raise Refused(f"{_shown(decoded)} is not a valid host name.") from None
    host = decoded.lower()
    if host.endswith("."):
        host = host[:-1]
    labels = host.split(".")
    if not host or any(label == "" for label in labels):
        raise Refused(f"{_shown(decoded)} is not a valid host name.")
    if _NUMERIC_LABEL.match(labels[-1]):
        # A host whose last label is a number is an IPv4 address to browsers and to inet_aton, in any
        # of their notations, or it is invalid; never a name to look up.
        address = _parse_ipv4(labels)
        if address is None:
            raise Refused(f"{_shown(decoded)} is not a valid address.")
        return str(address), address
    ascii_labels = []
    for label in labels:
        if not label.isascii():
            try:
                label = idna.alabel(label).decode("ascii")
            except (idna.IDNAError, UnicodeError, ValueError):
                raise Refused(f"{_shown(decoded)} is not a valid host name.") from None
        if not _LABEL.match(label):
            raise Refused(f"{_shown(decoded)} is not a valid host name.")
        ascii_labels.append(label)
    name = ".".join(ascii_labels)
    if len(name) > 253:
        raise Refused("The link's host name is too long.")
    if name in _BLOCKED_NAMES or name.endswith(_BLOCKED_SUFFIXES) or len(ascii_labels) < 2:
        raise Refused(_PRIVATE_MESSAGE.format(host=_shown(name)))
    return name, None


def _parse_ipv4(labels: list[str]) -> ipaddress.IPv4Address | None:
    """IPv4 as inet_aton and the WHATWG URL standard read it: 1 to 4 parts, each decimal, 0x-hex or
    0-octal; the last part fills the bytes the others leave."""
    if len(labels) > 4:
        return None
    numbers = []
    for label in labels:
        number = _ipv4_number(label)
        if number is None:
            return None
        numbers.append(number)
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _ipv4_number(label: str) -> int | None:
    if label.startswith("0x"):
        digits, base = label[2:], 16
        if not digits:
            return 0  # WHATWG reads a bare "0x" as zero
    elif len(label) > 1 and label.startswith("0"):
        digits, base = label[1:], 8
    else:
        digits, base = label, 10
    allowed = "0123456789abcdef"[:base]
    if not digits or any(ch not in allowed for ch in digits):
        return None
    return int(digits, base)


def canonical_url(url: str) -> str:
    """The URL exactly as ``SafeFetcher`` would request it, after normalising the host.

    Useful to store and compare links: ``http://0x7f.1/`` and ``http://127.0.0.1/`` are one URL, and so
    are ``HTTP://Example.COM.`` and ``http://example.com/``. Nothing is resolved or fetched.

    Args:
        url: a link as a person gave it.

    Returns:
        The normalised ``scheme://host[:port]/path?query`` (no fragment, default port dropped).

    Raises:
        Refused: the link is not an http(s) URL the fetcher would even try (userinfo, other schemes,
            malformed or internal-only hosts). Addresses are not judged here; ``fetch`` does that.
    """
    return _parse_url(url).url


# --- the deadline --------------------------------------------------------------------------------


class _Deadline:
    """One time budget for a whole fetch.

    Socket timeouts bound each blocking call, not their sum: a server that drips one byte a second
    never trips a read timeout. So every socket is registered here, and when the budget runs out a
    timer shuts them down, which ends whatever read or handshake is blocked on them.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._ends = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        left = self._ends - time.monotonic()
        if left <= 0 or self.expired:
            raise DependencyDown(f"The link did not answer within {self.seconds:g} seconds.")
        return left

    def register(self, sock: socket.socket) -> None:
        # A duplicate descriptor: shutting it down ends the connection even after urllib3 has wrapped
        # (and detached) the original socket for TLS, and it cannot be reused for another socket.
        with self._lock:
            duplicate = sock.dup()
            if self.expired:
                duplicate.close()
                raise DependencyDown(f"The link did not answer within {self.seconds:g} seconds.")
            self._sockets.append(duplicate)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def release_sockets(self) -> None:
        """Close the duplicates of a finished hop's sockets, so its connection really ends now."""
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def close(self) -> None:
        self._timer.cancel()
        self.release_sockets()


# getaddrinfo's answers that mean "no such name" (permanent), as opposed to "try again" (EAI_AGAIN).
_NOT_FOUND_ERRNOS = frozenset(
    getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)
)


def _resolve_within(resolver: Resolver, host: str, port: int, deadline: _Deadline) -> list[str]:
    # getaddrinfo has no timeout of its own; a worker thread lets the deadline hold even when the
    # resolver hangs (the abandoned lookup finishes on its own later).
    outcome: dict[str, Any] = {}

    def lookup() -> None:
        try:
            outcome["addresses"] = resolver(host, port)
        except BaseException as exc:  # handed back to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(deadline.remaining())
    if worker.is_alive():
        raise DependencyDown(f"Looking up {_shown(host)} took longer than {deadline.seconds:g} seconds.")
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, socket.gaierror) and error.errno in _NOT_FOUND_ERRNOS:
            raise PermanentError(f"The site {_shown(host)} could not be found.", code="link_not_found")
        if isinstance(error, OSError):
            raise DependencyDown(f"Could not look up {_shown(host)} right now.") from None
        raise error
    return list(outcome.get("addresses") or [])


# --- connections pinned to the checked address ---------------------------------------------------


class _PinnedMixin:
    """Opens the socket to the addresses that were checked, never to whatever ``host`` resolves to."""

    def __init__(self, *args: Any, pinned: tuple[str, ...], deadline: _Deadline, **kwargs: Any):
        self._pinned = pinned
        self._deadline = deadline
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        last_error: OSError | None = None
        for address in self._pinned:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                self._deadline.register(sock)
                sock.settimeout(self.timeout)  # type: ignore[attr-defined]
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect((address, self.port))  # type: ignore[attr-defined]
                sys.audit("http.client.connect", self, address, self.port)  # type: ignore[attr-defined]
                return sock
            except TimeoutError:
                sock.close()
                message = f"Connection to {self.host} timed out."  # type: ignore[attr-defined]
                raise ConnectTimeoutError(self, message) from None
            except OSError as exc:
                sock.close()
                last_error = exc
        raise NewConnectionError(self, f"Failed to connect: {type(last_error).__name__}")  # type: ignore[arg-type]


class _PinnedHTTPConnection(_PinnedMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedMixin, HTTPSConnection):
    pass


class _PinnedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


# --- the fetcher ---------------------------------------------------------------------------------


class SafeFetcher:
    """Fetches links people supply, refusing every target that is not a public http(s) address.

    Implements ``shared.ports.Fetcher``; the same class serves production and the local stack.

    Args:
        resolver: ``(host, port) -> [address, ...]``; default ``system_resolver`` (``getaddrinfo``).
        max_bytes: the largest body accepted, unless a call gives its own cap.
        timeout: seconds for the whole fetch (lookups, connects, handshakes, reads, every redirect).
        max_redirects: redirects followed before the link is refused.
        allow_loopback_for_tests: ``False``, or one ``(loopback address, port)`` pair that tests may
            fetch (their stand-in server). Only a constructor argument: no setting or environment
            variable reaches it, and it can never open any address but that one socket address.
        ca_certs: a CA bundle for certificate verification (default: certifi's); tests pass their own.

    Raises:
        ValueError: ``allow_loopback_for_tests`` is anything but False or one loopback address and port.
    """

    def __init__(self, resolver: Resolver | None = None, max_bytes: int = 25 * 1024 * 1024, timeout: float = 20.0,
                 max_redirects: int = 5, allow_loopback_for_tests: bool | tuple[str, int] = False, *,
                 ca_certs: str | None = None):
        if max_bytes <= 0 or timeout <= 0 or max_redirects < 0:
            raise ValueError("max_bytes and timeout must be positive and max_redirects not negative")
        self._resolver = resolver or system_resolver
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self._test_address = self._parse_test_address(allow_loopback_for_tests)
        self._ca_certs = ca_certs or certifi.where()

    @staticmethod
    def _parse_test_address(value: object) -> tuple[IPAddress, int] | None:
        if value is False or value is None:
            return None
        if (not isinstance(value, tuple) or len(value) != 2 or not isinstance(value[0], str)
                or not isinstance(value[1], int) or isinstance(value[1], bool)):
            raise ValueError("allow_loopback_for_tests takes one (loopback address, port) pair, never True")
        address = ipaddress.ip_address(value[0])
        if not address.is_loopback or not 0 < value[1] < 65536:
            raise ValueError("allow_loopback_for_tests only admits a loopback address and a real port")
        return address, value[1]

    def fetch(self, url: str, *, max_bytes: int | None = None, timeout: float | None = None,
              headers: dict[str, str] | None = None) -> FetchedPage:
        """Fetch ``url`` and return the final page.

        Args:
            url: the link as the person gave it.
            max_bytes: cap on the body for this call (default: the fetcher's).
            timeout: seconds for this whole call (default: the fetcher's).
            headers: extra request headers. ``Host`` and framing headers are ignored; ``Authorization``
                and ``Cookie`` are dropped when a redirect leaves the original origin.

        Returns:
            The page: final URL after redirects, status, content type, body and lower-case headers.

        Raises:
            Refused: the link, or a redirect, points at a forbidden target or is not an http(s) link.
            TooLarge: the body is larger than ``max_bytes``.
            DependencyDown: timeouts, connection failures, failed lookups and 5xx answers.
            PermanentError: 4xx answers, unknown hosts, certificate failures.
        """
        cap = self.max_bytes if max_bytes is None else max_bytes
        extra = self._caller_headers(headers or {})
        target = _parse_url(url)
        first_origin = target.origin
        deadline = _Deadline(self.timeout if timeout is None else timeout)
        try:
            for _ in range(self.max_redirects + 1):
                pinned = self._check(target, deadline)
                sent = {k: v for k, v in extra.items()
                        if target.origin == first_origin or k.lower() not in _CROSS_ORIGIN_DROPPED}
                page, location = self._request(target, pinned, sent, cap, deadline)
                if page is not None:
                    return page
                try:
                    joined = urllib.parse.urljoin(target.url, location)
                except ValueError:  # e.g. an unterminated "[" in the Location's host
                    raise Refused(f"{_shown(target.host)} redirected to a malformed link.") from None
                target = _parse_url(joined)
            raise Refused(f"The link redirected more than {self.max_redirects} times.")
        finally:
            deadline.close()

    def check(self, url: str, *, timeout: float | None = None) -> None:
        """Refuse a link now if its own target is forbidden, without connecting (ingest answers 422).

        Redirects can only be judged while fetching, so a link that passes here may still be refused
        later; a name that does not resolve is left for the fetch to report.

        Raises:
            Refused: the link is not http(s), or its host is or resolves to a forbidden address.
        """
        target = _parse_url(url)
        deadline = _Deadline(min(self.timeout, 5.0) if timeout is None else timeout)
        try:
            self._check(target, deadline)
        except Refused:
            raise
        except AppError:
            return  # unresolvable or slow right now: the extract step retries and reports it
        finally:
            deadline.close()

    @staticmethod
    def _caller_headers(headers: dict[str, str]) -> dict[str, str]:
        clean = {}
        for name, value in headers.items():
            if any(ch in f"{name}{value}" for ch in "\r\n\0"):
                raise ValueError(f"header {name!r} contains a line break")
            if name.lower() not in _CALLER_HEADERS_DROPPED:
                clean[name] = value
        return clean

    def _allowed(self, address: IPAddress, port: int) -> bool:
        return self._test_address is not None and self._test_address == (address, port)

    def _check(self, target: _Target, deadline: _Deadline) -> tuple[str, ...]:
        """The addresses the connection may use: every one the host stands for, each one public."""
        if target.literal is not None:
            addresses: list[IPAddress] = [target.literal]
        else:
            addresses = []
            for text in _resolve_within(self._resolver, target.host, target.port, deadline):
                try:
                    addresses.append(ipaddress.ip_address(text))
                except ValueError:
                    # An answer we cannot read is an answer we cannot check.
                    raise Refused(_PRIVATE_MESSAGE.format(host=_shown(target.host))) from None
            if not addresses:
                raise PermanentError(f"The site {_shown(target.host)} could not be found.", code="link_not_found")
        for address in addresses:
            if classify_address(address) is not None and not self._allowed(address, target.port):
                raise Refused(_PRIVATE_MESSAGE.format(host=_shown(target.host)))
        # An IPv4-mapped answer is connected to over IPv4: the address that was judged.
        return tuple(str(getattr(a, "ipv4_mapped", None) or a) for a in addresses)

    def _request(self, target: _Target, pinned: tuple[str, ...], extra: dict[str, str], cap: int,
                 deadline: _Deadline) -> tuple[FetchedPage | None, str]:
        remaining = deadline.remaining()
        pool_kw: dict[str, Any] = {
            "timeout": urllib3.Timeout(connect=remaining, read=remaining),
            "maxsize": 1, "retries": False, "pinned": pinned, "deadline": deadline,
        }
        if target.scheme == "https":
            # SNI and the certificate check use the host name (the pool's host), not the pinned address.
            pool: urllib3.HTTPConnectionPool = _PinnedHTTPSPool(target.host, target.port,
                                                                ssl_context=_tls_context(self._ca_certs),
                                                                cert_reqs="CERT_REQUIRED", **pool_kw)
        else:
            pool = _PinnedHTTPPool(target.host, target.port, **pool_kw)
        request_headers = {
            "User-Agent": USER_AGENT,
            "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.8",
            "Accept-Encoding": "gzip, deflate",
            "Connection": "close",
            **extra,
        }
        host = _shown(target.host)
        response = None
        try:
            response = pool.urlopen("GET", target.target, headers=request_headers, retries=False, redirect=False,
                                    assert_same_host=False, preload_content=False, decode_content=True)
            status = response.status
            if status in _REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    raise PermanentError(f"{host} answered a redirect without saying where to.",
                                         code="link_unavailable")
                return None, _header_text(location)
            if status >= 500 or status in _RETRYABLE_4XX:
                raise DependencyDown(f"{host} answered HTTP {status}; try again later.")
            if status in (401, 403, 407):
                raise PermanentError(f"{host} answered HTTP {status}: the page is not public. Share it publicly "
                                     "or upload the file instead.", code="link_unavailable")
            if status == 404 or status == 410:
                raise PermanentError(f"{host} answered HTTP {status}: there is no page at that link.",
                                     code="link_unavailable")
            if not 200 <= status < 300:
                raise PermanentError(f"{host} answered HTTP {status}.", code="link_unavailable")
            declared = response.headers.get("Content-Length", "").strip()
            if _DIGITS.match(declared) and int(declared) > cap:
                raise TooLarge(f"The page at {host} is larger than {cap} bytes.")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.stream(_CHUNK, decode_content=True):
                size += len(chunk)
                if size > cap:
                    raise TooLarge(f"The page at {host} is larger than {cap} bytes.")
                chunks.append(chunk)
            if deadline.expired:  # the shutdown can look like an ordinary end of the body
                deadline.remaining()
            page = FetchedPage(
                url=target.url, status=status, content_type=response.headers.get("Content-Type", ""),
                body=b"".join(chunks), headers={k.lower(): v for k, v in response.headers.items()},
            )
            return page, ""
        except SSLError:
            if deadline.expired:
                deadline.remaining()
            raise PermanentError(f"The certificate of {host} could not be verified.",
                                 code="link_unavailable") from None
        except (Urllib3Error, http.client.HTTPException, OSError):
            if deadline.expired:
                deadline.remaining()
            raise DependencyDown(f"Could not fetch the page at {host}: the connection failed or timed out.") from None
        finally:
            if response is not None:
                response.close()  # never drain what is left: it may be endless
                response.release_conn()
            pool.close()
            deadline.release_sockets()


@functools.lru_cache(maxsize=8)
def _tls_context(ca_certs: str) -> ssl.SSLContext:
    # Loading a CA bundle takes tens of milliseconds; contexts are safe to share between threads, and
    # only https links need one, so it is built on first use and kept.
    return ssl.create_default_context(cafile=ca_certs)


def _header_text(value: str) -> str:
    # http.client decodes header bytes as Latin-1; a UTF-8 Location reads back as what the server sent.
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value
