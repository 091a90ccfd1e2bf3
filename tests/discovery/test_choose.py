"""The pure rules: what the payload can express, where a password may go, SRV order, ranking."""

from __future__ import annotations

import dns.rrset
import pytest

from inboxcheck._endpoint import TlsMode
from inboxcheck.discovery.choose import expressible, merge, payload_fields, rank_key, under
from inboxcheck.discovery.model import Candidate, MailProtocol, ProbeResult, SourceKind
from inboxcheck.discovery.srv import SERVICES, SrvRecord, order_records, records_of
from inboxcheck.dns.client import DnsAnswer, DnsStatus

SMTP, IMAP = MailProtocol.SMTP, MailProtocol.IMAP
IMPLICIT, STARTTLS, NONE = TlsMode.IMPLICIT, TlsMode.STARTTLS, TlsMode.NONE


@pytest.mark.parametrize(
    ("protocol", "port", "tls", "ok"),
    [
        (SMTP, 465, IMPLICIT, True),
        (SMTP, 587, STARTTLS, True),
        (SMTP, 2525, STARTTLS, True),
        (SMTP, 25, STARTTLS, True),
        (SMTP, 4650, IMPLICIT, False),  # implicit TLS off 465: smtp_use_tls there means STARTTLS
        (SMTP, 587, IMPLICIT, False),
        (SMTP, 465, STARTTLS, False),  # smtp_use_tls on 465 means implicit TLS
        (SMTP, 587, NONE, False),
        (IMAP, 993, IMPLICIT, True),
        (IMAP, 143, STARTTLS, True),
        (IMAP, 10993, IMPLICIT, True),
        (IMAP, 10143, STARTTLS, True),
        (IMAP, 143, NONE, False),
    ],
)
def test_what_the_payload_can_express(protocol: MailProtocol, port: int, tls: TlsMode, ok: bool) -> None:
    why = expressible(protocol, port, tls)
    assert (why is None) is ok
    if protocol is SMTP and tls is IMPLICIT and not ok:
        assert "465" in str(why) and str(port) in str(why)


def test_under_is_the_domain_or_below_it_and_nothing_that_merely_ends_alike() -> None:
    assert under("mail.example.com", "example.com")
    assert under("Example.COM.", "example.com")
    assert not under("mail.badexample.com", "example.com")
    assert not under("example.com.evil.net", "example.com")
    assert not under("mail.example.com", "")


def test_srv_order_is_priority_then_heaviest_weight() -> None:
    records = [
        SrvRecord(20, 100, 587, "c.example.com"),
        SrvRecord(10, 1, 587, "b.example.com"),
        SrvRecord(10, 60, 587, "a.example.com"),
        SrvRecord(0, 0, 0, ""),
    ]
    assert [r.target for r in order_records(records)] == [
        "",
        "a.example.com",
        "b.example.com",
        "c.example.com",
    ]
    assert order_records(records)[0].not_offered


def test_srv_records_of_an_answer_and_the_dot_target() -> None:
    rrset = dns.rrset.from_text(
        "_submission._tcp.example.com.", 300, "IN", "SRV", "0 1 587 mail.example.com.", "5 0 0 ."
    )
    answer = DnsAnswer("_submission._tcp.example.com", "SRV", DnsStatus.OK, rrset=rrset)
    records = order_records(records_of(answer))
    assert records == [SrvRecord(0, 1, 587, "mail.example.com"), SrvRecord(5, 0, 0, "")]
    assert records[1].not_offered


def test_rfc8314_implicit_tls_services_are_asked_first() -> None:
    assert [s.label for s in SERVICES if s.protocol is SMTP] == ["_submissions._tcp", "_submission._tcp"]
    assert [s.tls for s in SERVICES if s.protocol is IMAP] == [IMPLICIT, STARTTLS]


def _c(
    host: str = "mail.example.com",
    port: int = 587,
    tls: TlsMode = STARTTLS,
    *,
    protocol: MailProtocol = SMTP,
    source: SourceKind = SourceKind.SRV,
    result: ProbeResult = ProbeResult.AUTH_OFFERED,
    trusted: bool = True,
    order: int = 0,
) -> Candidate:
    return Candidate(
        protocol=protocol,
        host=host,
        port=port,
        tls=tls,
        source=source,
        sources=(f"{source.value} x",),
        result=result,
        trusted=trusted,
        evidence={"order": order},
    )


def best(*candidates: Candidate, **kwargs: object) -> Candidate:
    return min(candidates, key=lambda c: rank_key(c, **kwargs))  # type: ignore[arg-type]


def test_an_expressible_endpoint_beats_a_working_one_the_payload_cannot_say() -> None:
    off_port = _c(port=4650, tls=IMPLICIT, result=ProbeResult.NOT_EXPRESSIBLE)
    starttls = _c(port=587, result=ProbeResult.NOT_PROBED)
    assert best(off_port, starttls) is starttls


def test_working_beats_source_and_trust_beats_source() -> None:
    preset_down = _c("smtp.provider.com", source=SourceKind.PRESET, result=ProbeResult.UNREACHABLE)
    guess_up = _c("smtp.example.com", source=SourceKind.GUESS)
    assert best(preset_down, guess_up) is guess_up
    outside = _c("mail.other.net", source=SourceKind.AUTOCONFIG, trusted=False)
    inside = _c("mail.example.com", source=SourceKind.GUESS)
    assert best(outside, inside) is inside


def test_implicit_tls_first_but_a_preset_keeps_its_own_order() -> None:
    srv_587 = _c(port=587)
    srv_465 = _c(port=465, tls=IMPLICIT)
    assert best(srv_587, srv_465) is srv_465
    preset_587 = _c("smtp.gmail.com", 587, source=SourceKind.PRESET, order=0)
    preset_465 = _c("smtp.gmail.com", 465, IMPLICIT, source=SourceKind.PRESET, order=1)
    assert best(preset_465, preset_587) is preset_587


def test_what_the_user_gave_wins_among_equals() -> None:
    a = _c("mail.example.com", 587)
    b = _c("smtp.example.com", 587, source=SourceKind.GUESS)
    assert best(a, b) is a
    assert best(a, b, given={"smtp_host": "smtp.example.com"}) is b


def test_merge_keeps_one_candidate_per_endpoint_led_by_the_most_trusted_source() -> None:
    srv = _c(source=SourceKind.SRV, trusted=False)
    auto = _c(source=SourceKind.AUTOCONFIG, trusted=True).model_copy(update={"username": "jane"})
    other = _c(port=465, tls=IMPLICIT)
    merged = merge([srv, auto, other])
    assert len(merged) == 2
    lead = merged[0]
    assert lead.source is SourceKind.AUTOCONFIG
    assert lead.sources == ("autoconfig x", "srv x")
    assert lead.username == "jane" and lead.trusted


def test_payload_fields_follow_the_contract() -> None:
    smtp = _c("smtp.example.com", 465, IMPLICIT)
    imap = _c("imap.example.com", 143, STARTTLS, protocol=IMAP).model_copy(update={"username": "jane"})
    assert payload_fields(smtp, imap, address="jane@example.com") == {
        "smtp_host": "smtp.example.com",
        "smtp_port": 465,
        "smtp_use_tls": True,
        "smtp_username": "jane@example.com",
        "imap_host": "imap.example.com",
        "imap_port": 143,
        "imap_use_ssl": False,
        "imap_username": "jane",
    }
