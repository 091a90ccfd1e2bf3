"""The one endpoint rule: what the payload's TLS flags mean, and what it can say back."""

from __future__ import annotations

import itertools

import pytest

from inboxcheck._endpoint import Endpoint, MailProtocol, TlsMode, expressible
from inboxcheck._models import Account
from tests.helpers import custom_payload

SMTP, IMAP = MailProtocol.SMTP, MailProtocol.IMAP


@pytest.mark.parametrize(
    ("protocol", "port", "flag", "tls"),
    [
        (SMTP, 465, True, TlsMode.IMPLICIT),
        (SMTP, 587, True, TlsMode.STARTTLS),
        (SMTP, 2525, True, TlsMode.STARTTLS),
        (SMTP, 587, False, TlsMode.NONE),
        (SMTP, 465, False, TlsMode.NONE),
        (IMAP, 993, True, TlsMode.IMPLICIT),
        (IMAP, 143, True, TlsMode.IMPLICIT),
        (IMAP, 143, False, TlsMode.STARTTLS),
        (IMAP, 993, False, TlsMode.STARTTLS),
    ],
)
def test_the_payloads_tls_flags(protocol: MailProtocol, port: int, flag: bool, tls: TlsMode) -> None:
    fields = {f"{protocol}_port": port, "smtp_use_tls" if protocol is SMTP else "imap_use_ssl": flag}
    account = Account.model_validate(custom_payload(**fields))
    endpoint = account.endpoint(protocol)
    assert endpoint == Endpoint(protocol=protocol, host="mail.example.test", port=port, tls=tls)
    assert account.endpoint(protocol.value) == endpoint


@pytest.mark.parametrize(
    ("protocol", "port", "tls"), list(itertools.product(MailProtocol, (25, 143, 465, 587, 993), TlsMode))
)
def test_what_the_payload_can_say_it_reads_back(protocol: MailProtocol, port: int, tls: TlsMode) -> None:
    endpoint = Endpoint(protocol=protocol, host="mail.example.test", port=port, tls=tls)
    if expressible(protocol, port, tls) is not None:
        assert tls is TlsMode.NONE or protocol is SMTP
        return
    fields = endpoint.payload_fields()
    flag = fields["smtp_use_tls" if protocol is SMTP else "imap_use_ssl"]
    assert isinstance(flag, bool)
    assert Endpoint.from_payload(protocol, endpoint.host, port, flag) == endpoint


def test_endpoints_compare_by_key_not_by_spelling() -> None:
    a = Endpoint(protocol=SMTP, host="Mail.Example.TEST.", port=587, tls=TlsMode.STARTTLS)
    b = Endpoint(protocol=SMTP, host="mail.example.test", port=587, tls=TlsMode.STARTTLS)
    assert a != b and a.same(b) and not a.same(None)
    assert not a.same(b.model_copy(update={"tls": TlsMode.IMPLICIT}))
    v6 = Endpoint(protocol=IMAP, host="::1", port=993, tls=TlsMode.IMPLICIT)
    assert str(v6) == "[::1]:993 (implicit)"
