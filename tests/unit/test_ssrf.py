"""The share-link fetcher against hostile links (DESIGN §7).

Every refused case asserts both the error class and that the loopback canary saw nothing. Loopback
forms carry the canary's port, so a form that slipped through would land on the canary; the public-page
stand-in is the only address the fetcher may reach, through ``allow_loopback_for_tests`` and made-up
public names resolved by an injected resolver.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters import web_fetch
from shared.adapters.web_fetch import SafeFetcher, canonical_url, classify_address
from shared.config import FIELDS
from shared.errors import AppError, DependencyDown, PermanentError, Refused, TooLarge
from shared.ports import Fetcher
from tests.fixtures.canary import PAGE_BODY

# --- the injected resolver -------------------------------------------------------------------------

NAMES = {
    # Made-up public names for the stand-in site (only 127.0.0.1 at its port is let through).
    "public.test": ["127.0.0.1"],
    "www.public.test": ["127.0.0.1"],
    "secure.test": ["127.0.0.1"],
    "www.secure.test": ["127.0.0.1"],
    "wrongname.test": ["127.0.0.1"],
    # Names that stand for internal targets.
    "loop.test": ["127.0.0.1"],
    "private.test": ["10.1.2.3"],
    "private172.test": ["172.20.0.9"],
    "private192.test": ["192.168.10.20"],
    "mixed.test": ["127.0.0.1", "10.0.0.7"],  # one allowed address, one private: refused
    "mixed-public.test": ["93.184.216.34", "192.168.0.10"],  # a real public address and a private one
    "meta.test": ["169.254.169.254"],
    "cgnat.test": ["100.64.1.1"],
    "bench.test": ["198.18.0.5"],
    "multicast.test": ["224.0.0.251"],
    "zero.test": ["0.0.0.0"],
    "v6loop.test": ["::1"],
    "v6private.test": ["fd12:3456::1"],
    "v6mapped.test": ["::ffff:127.0.0.1"],
    "v6linklocal.test": ["fe80::1"],
    "zoned.test": ["fe80::1%lo"],
    "nat64.test": ["64:ff9b::a9fe:a9fe"],
    "sixtofour.test": ["2002:c0a8:0101::1"],
    "garbage.test": ["not-an-address"],
    "metadata.example.com": ["169.254.169.254"],
}


class Resolver:
    """A resolver over a fixed table that counts its lookups; unknown names do not exist."""

    def __init__(self, table: dict[str, list[str]] | None = None):
        self.table = dict(NAMES if table is None else table)
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        try:
            answer = self.table[host]
        except KeyError:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return list(answer() if callable(answer) else answer)


@pytest.fixture
def resolver() -> Resolver:
    return Resolver()


@pytest.fixture
def fetcher(resolver, public_pages) -> SafeFetcher:
    # Short timeout: a form that wrongly got through to an unreachable private address fails fast.
    return SafeFetcher(resolver=resolver, timeout=2.0, allow_loopback_for_tests=("127.0.0.1", public_pages.port))


def _fill(url: str, canary, pages) -> str:
    return url.replace("{C}", str(canary.port)).replace("{P}", str(pages.port))


def _via(location: str, status: int = 302) -> str:
    """A public page that redirects to ``location`` (sent verbatim)."""
    return "http://public.test:{P}/redirect?" + urllib.parse.urlencode({"to": location, "status": status})


# --- the refused forms -----------------------------------------------------------------------------

REFUSED = [
    # IPv4 loopback in every notation the URL standard or inet_aton accepts, aimed at the canary.
    "http://127.0.0.1:{C}/",
    "http://127.0.0.1.:{C}/",
    "http://127.1:{C}/",
    "http://127.0.1:{C}/",
    "http://2130706433:{C}/",
    "http://0x7f000001:{C}/",
    "http://0X7F000001:{C}/",
    "http://0x7f.0x0.0x0.0x1:{C}/",
    "http://0177.0.0.1:{C}/",
    "http://0177.0000.0000.0001:{C}/",
    "http://017700000001:{C}/",
    "http://0x7f.1:{C}/",
    "http://0177.1:{C}/",
    "http://127.0x0.1:{C}/",
    "http://0x7f.0.0.01:{C}/",
    "http://127.000.000.001:{C}/",
    "http://127.0.0x.1:{C}/",
    "http://0:{C}/",
    "http://0.0.0.0:{C}/",
    "http://0x0:{C}/",
    "http://00:{C}/",
    "http://127.255.255.254:{C}/",
    "HTTP://127.0.0.1:{C}/",
    "hTtPs://127.0.0.1:{C}/",
    "http://127.0.0.1:0{C}/",
    "http://127.0.0.1:{C}/page?x=1#frag",
    # Names for loopback.
    "http://localhost:{C}/",
    "http://LOCALHOST:{C}/",
    "http://localhost.:{C}/",
    "http://foo.localhost:{C}/",
    "http://loc\u00adalhost:{C}/",
    "http://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3:{C}/",
    # Percent-encoded hosts and Unicode dots and digits.
    "http://%31%32%37%2e%30%2e%30%2e%31:{C}/",
    "http://127%2e0%2e0%2e1:{C}/",
    "http://%6c%6f%63%61%6c%68%6f%73%74:{C}/",
    "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11:{C}/",
    "http://127\u30020\u30020\u30021:{C}/",
    "http://127\uff610\uff610\uff611:{C}/",
    "http://127\uff0e0\uff0e0\uff0e1:{C}/",
    "http://127.0.0\u00ad.1:{C}/",
    # User info, fragments and backslashes that make parsers disagree about the host.
    "http://public.test@127.0.0.1:{C}/",
    "http://public.test:{P}@127.0.0.1:{C}/",
    "http://user:pass@public.test:{P}/page",
    "http://@127.0.0.1:{C}/",
    "http://127.0.0.1:{C}#@public.test/",
    "http://127.0.0.1:{C}?@public.test/",
    "http://127.0.0.1:{C}\\@public.test/",
    "http://public.test\\@127.0.0.1:{C}/",
    "http:\\\\127.0.0.1:{C}/",
    "http://public.test:{P}\\\\127.0.0.1:{C}/",
    "http:/127.0.0.1:{C}/",
    "http:127.0.0.1:{C}/",
    "http:///127.0.0.1:{C}/",
    "http://127.0.\t0.1:{C}/",
    "http://127.0.0.1\n:{C}/",
    "http://127.0.0.1 :{C}/",
    "http://public.test:{P}/\x00",
    "  http://127.0.0.1:{C}/  ",
    # IPv6 loopback, unspecified, mapped and compatible forms.
    "http://[::1]:{C}/",
    "http://[0:0:0:0:0:0:0:1]:{C}/",
    "http://[0000:0000:0000:0000:0000:0000:0000:0001]:{C}/",
    "http://[::]:{C}/",
    "http://[::ffff:127.0.0.1]:{C}/",
    "http://[::ffff:7f00:1]:{C}/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]:{C}/",
    "http://[::FFFF:127.0.0.1]:{C}/",
    "http://[::127.0.0.1]:{C}/",
    "http://[::ffff:0.0.0.0]:{C}/",
    "http://[::ffff:10.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[::8.8.8.8]/",
    # NAT64, 6to4 and Teredo carrying internal IPv4 addresses.
    "http://[64:ff9b::127.0.0.1]:{C}/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[64:ff9b:1::a00:1]/",
    "http://[2002:7f00:1::]:{C}/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[2002:c0a8:101::1]/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
    # Zone ids, link-local, site-local, unique-local, multicast, documentation, discard.
    "http://[fe80::1%25eth0]:{C}/",
    "http://[fe80::1%eth0]/",
    "http://[::1%25lo]:{C}/",
    "http://[fe80::1]/",
    "http://[fec0::1]/",
    "http://[fc00::1]/",
    "http://[fd00:ec2::254]/",
    "http://[ff02::1]/",
    "http://[2001:db8::1]/",
    "http://[3fff::1]/",
    "http://[100::1]/",
    # Malformed addresses.
    "http://::1/",
    "http://[::1/",
    "http://[::1]x/",
    "http://[127.0.0.1]/",
    "http://[v1.fe80::1]/",
    "http://256.0.0.1/",
    "http://1.2.3.4.5/",
    "http://4294967296/",
    "http://0x100000000/",
    "http://08.0.0.1/",
    "http://127..1/",
    "http://public..test/",
    "http://public.test:0/",
    "http://public.test:65536/",
    "http://public.test:-1/",
    "http://public.test:8a/",
    "http://public.test:\uff18\uff10/",
    "http://" + "a" * 64 + ".test/",
    "http://" + "abcdefghi." * 26 + "test/",
    # Private ranges in several notations.
    "http://10.0.0.1/",
    "http://10.255.255.255/",
    "http://012.0.0.1/",
    "http://0xa000001/",
    "http://167772161/",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://0xac100001/",
    "http://192.168.0.1/",
    "http://192.168.1.1./",
    "http://3232235777/",
    "http://0300.0250.1.1/",
    "http://192.168.257/",
    # The metadata server: link-local address in every notation, and its names.
    "http://169.254.169.254/computeMetadata/v1/",
    "http://169.254.169.254./",
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://0xa9.0xfe.0xa9.0xfe/",
    "http://169.254.43518/",
    "http://169.16689662/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.google.internal./",
    "http://METADATA.GOOGLE.INTERNAL/",
    "http://metadata/computeMetadata/v1/",
    "http://metadata./",
    "http://metadata.google.internal:80/",
    "https://metadata.google.internal/",
    "http://metadata%2egoogle%2einternal/",
    "http://metadata\u3002google\u3002internal/",
    "http://\uff4d\uff45\uff54\uff41\uff44\uff41\uff54\uff41.google.internal/",
    "http://instance-1.c.my-project.internal/",
    "http://printer.local/",
    "http://intranet/",
    # Carrier-grade NAT, benchmarking, documentation, multicast, reserved, broadcast.
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    "http://0x64400001/",
    "http://198.18.0.1/",
    "http://198.19.255.254/",
    "http://192.0.0.8/",
    "http://192.0.2.1/",
    "http://198.51.100.7/",
    "http://203.0.113.9/",
    "http://224.0.0.1/",
    "http://239.255.255.250/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://4294967295/",
    # Schemes other than http and https, and links without one.
    "file:///etc/passwd",
    "file://localhost/etc/passwd",
    "gopher://127.0.0.1:{C}/_GET%20/",
    "ftp://127.0.0.1:{C}/",
    "ftp://public.test/",
    "data:text/html,hello",
    "javascript:alert(1)",
    "dict://127.0.0.1:{C}/info",
    "ldap://127.0.0.1/",
    "ws://public.test:{P}/page",
    "jar:http://public.test:{P}/page!/",
    "view-source:http://public.test:{P}/page",
    "http+unix://%2Frun%2Fdocker.sock/info",
    "//127.0.0.1:{C}/",
    "public.test/page",
    "",
    "   ",
    # Names that resolve to internal addresses through the injected resolver.
    "http://loop.test:{C}/",
    "http://public.test:{C}/",  # the stand-in's name, but the canary's port: the exception is one socket
    "http://127.0.0.2:{P}/",
    "http://[::1]:{P}/",
    "http://private.test/",
    "http://private172.test/",
    "http://private192.test/",
    "http://mixed.test:{P}/page",
    "http://mixed-public.test/",
    "http://meta.test/computeMetadata/v1/",
    "http://metadata.example.com/",
    "http://cgnat.test/",
    "http://bench.test/",
    "http://multicast.test/",
    "http://zero.test:{C}/",
    "http://v6loop.test:{C}/",
    "http://v6private.test/",
    "http://v6mapped.test:{C}/",
    "http://v6linklocal.test/",
    "http://zoned.test/",
    "http://nat64.test/",
    "http://sixtofour.test/",
    "http://garbage.test/",
    # Redirects from the public page to internal targets, absolute and relative, in every status.
    _via("http://127.0.0.1:{C}/"),
    _via("http://127.0.0.1:{C}/", 301),
    _via("http://127.0.0.1:{C}/", 303),
    _via("http://127.0.0.1:{C}/", 307),
    _via("http://127.0.0.1:{C}/", 308),
    _via("//127.0.0.1:{C}/relative"),
    _via("/\\127.0.0.1:{C}/"),
    _via("\\\\127.0.0.1:{C}/"),
    _via("http://loop.test:{C}/"),
    _via("http://public.test:{C}/"),
    _via("http://[::1]:{C}/"),
    _via("http://2130706433:{C}/"),
    _via("http://localhost:{C}/"),
    _via("http://169.254.169.254/computeMetadata/v1/"),
    _via("http://metadata.google.internal/computeMetadata/v1/"),
    _via("http://metadata/computeMetadata/v1/"),
    _via("http://private.test/"),
    _via("http://user@public.test:{P}/page"),
    _via("gopher://127.0.0.1:{C}/"),
    _via("file:///etc/passwd"),
    _via("http://[::1"),
    _via(_via("http://127.0.0.1:{C}/")),  # two hops: the second is refused
    # Redirect loops and chains past the limit.
    "http://public.test:{P}/loop",
    "http://public.test:{P}/chain/6",
]


def test_refused_table_is_large_and_distinct():
    assert len(REFUSED) >= 100
    assert len(set(REFUSED)) == len(REFUSED)


@pytest.mark.parametrize("url", REFUSED)
def test_refused(url, fetcher, canary, public_pages):
    with pytest.raises(Refused) as caught:
        fetcher.fetch(_fill(url, canary, public_pages))
    assert caught.value.status == 422
    assert caught.value.message
    assert canary.hits == []


def test_the_canary_does_record_what_reaches_it(canary):
    # The zero-hit assertions above are only worth something if a request that gets there is seen.
    with socket.create_connection(("127.0.0.1", canary.port), timeout=2) as sock:
        sock.sendall(b"GET /probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    assert [hit.kind for hit in canary.hits] == ["connection", "request"]
    assert canary.requests[0].path == "/probe"


def test_refusal_names_the_host_but_not_what_it_resolved_to(fetcher, canary):
    with pytest.raises(Refused) as caught:
        fetcher.fetch("http://private.test/admin")
    assert "private.test" in caught.value.message
    assert "private or internal" in caught.value.message
    assert "10.1.2.3" not in caught.value.message
    assert caught.value.to_json() == {"error": "refused", "message": caught.value.message}


def test_a_refused_redirect_reaches_the_public_page_only(fetcher, canary, public_pages):
    with pytest.raises(Refused):
        fetcher.fetch(_fill(_via("http://127.0.0.1:{C}/"), canary, public_pages))
    assert [hit.path.split("?")[0] for hit in public_pages.requests] == ["/redirect"]
    assert canary.hits == []


def test_the_loopback_exception_is_one_socket_address(resolver, public_pages, canary):
    # Without the test exception, the stand-in itself is just another loopback address.
    strict = SafeFetcher(resolver=resolver, timeout=2.0)
    with pytest.raises(Refused):
        strict.fetch(f"http://public.test:{public_pages.port}/page")
    with pytest.raises(Refused):
        strict.fetch(f"http://127.0.0.1:{public_pages.port}/page")
    assert public_pages.hits == []


@pytest.mark.parametrize("value", [True, 1, "127.0.0.1", ("10.0.0.1", 80), ("8.8.8.8", 80), ("127.0.0.1", "80"),
                                   ("127.0.0.1", 0), ("127.0.0.1", True), ("127.0.0.1",), ["127.0.0.1", 80]])
def test_the_loopback_exception_accepts_only_one_loopback_address_and_port(value):
    with pytest.raises(ValueError):
        SafeFetcher(allow_loopback_for_tests=value)


def test_no_setting_or_environment_variable_reaches_the_loopback_exception():
    assert not [f for f in FIELDS if "loopback" in f.name.lower() or "loopback" in f.env.lower()]
    source = Path(web_fetch.__file__).read_text()
    assert "os.environ" not in source and "getenv" not in source and "import os" not in source


def test_safe_fetcher_is_a_fetcher():
    assert isinstance(SafeFetcher(), Fetcher)


# --- DNS rebinding: the connection goes to the address that was checked -----------------------------


def _wait_for(condition, seconds: float = 2.0) -> bool:
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _rebinding(first: str, then: str):
    answers = [[first]]

    def answer() -> list[str]:
        return answers.pop() if answers else [then]

    return answer


def test_dns_rebinding_cannot_move_the_connection(canary, public_pages):
    # First answer: the allowed stand-in. Every later answer: 127.0.0.2, where a canary listens on the
    # stand-in's very port. A fetcher that looked the name up again to connect would land there.
    resolver = Resolver({"rebind.test": _rebinding("127.0.0.1", "127.0.0.2")})
    fetcher = SafeFetcher(resolver=resolver, timeout=2.0, allow_loopback_for_tests=("127.0.0.1", public_pages.port))
    with canary.twin("127.0.0.2", public_pages.port):
        page = fetcher.fetch(f"http://rebind.test:{public_pages.port}/page")
        assert page.body == PAGE_BODY
        assert resolver.calls == [("rebind.test", public_pages.port)]
        assert canary.hits == []
        assert public_pages.requests[0].headers["host"] == f"rebind.test:{public_pages.port}"
        # The trap was live: the very next lookup points at it, and a connection there is recorded.
        assert resolver("rebind.test", public_pages.port) == ["127.0.0.2"]
        socket.create_connection(("127.0.0.2", public_pages.port), timeout=2).close()
        assert _wait_for(lambda: len(canary.hits) == 1)


def test_dns_rebinding_to_a_private_address_is_refused_at_the_check(canary):
    resolver = Resolver({"rebind.test": _rebinding("10.0.0.1", "127.0.0.1")})
    with pytest.raises(Refused):
        SafeFetcher(resolver=resolver, timeout=2.0).fetch(f"http://rebind.test:{canary.port}/")
    assert canary.hits == []


def test_each_redirect_hop_is_resolved_and_checked_once(fetcher, resolver, public_pages):
    port = public_pages.port
    page = fetcher.fetch(f"http://public.test:{port}/redirect?" +
                         urllib.parse.urlencode({"to": f"http://www.public.test:{port}/page"}))
    assert page.body == PAGE_BODY
    assert resolver.calls == [("public.test", port), ("www.public.test", port)]


# --- TLS: SNI and certificate checks use the name, the socket uses the checked address ---------------


@pytest.fixture
def tls_fetcher(resolver, secure_pages) -> SafeFetcher:
    return SafeFetcher(resolver=resolver, timeout=2.0, allow_loopback_for_tests=("127.0.0.1", secure_pages.port),
                       ca_certs=str(secure_pages.ca_file))


def test_https_sends_the_name_as_sni_and_verifies_it(tls_fetcher, secure_pages):
    page = tls_fetcher.fetch(f"https://secure.test:{secure_pages.port}/page")
    assert page.status == 200 and page.body == PAGE_BODY
    assert page.url == f"https://secure.test:{secure_pages.port}/page"
    assert secure_pages.sni == ["secure.test"]
    assert secure_pages.requests[0].headers["host"] == f"secure.test:{secure_pages.port}"


def test_https_refuses_a_certificate_for_another_name(tls_fetcher, secure_pages):
    # wrongname.test resolves to the same checked address, but the certificate is not for it.
    with pytest.raises(PermanentError) as caught:
        tls_fetcher.fetch(f"https://wrongname.test:{secure_pages.port}/page")
    assert type(caught.value) is PermanentError
    assert "certificate" in caught.value.message
    assert secure_pages.requests == []


def test_https_to_the_bare_address_is_not_verified_against_the_name(tls_fetcher, secure_pages):
    with pytest.raises(PermanentError) as caught:
        tls_fetcher.fetch(f"https://127.0.0.1:{secure_pages.port}/page")
    assert "certificate" in caught.value.message
    assert secure_pages.requests == []


def test_https_uses_the_public_trust_store_by_default(resolver, secure_pages):
    fetcher = SafeFetcher(resolver=resolver, timeout=2.0, allow_loopback_for_tests=("127.0.0.1", secure_pages.port))
    with pytest.raises(PermanentError) as caught:
        fetcher.fetch(f"https://secure.test:{secure_pages.port}/page")
    assert "certificate" in caught.value.message
    assert secure_pages.requests == []


def test_https_rebinding_keeps_the_checked_address(canary, secure_pages):
    resolver = Resolver({"secure.test": _rebinding("127.0.0.1", "127.0.0.2")})
    fetcher = SafeFetcher(resolver=resolver, timeout=2.0, allow_loopback_for_tests=("127.0.0.1", secure_pages.port),
                          ca_certs=str(secure_pages.ca_file))
    with canary.twin("127.0.0.2", secure_pages.port):
        page = fetcher.fetch(f"https://secure.test:{secure_pages.port}/page")
        assert page.body == PAGE_BODY
        assert len(resolver.calls) == 1
        assert canary.hits == []
        assert secure_pages.sni == ["secure.test"]


# --- size caps ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/stream?size=300000", "/chunked?size=300000", "/sized?size=100001",
                                  "/claims?length=1000000000000", "/gzip-bomb?size=20000000"])
def test_bodies_past_the_cap_are_too_large(fetcher, canary, public_pages, path):
    started = time.monotonic()
    with pytest.raises(TooLarge) as caught:
        fetcher.fetch(f"http://public.test:{public_pages.port}{path}", max_bytes=100_000)
    assert caught.value.status == 413
    assert time.monotonic() - started < 2.0
    assert canary.hits == []


def test_a_body_exactly_at_the_cap_is_fetched(fetcher, public_pages):
    page = fetcher.fetch(f"http://public.test:{public_pages.port}/sized?size=100000", max_bytes=100_000)
    assert page.body == b"x" * 100_000


def test_the_constructor_cap_applies_when_a_call_gives_none(resolver, public_pages):
    fetcher = SafeFetcher(resolver=resolver, max_bytes=1000, timeout=2.0,
                          allow_loopback_for_tests=("127.0.0.1", public_pages.port))
    assert len(fetcher.fetch(f"http://public.test:{public_pages.port}/stream?size=1000").body) == 1000
    with pytest.raises(TooLarge):
        fetcher.fetch(f"http://public.test:{public_pages.port}/stream?size=1001")


def test_a_compressed_body_is_decoded_and_counted_decoded(fetcher, public_pages):
    page = fetcher.fetch(f"http://public.test:{public_pages.port}/gzip-bomb?size=50000", max_bytes=100_000)
    assert page.body == b"\0" * 50_000


def test_a_body_shorter_than_declared_is_a_failed_dependency(fetcher, public_pages):
    with pytest.raises(DependencyDown):
        fetcher.fetch(f"http://public.test:{public_pages.port}/short")


# --- time caps ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/hang", "/drip"])
def test_a_server_that_never_finishes_ends_in_bounded_time(fetcher, canary, public_pages, path):
    started = time.monotonic()
    with pytest.raises(DependencyDown) as caught:
        fetcher.fetch(f"http://public.test:{public_pages.port}{path}", timeout=0.5)
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 1.5
    assert caught.value.status == 503
    assert canary.hits == []


def test_a_hanging_lookup_ends_in_bounded_time(public_pages):
    release = threading.Event()

    def stuck(host: str, port: int) -> list[str]:
        release.wait(10)
        return ["127.0.0.1"]

    fetcher = SafeFetcher(resolver=stuck, timeout=0.3, allow_loopback_for_tests=("127.0.0.1", public_pages.port))
    started = time.monotonic()
    try:
        with pytest.raises(DependencyDown):
            fetcher.fetch(f"http://public.test:{public_pages.port}/page")
    finally:
        release.set()
    assert time.monotonic() - started < 1.0
    assert public_pages.hits == []


def test_the_deadline_covers_every_redirect_hop(fetcher, public_pages):
    # Each hop is quick; the hang at the end must still be cut at the one overall deadline.
    started = time.monotonic()
    with pytest.raises(DependencyDown):
        fetcher.fetch(f"http://public.test:{public_pages.port}/redirect?to=/hang", timeout=0.5)
    assert time.monotonic() - started < 1.5


def test_a_closed_port_is_a_failed_dependency(resolver):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    fetcher = SafeFetcher(resolver=resolver, timeout=2.0, allow_loopback_for_tests=("127.0.0.1", port))
    with pytest.raises(DependencyDown):
        fetcher.fetch(f"http://public.test:{port}/page")


# --- lookups and statuses -------------------------------------------------------------------------


def test_an_unknown_host_is_a_permanent_error(fetcher, canary):
    with pytest.raises(PermanentError) as caught:
        fetcher.fetch("http://nowhere.test/page")
    assert type(caught.value) is PermanentError
    assert "nowhere.test" in caught.value.message


def test_a_lookup_that_fails_for_now_is_a_failed_dependency(public_pages):
    def flaky(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with pytest.raises(DependencyDown):
        SafeFetcher(resolver=flaky, timeout=2.0).fetch("http://public.test/page")


def test_a_lookup_with_no_addresses_is_a_permanent_error():
    with pytest.raises(PermanentError) as caught:
        SafeFetcher(resolver=lambda host, port: [], timeout=2.0).fetch("http://empty.test/page")
    assert type(caught.value) is PermanentError


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 451, 300, 304])
def test_client_errors_are_permanent(fetcher, public_pages, status):
    with pytest.raises(PermanentError) as caught:
        fetcher.fetch(f"http://public.test:{public_pages.port}/status/{status}")
    assert type(caught.value) is PermanentError
    assert str(status) in caught.value.message
    assert "public.test" in caught.value.message


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_server_errors_are_a_failed_dependency(fetcher, public_pages, status):
    with pytest.raises(DependencyDown) as caught:
        fetcher.fetch(f"http://public.test:{public_pages.port}/status/{status}")
    assert str(status) in caught.value.message


# --- what is allowed works ------------------------------------------------------------------------


def test_the_public_page_is_fetched(fetcher, public_pages, canary):
    port = public_pages.port
    page = fetcher.fetch(f"http://public.test:{port}/page")
    assert page.url == f"http://public.test:{port}/page"
    assert page.status == 200
    assert page.content_type == "text/html; charset=utf-8"
    assert page.body == PAGE_BODY
    assert page.headers["content-length"] == str(len(PAGE_BODY))
    (request,) = public_pages.requests
    assert request.headers["host"] == f"public.test:{port}"
    assert request.headers["user-agent"].startswith("LeadVoice-LinkFetcher/")
    assert canary.hits == []


@pytest.mark.parametrize("spelling", ["PUBLIC.Test", "public.test.", "public%2etest", "public\u3002test",
                                      "\uff50\uff55\uff42\uff4c\uff49\uff43.test"])
def test_host_spellings_are_normalised_before_lookup(fetcher, resolver, public_pages, spelling):
    page = fetcher.fetch(f"http://{spelling}:{public_pages.port}/page")
    assert page.url == f"http://public.test:{public_pages.port}/page"
    assert resolver.calls == [("public.test", public_pages.port)]


def test_redirects_among_allowed_hosts_are_followed(fetcher, public_pages):
    port = public_pages.port
    start = f"http://public.test:{port}/redirect?" + urllib.parse.urlencode(
        {"to": f"http://www.public.test:{port}/redirect?to=/chain/2", "status": 301})
    page = fetcher.fetch(start)
    assert page.url == f"http://www.public.test:{port}/chain/0"
    assert page.body == PAGE_BODY
    hosts = [hit.headers["host"] for hit in public_pages.requests]
    assert hosts == [f"public.test:{port}"] + [f"www.public.test:{port}"] * 4


def test_five_redirects_are_followed_and_a_sixth_is_not(fetcher, resolver, public_pages):
    page = fetcher.fetch(f"http://public.test:{public_pages.port}/chain/5")
    assert page.url.endswith("/chain/0")
    assert len(public_pages.requests) == 6
    with pytest.raises(Refused):
        SafeFetcher(resolver=resolver, timeout=2.0, max_redirects=0,
                    allow_loopback_for_tests=("127.0.0.1", public_pages.port)).fetch(
            f"http://public.test:{public_pages.port}/chain/1")


def test_the_request_target_is_encoded_and_the_fragment_stays_home(fetcher, public_pages):
    page = fetcher.fetch(f"http://public.test:{public_pages.port}/page?q=caf\u00e9&x=%2F#section")
    assert page.url == f"http://public.test:{public_pages.port}/page?q=caf%C3%A9&x=%2F"
    assert public_pages.requests[0].path == "/page?q=caf%C3%A9&x=%2F"


def test_caller_headers_are_sent_and_cannot_change_the_target(fetcher, public_pages, canary):
    port = public_pages.port
    fetcher.fetch(f"http://public.test:{port}/page",
                  headers={"Accept-Language": "de", "Host": f"127.0.0.1:{canary.port}", "Authorization": "Bearer t"})
    sent = public_pages.requests[0].headers
    assert sent["accept-language"] == "de"
    assert sent["host"] == f"public.test:{port}"
    assert sent["authorization"] == "Bearer t"
    assert canary.hits == []


def test_credentials_are_not_carried_to_another_origin(fetcher, public_pages):
    port = public_pages.port
    fetcher.fetch(f"http://public.test:{port}/redirect?" + urllib.parse.urlencode(
        {"to": f"http://www.public.test:{port}/page"}), headers={"Authorization": "Bearer t", "Cookie": "a=b"})
    first, second = public_pages.requests
    assert first.headers["authorization"] == "Bearer t" and first.headers["cookie"] == "a=b"
    assert "authorization" not in second.headers and "cookie" not in second.headers


# --- address classification and URL normalisation --------------------------------------------------


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.0",
                                     "172.15.255.255", "172.32.0.0", "192.167.255.255", "198.17.255.255",
                                     "198.20.0.0", "2001:4860:4860::8888", "2606:4700:4700::1111",
                                     "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"])
def test_public_addresses_are_allowed(address):
    assert classify_address(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(("address", "category"), [
    ("127.0.0.1", "loopback"), ("10.0.0.1", "private"), ("100.64.0.1", "carrier-grade NAT"),
    ("169.254.169.254", "link-local"), ("198.18.0.1", "benchmarking"), ("224.0.0.1", "multicast"),
    ("0.1.2.3", "unspecified"), ("255.255.255.255", "reserved"), ("::1", "loopback"), ("::", "unspecified"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"), ("64:ff9b::a9fe:a9fe", "link-local"),
    ("2002:a00:1::", "private"), ("2002:6440:1::", "carrier-grade NAT"), ("fd00::1", "unique-local"),
    ("fe80::1", "link-local"), ("fec0::1", "site-local"), ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"), ("fe80::1%eth0", "scoped"), ("4000::1", "reserved"),
])
def test_internal_addresses_are_named(address, category):
    assert classify_address(ipaddress.ip_address(address)) == category


@pytest.mark.parametrize(("url", "canonical"), [
    ("http://0x7f.1/", "http://127.0.0.1/"),
    ("http://2130706433:8080/a", "http://127.0.0.1:8080/a"),
    ("http://0177.0.0.1", "http://127.0.0.1/"),
    ("http://169.16689662/", "http://169.254.169.254/"),
    ("HTTPS://Example.COM.:443/x?y#z", "https://example.com/x?y"),
    ("http://b\u00fccher.example/", "http://xn--bcher-kva.example/"),
    ("http://[::FFFF:7F00:1]:80/", "http://[::ffff:7f00:1]/"),
    ("  http://example.com/caf\u00e9  ", "http://example.com/caf%C3%A9"),
])
def test_canonical_url(url, canonical):
    assert canonical_url(url) == canonical


# --- random links ---------------------------------------------------------------------------------

# Host material: complete tricky hosts only. The noise around them has no digits, dots, hex letters or
# invisible characters, and free text only ever follows a "/", "?" or "#", so no combination can spell a
# public IPv4 literal and send a test to the internet: any numeric host starts with 127, 0, 10 or 169.254.
_HOSTS = ["127.0.0.1", "0x7f000001", "2130706433", "0177.0.0.1", "127.1", "0", "[::1]", "[::ffff:127.0.0.1]",
          "[fe80::1%25lo]", "[::]", "localhost", "metadata.google.internal", "metadata", "169.254.169.254",
          "10.0.0.1", "public.test", "www.public.test", "private.test", "mixed.test", "loop.test", "meta.test",
          "nowhere.test", "\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11", "127\u30020\u30020\u30021",
          "%31%32%37.0.0.1", "[64:ff9b::127.0.0.1]", "[2002:7f00:1::]", ""]
_NOISE_CHARACTERS = "@#?/\\:[]%_-~!$&'()*+,;= \t\n\x00" "ghijklmnopqrstuvwyzGHIJKLMNOPQRSTUVWYZ" "\u00e4\u00df\u2603"
_NOISE = st.one_of(st.just(""), st.just(""), st.text(st.sampled_from(list(_NOISE_CHARACTERS)), min_size=1, max_size=3))
# Mostly well-formed http(s) prefixes (Hypothesis does not weight sampled_from by repetition), so that the
# host rules are what most examples exercise.
_PREFIXES = st.one_of(
    st.sampled_from(["http://", "https://"]), st.sampled_from(["http://", "https://"]),
    st.sampled_from(["http://", "https://"]),
    st.builds(str.__add__,
              st.sampled_from(["http", "https", "HTTP", "gopher", "file", "ftp", "javascript", "data", ""]),
              st.sampled_from(["://", ":", ":/", ":///", ":\\\\", "//", ""])),
)
_USERS = st.one_of(st.just(""), st.just(""), st.sampled_from(["public.test@", "user:pw@"]))
_PATHS = st.one_of(st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs")), max_size=12), st.text(max_size=12))


@st.composite
def _links(draw, canary_port: int, pages_port: int) -> str:
    port = draw(st.sampled_from(["", f":{canary_port}", f":{pages_port}", f":{pages_port}", ":80", ":"]))
    path = draw(st.sampled_from(["/", "/page", "?", "/redirect?to=http://127.0.0.1:{C}/", "#@public.test"]))
    return (draw(_PREFIXES) + draw(_USERS) + draw(_NOISE) + draw(st.sampled_from(_HOSTS))
            + draw(_NOISE) + port + path.replace("{C}", str(canary_port)) + draw(_PATHS))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_links_raise_only_project_errors_and_never_reach_the_canary(data, fetcher, canary_server,
                                                                             public_pages_server):
    links = _links(canary_server.port, public_pages_server.port)
    url = data.draw(st.one_of(links, links, links, st.text(max_size=40)))
    before = len(canary_server.hits)
    try:
        page = fetcher.fetch(url, timeout=1.0)
    except AppError:
        pass
    else:
        # Only the stand-in may answer: under one of its names or its own address, and at its port.
        final = urllib.parse.urlsplit(page.url)
        assert final.hostname in {"public.test", "www.public.test", "127.0.0.1"}
        assert final.port == public_pages_server.port
    assert len(canary_server.hits) == before
