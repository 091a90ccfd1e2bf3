"""The autoconfig parser on its own: good files, placeholders, and hostile input (DTDs, entity
bombs, external entities, junk, size), without any network."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from inboxcheck._endpoint import TlsMode
from inboxcheck.discovery.autoconfig import MAX_BYTES, AutoconfigError, autoconfig_urls, parse_autoconfig
from inboxcheck.discovery.model import MailProtocol

ADDRESS = "jane.doe@example.org"

GOOD = b"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="example.org">
    <domain>example.org</domain>
    <incomingServer type="pop3">
      <hostname>pop.example.org</hostname><port>995</port><socketType>SSL</socketType>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>imap.%EMAILDOMAIN%</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <username>%EMAILLOCALPART%</username>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>SMTP.Example.org.</hostname>
      <port>587</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
    </outgoingServer>
    <outgoingServer type="smtp">
      <hostname>plain.example.org</hostname>
      <port>25</port>
      <socketType>plain</socketType>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"""


def test_a_good_file_gives_its_imap_and_smtp_servers_with_placeholders_filled() -> None:
    endpoints = parse_autoconfig(GOOD, ADDRESS)
    found = [
        (e.endpoint.protocol, e.endpoint.host, e.endpoint.port, e.endpoint.tls, e.username) for e in endpoints
    ]
    assert found == [
        (MailProtocol.IMAP, "imap.example.org", 993, TlsMode.IMPLICIT, "jane.doe"),
        (MailProtocol.SMTP, "smtp.example.org", 587, TlsMode.STARTTLS, ADDRESS),
        (MailProtocol.SMTP, "plain.example.org", 25, TlsMode.NONE, None),
    ]
    assert [e.order for e in endpoints] == sorted(e.order for e in endpoints)


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE clientConfig [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<clientConfig version="1.1"><emailProvider id="x"><displayName>&lol9;</displayName>
</emailProvider></clientConfig>
"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE clientConfig [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<clientConfig version="1.1"><emailProvider id="x">
<incomingServer type="imap"><hostname>&secret;</hostname><port>993</port><socketType>SSL</socketType>
</incomingServer></emailProvider></clientConfig>
"""

QUADRATIC = (
    b'<?xml version="1.0"?><!DOCTYPE clientConfig [<!ENTITY a "'
    + b"a" * 5000
    + b'">]><clientConfig>'
    + b"&a;" * 5000
    + b"</clientConfig>"
)


@pytest.mark.parametrize("body", [BOMB, EXTERNAL, QUADRATIC], ids=["billion-laughs", "external", "quadratic"])
def test_a_dtd_or_entity_is_refused_unread(body: bytes) -> None:
    with pytest.raises(AutoconfigError) as info:
        parse_autoconfig(body, ADDRESS)
    assert info.value.kind == "forbidden"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml at all",
        b"<clientConfig><emailProvider></clientConfig>",
        b"\xff\xfe<clientConfig/>",
        b"<html><body>404</body></html>",
    ],
)
def test_junk_is_malformed(body: bytes) -> None:
    with pytest.raises(AutoconfigError) as info:
        parse_autoconfig(body, ADDRESS)
    assert info.value.kind == "malformed"


def test_a_file_over_the_cap_is_refused_before_parsing() -> None:
    body = GOOD.replace(b"</clientConfig>", b"<!--" + b"x" * MAX_BYTES + b"--></clientConfig>")
    with pytest.raises(AutoconfigError) as info:
        parse_autoconfig(body, ADDRESS)
    assert info.value.kind == "too_large"


@pytest.mark.parametrize(
    "server",
    [
        "<hostname>smtp.example.org</hostname><port>0</port><socketType>SSL</socketType>",
        "<hostname>smtp.example.org</hostname><port>70000</port><socketType>SSL</socketType>",
        "<hostname>smtp.example.org</hostname><port>five</port><socketType>SSL</socketType>",
        "<hostname>smtp.example.org</hostname><port>465</port><socketType>TLS1.3</socketType>",
        "<hostname>https://smtp.example.org</hostname><port>465</port><socketType>SSL</socketType>",
        "<hostname>smtp example org</hostname><port>465</port><socketType>SSL</socketType>",
        "<hostname></hostname><port>465</port><socketType>SSL</socketType>",
        "<port>465</port><socketType>SSL</socketType>",
    ],
)
def test_a_server_with_a_bad_field_is_skipped(server: str) -> None:
    body = (
        '<clientConfig><emailProvider id="x"><outgoingServer type="smtp">'
        f"{server}</outgoingServer></emailProvider></clientConfig>"
    )
    assert parse_autoconfig(body.encode(), ADDRESS) == []


def test_the_two_thunderbird_locations_carry_the_address() -> None:
    assert autoconfig_urls("example.org", "a+b@example.org") == [
        ("autoconfig.example.org", "/mail/config-v1.1.xml?emailaddress=a%2Bb@example.org"),
        ("example.org", "/.well-known/autoconfig/mail/config-v1.1.xml"),
    ]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_endpoints_or_an_autoconfig_error(body: bytes) -> None:
    try:
        endpoints = parse_autoconfig(body, ADDRESS)
    except AutoconfigError:
        return
    for endpoint in endpoints:
        assert 1 <= endpoint.endpoint.port <= 65535


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_in_a_field_gives_a_valid_endpoint_or_none(text: str) -> None:
    from xml.sax.saxutils import escape

    value = escape(text)
    body = (
        '<clientConfig><emailProvider id="x"><incomingServer type="imap">'
        f"<hostname>{value}</hostname><port>{value}</port><socketType>SSL</socketType>"
        f"<username>{value}</username></incomingServer></emailProvider></clientConfig>"
    )
    try:
        endpoints = parse_autoconfig(body.encode("utf-8", "surrogatepass"), ADDRESS)
    except AutoconfigError:
        return
    assert endpoints == []  # a host name is never also a port number
