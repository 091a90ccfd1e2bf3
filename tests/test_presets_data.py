"""The bundled provider presets: every file loads, and its facts say what the providers document.

These tests pin the data in ``presets/*.toml``: hosts, ports, TLS modes, authentication policy, DNS
expectations, caps and sources. Each assertion is one that a careless edit of a preset would break.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inboxcheck import _presets
from inboxcheck._errors import PresetError
from inboxcheck._models import InboxType
from inboxcheck._presets import (
    BasicAuth,
    Preset,
    PresetMatch,
    Presets,
    TlsMode,
    UsernameRule,
    is_shared_host,
    load_preset_file,
    load_presets,
)

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
PRESET_FILES = sorted(PRESETS_DIR.glob("*.toml"))

REQUIRED_IDS = {
    "google-workspace",
    "microsoft-365",
    "outlook-com",
    "yahoo",
    "icloud",
    "zoho",
    "zoho-org",
    "fastmail",
    "godaddy",
    "namecheap-private-email",
    "ionos",
    "ovh",
    "rackspace",
    "amazon-workmail",
    "titan",
    "hostinger",
    "proton-bridge",
    "aol",
    "gmx-com",
    "gmx-net",
    "mail-com",
    "migadu",
    "mailbox-org",
    "custom",
}

# The platform's maximum daily_limit per inbox type (api-contract: "Daily limit guidance").
PLATFORM_MAX = {
    InboxType.GOOGLE_WORKSPACE: 2000,
    InboxType.OUTLOOK_365: 10000,
    InboxType.CUSTOM_SMTP: 100000,
}

# Providers whose only SMTP submission port is 465 with implicit TLS.
ONLY_465 = {
    "godaddy",
    "ovh",
    "rackspace",
    "amazon-workmail",
    "titan",
    "hostinger",
}

# Providers that offer both 587 STARTTLS and 465 implicit TLS for SMTP.
# Fastmail, IONOS, Yandex and AOL: the providers' pages (provider-facts.md, "Provider settings corrections").
BOTH_SMTP_PORTS = {
    "aol",
    "fastmail",
    "ionos",
    "yandex",
    "google-workspace",
    "yahoo",
    "zoho",
    "zoho-org",
    "namecheap-private-email",
    "gmx-com",
    "gmx-net",
    "mail-com",
    "migadu",
    "mailbox-org",
}

# The usual pairing of port and TLS mode (RFC 8314); a preset that breaks it has a typo.
STANDARD_PORT_TLS = {
    465: TlsMode.IMPLICIT,
    587: TlsMode.STARTTLS,
    993: TlsMode.IMPLICIT,
    143: TlsMode.STARTTLS,
}


@pytest.fixture(scope="module")
def presets() -> Presets:
    return load_presets(PRESETS_DIR)


def _non_generic(presets: Presets) -> list[Preset]:
    return [preset for preset in presets if not preset.is_generic]


# --- loading and shape ---------------------------------------------------------------------------


def test_the_preset_directory_has_enough_files() -> None:
    assert len(PRESET_FILES) >= 15


@pytest.mark.parametrize("path", PRESET_FILES, ids=lambda path: path.stem)
def test_each_file_loads_and_is_named_after_its_id(path: Path) -> None:
    preset = load_preset_file(path)
    assert preset.id == path.stem


def test_bundled_presets_load_with_the_default_loader() -> None:
    bundled = load_presets()
    assert {preset.id for preset in bundled} == {path.stem for path in PRESET_FILES}


def test_at_least_fifteen_presets_with_unique_ids(presets: Presets) -> None:
    ids = [preset.id for preset in presets]
    assert len(ids) >= 15
    assert len(ids) == len(set(ids)) == len(PRESET_FILES)
    assert ids == sorted(path.stem for path in PRESET_FILES)


def test_every_required_provider_has_a_preset(presets: Presets) -> None:
    assert {preset.id for preset in presets} >= REQUIRED_IDS


def test_custom_is_the_only_generic_preset(presets: Presets) -> None:
    assert [preset.id for preset in presets if preset.is_generic] == ["custom"]
    custom = presets.get("custom")
    assert custom.inbox_type is InboxType.CUSTOM_SMTP
    assert custom.smtp.username is UsernameRule.ANY
    assert custom.imap.username is UsernameRule.ANY
    assert custom.mx_patterns == ()
    assert custom.notes, "the catch-all needs notes for a person fixing an unknown server"


@pytest.mark.parametrize("service", ["smtp", "imap"])
def test_non_generic_presets_have_endpoints_and_one_preferred(presets: Presets, service: str) -> None:
    for preset in _non_generic(presets):
        spec = preset.smtp if service == "smtp" else preset.imap
        assert spec.endpoints, f"{preset.id}: no {service} endpoint"
        preferred = [endpoint for endpoint in spec.endpoints if endpoint.preferred]
        assert len(preferred) == 1, f"{preset.id}: {len(preferred)} preferred {service} endpoints"


def test_every_preset_has_prose(presets: Presets) -> None:
    for preset in presets:
        assert preset.summary.endswith("."), preset.id
        assert not re.search(r"\.\s+[A-Z]", preset.summary), f"{preset.id}: summary is one sentence"
        assert preset.notes, f"{preset.id}: no notes"
        assert all(note.strip().endswith((".", ")")) for note in preset.notes), preset.id
        assert preset.dns.dkim_setup, f"{preset.id}: no dkim_setup"


def test_host_globs_are_lower_case(presets: Presets) -> None:
    for preset in presets:
        patterns = [
            *preset.mx_patterns,
            *preset.smtp.all_host_patterns(),
            *preset.imap.all_host_patterns(),
        ]
        for pattern in patterns:
            assert pattern == pattern.lower().strip(), f"{preset.id}: {pattern!r}"
            assert not pattern.endswith("."), f"{preset.id}: {pattern!r}"


def test_ports_use_their_standard_tls_mode(presets: Presets) -> None:
    for preset in presets:
        for endpoint in (*preset.smtp.endpoints, *preset.imap.endpoints):
            expected = STANDARD_PORT_TLS.get(endpoint.port)
            if expected is not None:
                assert endpoint.tls is expected, f"{preset.id}: {endpoint.host}:{endpoint.port}"
            assert endpoint.tls is not TlsMode.NONE, f"{preset.id}: plaintext endpoint"


def test_every_preset_requires_tls(presets: Presets) -> None:
    for preset in presets:
        assert preset.smtp.requires_tls, preset.id
        assert preset.imap.requires_tls, preset.id


def test_inbox_types(presets: Presets) -> None:
    assert presets.get("google-workspace").inbox_type is InboxType.GOOGLE_WORKSPACE
    outlook = {p.id for p in presets if p.inbox_type is InboxType.OUTLOOK_365}
    assert outlook == {"microsoft-365", "outlook-com"}
    google = {p.id for p in presets if p.inbox_type is InboxType.GOOGLE_WORKSPACE}
    assert google == {"google-workspace"}


# --- sources -------------------------------------------------------------------------------------


def test_every_preset_cites_a_source_for_each_kind_of_fact(presets: Presets) -> None:
    kinds = {
        "hosts and ports": ("Hosts", "Ports"),
        "auth policy": ("Auth policy",),
        "DNS": ("DNS",),
        "limits": ("Limits", "Platform maximum"),
    }
    for preset in presets:
        assert preset.sources, f"{preset.id}: no sources"
        facts = [source.fact for source in preset.sources]
        for kind, prefixes in kinds.items():
            assert any(fact.startswith(prefixes) for fact in facts), f"{preset.id}: no {kind} source"
        for source in preset.sources:
            assert source.source.strip(), f"{preset.id}: empty source name"
            assert source.url is None or source.url.startswith("https://"), preset.id


def test_unverified_presets_say_so(presets: Presets) -> None:
    unverified = {preset.id for preset in presets if preset.unverified}
    assert unverified == {"titan", "hostinger"}
    for preset_id in unverified:
        preset = presets.get(preset_id)
        assert preset.status is not None
        assert "nverified" in preset.status
        hosts = [s for s in preset.sources if s.fact.startswith("Hosts")]
        assert hosts
        assert not any(source.verified for source in hosts)


def test_namecheap_host_change_is_recorded_as_unverified(presets: Presets) -> None:
    preset = presets.get("namecheap-private-email")
    assert not preset.unverified
    assert preset.status is not None
    assert "June 2026" in preset.status
    change = [s for s in preset.sources if "2026-06" in s.fact]
    assert len(change) == 1
    assert not change[0].verified


# --- detection -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("smtp.gmail.com", "google-workspace"),
        ("SMTP.GMAIL.COM.", "google-workspace"),
        ("smtp.office365.com", "microsoft-365"),
        ("smtp-mail.outlook.com", "outlook-com"),
        ("smtp.mail.yahoo.com", "yahoo"),
        ("smtp.mail.me.com", "icloud"),
        ("smtp.zoho.com", "zoho"),
        ("smtp.zoho.eu", "zoho"),
        ("smtp.zoho.in", "zoho"),
        ("smtp.zoho.com.au", "zoho"),
        ("smtp.zoho.jp", "zoho"),
        ("smtppro.zoho.com", "zoho-org"),
        ("smtppro.zoho.eu", "zoho-org"),
        ("smtppro.zoho.in", "zoho-org"),
        ("smtppro.zoho.com.au", "zoho-org"),
        ("smtppro.zoho.jp", "zoho-org"),
        ("smtp.fastmail.com", "fastmail"),
        ("smtp.aol.com", "aol"),
        ("mail.gmx.com", "gmx-com"),
        ("mail.gmx.net", "gmx-net"),
        ("smtp.mail.com", "mail-com"),
        ("smtp.migadu.com", "migadu"),
        ("smtp.mailbox.org", "mailbox-org"),
        ("smtpout.secureserver.net", "godaddy"),
        ("mail.privateemail.com", "namecheap-private-email"),
        ("smtp.ionos.com", "ionos"),
        ("smtp.ionos.de", "ionos"),
        ("smtp.1und1.de", "ionos"),
        ("ssl0.ovh.net", "ovh"),
        ("secure.emailsrvr.com", "rackspace"),
        ("smtp.mail.us-west-2.awsapps.com", "amazon-workmail"),
        ("smtp.mail.eu-west-1.awsapps.com", "amazon-workmail"),
        ("smtp.yandex.com", "yandex"),
        ("smtp.titan.email", "titan"),
        ("smtp.hostinger.com", "hostinger"),
        ("mail.example.org", None),
        ("smtp.gmail.com.example.org", None),
        # Zoho personal and organisation hosts differ by one word; the data centre must not blur them.
        ("smtppro.zoho.com.au.example.org", None),
        ("smtp.gmx.de", None),
        ("smtp.mail.com.example.org", None),
    ],
)
def test_by_smtp_host(presets: Presets, host: str, expected: str | None) -> None:
    found = presets.by_smtp_host(host)
    assert (found.id if found else None) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("imap.gmail.com", "google-workspace"),
        # Shared by Microsoft 365 and Outlook.com; see test_shared_imap_host_resolves_by_id_order.
        ("outlook.office365.com", "microsoft-365"),
        ("imap.mail.yahoo.com", "yahoo"),
        ("imap.mail.me.com", "icloud"),
        ("imap.zoho.eu", "zoho"),
        ("imap.zoho.com.au", "zoho"),
        ("imappro.zoho.com", "zoho-org"),
        ("imappro.zoho.eu", "zoho-org"),
        ("imap.zoho.in", "zoho"),
        ("imap.zoho.jp", "zoho"),
        ("imappro.zoho.in", "zoho-org"),
        ("imappro.zoho.com.au", "zoho-org"),
        ("imappro.zoho.jp", "zoho-org"),
        ("imap.fastmail.com", "fastmail"),
        ("imap.aol.com", "aol"),
        ("imap.gmx.com", "gmx-com"),
        ("imap.gmx.net", "gmx-net"),
        ("imap.mail.com", "mail-com"),
        ("imap.migadu.com", "migadu"),
        ("imap.mailbox.org", "mailbox-org"),
        ("imap.secureserver.net", "godaddy"),
        ("imap.ionos.fr", "ionos"),
        ("imap.1und1.de", "ionos"),
        ("imap.mail.us-west-2.awsapps.com", "amazon-workmail"),
        ("imap.mail.us-east-1.awsapps.com", "amazon-workmail"),
        ("imap.yandex.com", "yandex"),
        ("imap.example.org", None),
    ],
)
def test_by_imap_host(presets: Presets, host: str, expected: str | None) -> None:
    found = presets.by_imap_host(host)
    assert (found.id if found else None) == expected


@pytest.mark.parametrize(
    ("mx", "expected"),
    [
        ("aspmx.l.google.com", "google-workspace"),
        ("alt1.aspmx.l.google.com.", "google-workspace"),
        ("smtp.google.com", "google-workspace"),
        ("aspmx2.googlemail.com", "google-workspace"),
        ("contoso.mail.protection.outlook.com", "microsoft-365"),
        ("CONTOSO-COM.MAIL.PROTECTION.OUTLOOK.COM", "microsoft-365"),
        ("outlook-com.olc.protection.outlook.com", "outlook-com"),
        ("mta5.am0.yahoodns.net", "yahoo"),
        ("mx-eu.mail.am0.yahoodns.net", "yahoo"),
        ("mx-biz.mail.am0.yahoodns.net", "yahoo"),
        ("mx-aol.mail.gm0.yahoodns.net", "aol"),
        ("in1-smtp.messagingengine.com", "fastmail"),
        ("mx.zoho.com", "zoho-org"),
        ("mx3.zoho.com", "zoho-org"),
        ("mx.zoho.eu", "zoho-org"),
        ("mx2.zoho.in", "zoho-org"),
        ("mx.zoho.com.au", "zoho-org"),
        ("mx.zoho.jp", "zoho-org"),
        ("mx01.mail.icloud.com", "icloud"),
        ("mx.yandex.net", "yandex"),
        ("mail.protonmail.ch", "proton-bridge"),
        ("mx1.mail.ovh.net", "ovh"),
        ("mx2.titan.email", "titan"),
        ("mx1.hostinger.com", "hostinger"),
        ("mx00.emig.gmx.net", "gmx-net"),
        ("mx01.gmx.com", "gmx-com"),
        ("mx00.mail.com", "mail-com"),
        ("aspmx1.migadu.com", "migadu"),
        ("mxext2.mailbox.org", "mailbox-org"),
        ("mailstore1.secureserver.net", "godaddy"),
        ("mx1.privateemail.com", "namecheap-private-email"),
        ("mx2.privateemail.com", "namecheap-private-email"),
        ("mx00.kundenserver.de", "ionos"),
        ("mx1.emailsrvr.com", "rackspace"),
        ("mx.example.org", None),
        ("google.com.example.org", None),
        ("mx.zoho.com.example.org", None),
        ("mx00.gmail.com", None),
    ],
)
def test_by_mx(presets: Presets, mx: str, expected: str | None) -> None:
    found = presets.by_mx([mx])
    assert (found.id if found else None) == expected


def test_by_mx_takes_one_host_as_a_string(presets: Presets) -> None:
    found = presets.by_mx("aspmx.l.google.com")
    assert found is not None and found is presets.by_mx(["aspmx.l.google.com"])
    assert presets.by_mx("mail.example.org") is None


def test_by_mx_takes_the_first_host_that_matches(presets: Presets) -> None:
    found = presets.by_mx(["mx.example.org", "aspmx.l.google.com", "mx1.emailsrvr.com"])
    assert found is not None
    assert found.id == "google-workspace"


def test_match_prefers_the_smtp_host(presets: Presets) -> None:
    match = presets.match(
        smtp_host="smtp.gmail.com", imap_host="imap.gmail.com", inbox_type=InboxType.CUSTOM_SMTP
    )
    assert match is not None
    assert (match.preset.id, match.matched_by) == ("google-workspace", "smtp_host")


def test_match_microsoft_365(presets: Presets) -> None:
    match = presets.match(
        smtp_host="smtp.office365.com",
        imap_host="outlook.office365.com",
        inbox_type=InboxType.OUTLOOK_365,
    )
    assert match is not None
    assert (match.preset.id, match.matched_by) == ("microsoft-365", "smtp_host")


def test_match_outlook_com_by_its_own_smtp_host(presets: Presets) -> None:
    match = presets.match(
        smtp_host="smtp-mail.outlook.com",
        imap_host="outlook.office365.com",
        inbox_type=InboxType.OUTLOOK_365,
    )
    assert match is not None
    assert (match.preset.id, match.matched_by) == ("outlook-com", "smtp_host")


def test_match_zoho_org_eu(presets: Presets) -> None:
    match = presets.match(
        smtp_host="smtppro.zoho.eu", imap_host="imappro.zoho.eu", inbox_type=InboxType.CUSTOM_SMTP
    )
    assert match is not None
    assert (match.preset.id, match.matched_by) == ("zoho-org", "smtp_host")


def test_match_falls_back_to_the_imap_host(presets: Presets) -> None:
    match = presets.match(
        smtp_host="relay.example.org",
        imap_host="imap.mail.us-west-2.awsapps.com",
        inbox_type=InboxType.CUSTOM_SMTP,
    )
    assert match is not None
    assert (match.preset.id, match.matched_by) == ("amazon-workmail", "imap_host")


@pytest.mark.parametrize(
    ("inbox_type", "expected"),
    [
        (InboxType.CUSTOM_SMTP, "custom"),
        (InboxType.GOOGLE_WORKSPACE, "google-workspace"),
        (InboxType.OUTLOOK_365, "microsoft-365"),
    ],
)
def test_unknown_hosts_fall_back_to_the_inbox_type(
    presets: Presets, inbox_type: InboxType, expected: str
) -> None:
    match = presets.match(smtp_host="mail.example.org", imap_host="mail.example.org", inbox_type=inbox_type)
    assert match is not None
    assert (match.preset.id, match.matched_by) == (expected, "inbox_type")


@pytest.mark.parametrize(
    "host",
    [
        "mail.example.org",
        # Near misses of known hosts: another label, a suffix, a data centre no preset lists.
        "smtp.gmx.de",
        "smtp.aol.com.example.org",
        "mx00.mail.com",
        "smtppro.zoho.com.br",
        "smtp.migadu.net",
        "mailbox.org",
        "gmail.com",
    ],
)
def test_unknown_custom_hosts_fall_back_to_the_custom_preset(presets: Presets, host: str) -> None:
    assert presets.by_smtp_host(host) is None
    assert presets.by_imap_host(host) is None
    match = presets.match(smtp_host=host, imap_host=host, inbox_type=InboxType.CUSTOM_SMTP)
    assert match is not None
    assert (match.preset.id, match.matched_by) == ("custom", "inbox_type")


def test_generic_preset_never_matches_by_host(presets: Presets) -> None:
    assert presets.by_smtp_host("mail.example.org") is None
    assert presets.by_imap_host("mail.example.org") is None
    assert presets.by_mx(["mail.example.org"]) is None


def test_each_preferred_smtp_host_resolves_back_to_its_preset(presets: Presets) -> None:
    for preset in _non_generic(presets):
        preferred = preset.smtp.preferred()
        assert preferred is not None
        found = presets.by_smtp_host(preferred.host, preferred.port)
        assert found is not None
        assert found.id == preset.id, f"{preferred.host} claimed by {found.id}, not {preset.id}"


def test_every_smtp_host_and_pattern_belongs_to_one_preset(presets: Presets) -> None:
    # No two presets may claim the same SMTP host, so detection by SMTP host is never ambiguous.
    for preset in _non_generic(presets):
        for endpoint in preset.smtp.endpoints:
            claimants = [p.id for p in presets if p.matches_smtp_host(endpoint.host, endpoint.port)]
            assert claimants == [preset.id], f"{endpoint.host}: {claimants}"


# Outlook.com (consumer) and Microsoft 365 share outlook.office365.com for IMAP. Presets are tried
# in id order, so "microsoft-365" wins an IMAP-only match; a consumer account is told apart by its
# own SMTP host (smtp-mail.outlook.com), which match() tries first, or by its olc.protection MX.
SHARED_IMAP_HOSTS = {"outlook.office365.com": ("microsoft-365", {"microsoft-365", "outlook-com"})}


def test_each_preferred_imap_host_resolves_back_to_its_preset(presets: Presets) -> None:
    for preset in _non_generic(presets):
        preferred = preset.imap.preferred()
        assert preferred is not None
        found = presets.by_imap_host(preferred.host, preferred.port)
        assert found is not None
        expected = SHARED_IMAP_HOSTS.get(preferred.host, (preset.id, set()))[0]
        assert found.id == expected, f"{preferred.host} claimed by {found.id}, not {expected}"


def test_shared_imap_host_resolves_by_id_order(presets: Presets) -> None:
    for host, (winner, claimants) in SHARED_IMAP_HOSTS.items():
        assert {p.id for p in presets if p.matches_imap_host(host)} == claimants
        assert winner == min(claimants)
        found = presets.by_imap_host(host)
        assert found is not None
        assert found.id == winner
    # No other IMAP host is shared.
    for preset in _non_generic(presets):
        for endpoint in preset.imap.endpoints:
            if endpoint.host in SHARED_IMAP_HOSTS:
                continue
            claimants_here = [p.id for p in presets if p.matches_imap_host(endpoint.host, endpoint.port)]
            assert claimants_here == [preset.id], f"{endpoint.host}: {claimants_here}"


def test_mx_patterns_do_not_overlap(presets: Presets) -> None:
    samples = {
        "google-workspace": ["aspmx.l.google.com"],
        "microsoft-365": ["contoso.mail.protection.outlook.com"],
        "outlook-com": ["outlook-com.olc.protection.outlook.com"],
        "yahoo": ["mta6.am0.yahoodns.net", "mx-eu.mail.am0.yahoodns.net"],
        "aol": ["mx-aol.mail.gm0.yahoodns.net"],
        "fastmail": ["in2-smtp.messagingengine.com"],
        "zoho-org": ["mx2.zoho.com", "mx.zoho.eu", "mx.zoho.in", "mx.zoho.com.au", "mx.zoho.jp"],
        "icloud": ["mx02.mail.icloud.com"],
        "yandex": ["mx.yandex.net", "mx.yandex.ru"],
        "proton-bridge": ["mailsec.protonmail.ch"],
        "ovh": ["mx3.mail.ovh.net"],
        "titan": ["mx1.titan.email"],
        "hostinger": ["mx2.hostinger.com"],
        "gmx-com": ["mx00.gmx.com"],
        "gmx-net": ["mx01.emig.gmx.net"],
        "mail-com": ["mx01.mail.com"],
        "migadu": ["aspmx2.migadu.com"],
        "mailbox-org": ["mxext1.mailbox.org"],
        "godaddy": ["smtp.secureserver.net"],
        "namecheap-private-email": ["mx1.privateemail.com"],
        "ionos": ["mx01.kundenserver.de"],
        "rackspace": ["mx2.emailsrvr.com"],
    }
    assert {p.id for p in presets if p.mx_patterns} == set(samples)
    for preset_id, hosts in samples.items():
        for host in hosts:
            assert [p.id for p in presets if p.matches_mx(host)] == [preset_id], host


def test_proton_bridge_claims_loopback_only_on_its_own_ports(presets: Presets) -> None:
    # Loopback is shared by every local relay, tunnel and test server: it names Bridge only together
    # with Bridge's ports.
    bridge = presets.get("proton-bridge")
    hosts = {e.host for e in (*bridge.smtp.endpoints, *bridge.imap.endpoints)}
    assert hosts == {"127.0.0.1"}
    assert bridge.smtp.ports() == {1025: TlsMode.STARTTLS}
    assert bridge.imap.ports() == {1143: TlsMode.STARTTLS}
    found = presets.by_smtp_host("127.0.0.1", 1025)
    assert found is not None and found.id == "proton-bridge"
    found = presets.by_imap_host("127.0.0.1", 1143)
    assert found is not None and found.id == "proton-bridge"
    for port in (None, 587, 10587, 465):
        assert presets.by_smtp_host("127.0.0.1", port) is None, port
    assert presets.by_imap_host("127.0.0.1", 993) is None
    assert bridge.status is not None
    assert "hosted platform" in bridge.status
    assert bridge.auth.app_password_required


# --- address domains ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("gmail.com", "google-workspace"),
        ("googlemail.com", "google-workspace"),
        ("outlook.com", "outlook-com"),
        ("hotmail.com", "outlook-com"),
        ("live.com", "outlook-com"),
        ("msn.com", "outlook-com"),
        ("yahoo.com", "yahoo"),
        ("yahoo.co.uk", "yahoo"),
        ("ymail.com", "yahoo"),
        ("aol.com", "aol"),
        ("aim.com", "aol"),
        ("gmx.com", "gmx-com"),
        ("gmx.us", "gmx-com"),
        ("gmx.net", "gmx-net"),
        ("gmx.de", "gmx-net"),
        ("gmx.at", "gmx-net"),
        ("mail.com", "mail-com"),
        ("email.com", "mail-com"),
        ("usa.com", "mail-com"),
        ("icloud.com", "icloud"),
        ("me.com", "icloud"),
        ("mac.com", "icloud"),
        ("zoho.com", "zoho"),
        ("zohomail.com", "zoho"),
        ("fastmail.com", "fastmail"),
        ("fastmail.fm", "fastmail"),
        ("yandex.ru", "yandex"),
        ("yandex.com", "yandex"),
        ("mailbox.org", "mailbox-org"),
        ("proton.me", "proton-bridge"),
        ("protonmail.com", "proton-bridge"),
        # Case and a final dot do not matter; anything but the exact name does.
        ("GMail.COM", "google-workspace"),
        ("aol.com.", "aol"),
        (" yahoo.com ", "yahoo"),
        ("mail.gmail.com", None),
        ("gmail.co", None),
        ("example.org", None),
        ("yahoo.co.jp", None),
        ("", None),
    ],
)
def test_by_address_domain(presets: Presets, domain: str, expected: str | None) -> None:
    found = presets.by_address_domain(domain)
    assert (found.id if found else None) == expected


def test_every_address_domain_resolves_to_the_one_preset_listing_it(presets: Presets) -> None:
    claimed: dict[str, str] = {}
    for preset in presets:
        for domain in preset.address_domains:
            assert domain not in claimed, f"{domain}: {claimed[domain]} and {preset.id}"
            claimed[domain] = preset.id
            found = presets.by_address_domain(domain)
            assert found is not None
            assert found.id == preset.id
    assert len(claimed) >= 40


# Providers that host only their customers' own domains: no consumer address domain to list, so an
# address there finds its preset through the domain's MX hosts instead.
CUSTOM_DOMAIN_ONLY = {
    "microsoft-365",
    "zoho-org",
    "godaddy",
    "namecheap-private-email",
    "ionos",
    "ovh",
    "rackspace",
    "amazon-workmail",
    "titan",
    "hostinger",
    "migadu",
}
# WorkMail's inbound-smtp.<region>.amazonaws.com hosts also serve Amazon SES, so they name no provider.
NOT_FINDABLE_FROM_AN_ADDRESS = {"amazon-workmail"}


def test_address_domains_belong_to_consumer_providers(presets: Presets) -> None:
    with_domains = {p.id for p in presets if p.address_domains}
    assert with_domains == {p.id for p in _non_generic(presets)} - CUSTOM_DOMAIN_ONLY
    assert not presets.get("custom").address_domains


def test_every_provider_is_findable_from_an_address(presets: Presets) -> None:
    # From an address, settings discovery has its domain and, after one lookup, the domain's MX hosts.
    unfindable = {p.id for p in _non_generic(presets) if not p.address_domains and not p.mx_patterns}
    assert unfindable == NOT_FINDABLE_FROM_AN_ADDRESS


def test_address_domains_have_a_source(presets: Presets) -> None:
    for preset in presets:
        if preset.address_domains:
            facts = [s.fact for s in preset.sources if s.fact.startswith("Address domains")]
            assert facts, f"{preset.id}: no source for its address domains"


def test_presets_with_new_mx_patterns_cite_them(presets: Presets) -> None:
    for preset in presets:
        if preset.mx_patterns:
            facts = " ".join(s.fact for s in preset.sources)
            assert "MX" in facts, f"{preset.id}: no source for its MX hosts"


def test_every_exact_host_belongs_to_one_preset(presets: Presets) -> None:
    # Endpoints and regional host patterns alike: a host claimed twice would make detection depend on
    # the order the presets are tried in. The one deliberate exception is documented above.
    for service in ("smtp", "imap"):
        owners: dict[str, set[str]] = {}
        for preset in _non_generic(presets):
            spec = preset.smtp if service == "smtp" else preset.imap
            for host in spec.all_host_patterns():
                if not any(char in host for char in "*?["):
                    owners.setdefault(host, set()).add(preset.id)
        for host, ids in owners.items():
            # A shared host (loopback) names a provider only with that provider's port on it.
            port = next(
                (e.port for p in presets for e in getattr(p, service).endpoints if e.host == host), None
            )
            claimants = {
                p.id
                for p in presets
                if (
                    p.matches_smtp_host(host, port=port)
                    if service == "smtp"
                    else p.matches_imap_host(host, port=port)
                )
            }
            if service == "imap" and host in SHARED_IMAP_HOSTS:
                assert claimants == SHARED_IMAP_HOSTS[host][1]
                continue
            assert claimants == ids and len(ids) == 1, f"{service} {host}: {sorted(claimants)}"


@pytest.mark.parametrize(
    ("prefix", "regions"),
    [
        ("smtp.zoho", "zoho"),
        ("imap.zoho", "zoho"),
        ("smtppro.zoho", "zoho-org"),
        ("imappro.zoho", "zoho-org"),
    ],
)
def test_zoho_data_centres(presets: Presets, prefix: str, regions: str) -> None:
    for tld in ("com", "eu", "in", "com.au", "jp"):
        host = f"{prefix}.{tld}"
        found = presets.by_smtp_host(host) if prefix.startswith("smtp") else presets.by_imap_host(host)
        assert found is not None, host
        assert found.id == regions, host


# --- the address_domains field -------------------------------------------------------------------


def _with_domains(preset_id: str, domains: list[str]) -> Preset:
    return Preset.model_validate(
        {"id": preset_id, "name": preset_id, "inbox_type": "CUSTOM_SMTP", "address_domains": domains}
    )


@pytest.mark.parametrize(
    "domain",
    [
        "Gmail.com",
        "jane@gmail.com",
        "@gmail.com",
        "gmail.com.",
        "*.gmail.com",
        "gmail",
        "gmail .com",
        "",
        "-a.com",
    ],
)
def test_address_domains_must_be_plain_lower_case_domains(domain: str) -> None:
    with pytest.raises(ValueError, match="address_domains"):
        _with_domains("bad", [domain])


def test_an_address_domain_listed_twice_in_one_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        _with_domains("bad", ["example.com", "example.com"])


def test_two_presets_claiming_one_address_domain_are_refused() -> None:
    first = _with_domains("first", ["example.com"])
    second = _with_domains("second", ["example.net", "example.com"])
    with pytest.raises(PresetError, match=r"'first' and 'second' both claim 'example\.com'"):
        Presets([first, second])


def test_a_bad_address_domain_in_a_file_names_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(
        'id = "broken"\nname = "Broken"\ninbox_type = "CUSTOM_SMTP"\n'
        'address_domains = ["Jane@Example.com"]\n',
        encoding="utf-8",
    )
    with pytest.raises(PresetError, match=r"broken\.toml: invalid preset: address_domains"):
        load_preset_file(path)


@pytest.mark.parametrize(
    ("host", "shared"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("203.0.113.7", True),
        ("::1", True),
        ("[::1]", True),
        ("fe80::1%eth0", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("relay.localhost", True),
        ("smtp.gmail.com", False),
        ("127.0.0.1.nip.io", False),
        ("localhost.example.com", False),
    ],
)
def test_shared_hosts(host: str, shared: bool) -> None:
    assert is_shared_host(host) is shared


@pytest.mark.parametrize(
    ("inbox_type", "smtp_host", "smtp_port", "settled", "matched_by", "candidates"),
    [
        # A local relay or tunnel is nobody's host: the inbox type decides.
        (InboxType.CUSTOM_SMTP, "127.0.0.1", 10587, "custom", "inbox_type", ["custom"]),
        (
            InboxType.GOOGLE_WORKSPACE,
            "127.0.0.1",
            10587,
            "google-workspace",
            "inbox_type",
            ["google-workspace"],
        ),
        (InboxType.OUTLOOK_365, "localhost", 587, "microsoft-365", "inbox_type", ["microsoft-365"]),
        # Bridge's own port on loopback is Bridge.
        (InboxType.CUSTOM_SMTP, "127.0.0.1", 1025, "proton-bridge", "smtp_host", ["proton-bridge"]),
        # Hosts of one provider, inbox type of another: the hosts settle it, both are candidates.
        (
            InboxType.GOOGLE_WORKSPACE,
            "smtppro.zoho.com",
            587,
            "zoho-org",
            "smtp_host",
            ["zoho-org", "google-workspace"],
        ),
        (
            InboxType.OUTLOOK_365,
            "smtp.gmail.com",
            587,
            "google-workspace",
            "smtp_host",
            ["google-workspace", "microsoft-365"],
        ),
        (InboxType.CUSTOM_SMTP, "smtp.gmail.com", 587, "google-workspace", "smtp_host", ["google-workspace"]),
    ],
)
def test_match_settles_and_names_the_candidates(
    presets: Presets,
    inbox_type: InboxType,
    smtp_host: str,
    smtp_port: int,
    settled: str,
    matched_by: str,
    candidates: list[str],
) -> None:
    imap_host = "127.0.0.1" if is_shared_host(smtp_host) else "mail.example.org"
    match = presets.match(
        smtp_host=smtp_host, imap_host=imap_host, inbox_type=inbox_type, smtp_port=smtp_port, imap_port=993
    )
    assert match is not None
    assert (match.preset.id, match.matched_by) == (settled, matched_by)
    assert [p.id for p in match.candidates] == candidates


# --- authentication policy -----------------------------------------------------------------------


def test_microsoft_365_policy(presets: Presets) -> None:
    auth = presets.get("microsoft-365").auth
    assert auth.imap_basic_auth is BasicAuth.RETIRED
    assert auth.smtp_basic_auth is BasicAuth.TENANT_SETTING
    assert not auth.oauth_only
    assert not auth.app_password_required


def test_outlook_com_is_oauth_only(presets: Presets) -> None:
    auth = presets.get("outlook-com").auth
    assert auth.oauth_only
    assert auth.imap_basic_auth is BasicAuth.RETIRED
    assert auth.smtp_basic_auth is BasicAuth.RETIRED


def test_only_microsoft_restricts_basic_auth(presets: Presets) -> None:
    restricted = {
        p.id
        for p in presets
        if (p.auth.smtp_basic_auth, p.auth.imap_basic_auth) != (BasicAuth.ALLOWED, BasicAuth.ALLOWED)
    }
    assert restricted == {"microsoft-365", "outlook-com"}
    assert {p.id for p in presets if p.auth.oauth_only} == {"outlook-com"}


def test_google_app_password(presets: Presets) -> None:
    auth = presets.get("google-workspace").auth
    assert auth.app_password_required
    assert auth.app_password_format == "google16"
    assert {p.id for p in presets if p.auth.app_password_format is not None} == {"google-workspace"}


def test_icloud_usernames(presets: Presets) -> None:
    icloud = presets.get("icloud")
    assert icloud.imap.username is UsernameRule.LOCAL_PART
    assert icloud.smtp.username is UsernameRule.EMAIL
    others = {p.id for p in presets if UsernameRule.LOCAL_PART in (p.smtp.username, p.imap.username)}
    assert others == {"icloud"}


# --- ports ---------------------------------------------------------------------------------------


def test_amazon_workmail_has_no_587_and_three_regions(presets: Presets) -> None:
    workmail = presets.get("amazon-workmail")
    assert all(e.port != 587 for e in workmail.smtp.endpoints)
    assert workmail.smtp.ports() == {465: TlsMode.IMPLICIT}
    assert workmail.imap.ports() == {993: TlsMode.IMPLICIT}
    for service in (workmail.smtp, workmail.imap):
        regions = {e.host.split(".")[2] for e in service.endpoints}
        assert regions == {"us-west-2", "us-east-1", "eu-west-1"}
    assert workmail.status is not None
    assert "2027-03-31" in workmail.status


@pytest.mark.parametrize("preset_id", sorted(ONLY_465))
def test_providers_offering_only_465_have_no_starttls_smtp(presets: Presets, preset_id: str) -> None:
    smtp = presets.get(preset_id).smtp
    assert smtp.ports() == {465: TlsMode.IMPLICIT}
    assert all(e.tls is not TlsMode.STARTTLS for e in smtp.endpoints)


def test_only_465_list_is_complete(presets: Presets) -> None:
    only_465 = {p.id for p in _non_generic(presets) if p.smtp.ports() == {465: TlsMode.IMPLICIT}}
    assert only_465 == ONLY_465


@pytest.mark.parametrize("preset_id", sorted(BOTH_SMTP_PORTS))
def test_providers_offering_both_smtp_ports(presets: Presets, preset_id: str) -> None:
    smtp = presets.get(preset_id).smtp
    assert smtp.ports() == {587: TlsMode.STARTTLS, 465: TlsMode.IMPLICIT}
    preferred = smtp.preferred()
    assert preferred is not None
    # The platform recommends 587 with STARTTLS where both are offered.
    assert preferred.port == 587


@pytest.mark.parametrize("preset_id", ["microsoft-365", "outlook-com", "icloud"])
def test_providers_offering_only_587(presets: Presets, preset_id: str) -> None:
    assert presets.get(preset_id).smtp.ports() == {587: TlsMode.STARTTLS}


def test_yahoo_documents_587_starttls(presets: Presets) -> None:
    yahoo = presets.get("yahoo")
    assert yahoo.smtp.ports() == {587: TlsMode.STARTTLS, 465: TlsMode.IMPLICIT}
    assert {e.host for e in yahoo.smtp.endpoints} == {"smtp.mail.yahoo.com"}
    texts = [*yahoo.notes, yahoo.summary, *(e.note or "" for e in yahoo.smtp.endpoints)]
    assert not any("will not connect" in text or "only 465" in text for text in texts)
    hosts = [s for s in yahoo.sources if s.fact.startswith("Hosts")]
    assert len(hosts) == 1
    assert "587 STARTTLS" in hosts[0].fact
    assert "SMTP server settings for Yahoo Mail" in hosts[0].source


@pytest.mark.parametrize("preset_id", ["migadu", "mailbox-org"])
def test_imap_143_where_documented(presets: Presets, preset_id: str) -> None:
    imap = presets.get(preset_id).imap
    assert imap.ports() == {993: TlsMode.IMPLICIT, 143: TlsMode.STARTTLS}
    preferred = imap.preferred()
    assert preferred is not None
    assert preferred.port == 993


def test_namecheap_offers_imap_143(presets: Presets) -> None:
    imap = presets.get("namecheap-private-email").imap
    assert imap.ports() == {993: TlsMode.IMPLICIT, 143: TlsMode.STARTTLS}
    preferred = imap.preferred()
    assert preferred is not None
    assert preferred.port == 993


# --- DNS -----------------------------------------------------------------------------------------


def test_google_dns(presets: Presets) -> None:
    dns = presets.get("google-workspace").dns
    assert dns.spf_includes == ("_spf.google.com",)
    assert dns.dkim_selectors == ("google",)
    assert dns.dkim_selectors_known


def test_microsoft_365_dns(presets: Presets) -> None:
    dns = presets.get("microsoft-365").dns
    assert dns.spf_includes == ("spf.protection.outlook.com",)
    assert dns.dkim_selectors == ("selector1", "selector2")
    assert dns.dkim_selectors_known


def test_only_documented_dns_facts_are_claimed(presets: Presets) -> None:
    # SPF includes and "known" DKIM selectors come only from the providers that document them.
    assert {p.id for p in presets if p.dns.spf_includes} == {
        "google-workspace",
        "microsoft-365",
        "fastmail",
        "migadu",
        "mailbox-org",
        "zoho",
        "zoho-org",
        "icloud",
        "proton-bridge",
    }
    assert {p.id for p in presets if p.dns.dkim_selectors_known} == {
        "google-workspace",
        "microsoft-365",
        "fastmail",
        "migadu",
    }
    for preset in presets:
        assert not preset.dns.dkim_selectors_known or preset.dns.dkim_selectors, preset.id


@pytest.mark.parametrize(
    ("preset_id", "selectors"),
    [
        ("zoho", ("zoho", "zmail")),
        ("zoho-org", ("zoho", "zmail")),
        ("proton-bridge", ("protonmail", "protonmail2", "protonmail3")),
        ("mailbox-org", ("MBO0001", "MBO0002", "MBO0003", "MBO0004")),
    ],
)
def test_selectors_seen_in_the_wild_are_not_known(
    presets: Presets, preset_id: str, selectors: tuple[str, ...]
) -> None:
    dns = presets.get(preset_id).dns
    assert dns.dkim_selectors == selectors
    assert not dns.dkim_selectors_known


@pytest.mark.parametrize(
    ("preset_id", "include", "selectors"),
    [
        ("fastmail", "spf.messagingengine.com", ("fm1", "fm2", "fm3")),
        ("migadu", "spf.migadu.com", ("key1", "key2", "key3")),
    ],
)
def test_documented_spf_include_and_selectors(
    presets: Presets, preset_id: str, include: str, selectors: tuple[str, ...]
) -> None:
    preset = presets.get(preset_id)
    assert preset.dns.spf_includes == (include,)
    assert preset.dns.dkim_selectors == selectors
    assert preset.dns.dkim_selectors_known
    dns_sources = [s for s in preset.sources if s.fact.startswith("DNS")]
    assert dns_sources
    assert all(s.verified for s in dns_sources)
    assert include in " ".join(s.fact for s in dns_sources)


def test_mailbox_org_spf_include(presets: Presets) -> None:
    assert presets.get("mailbox-org").dns.spf_includes == ("mailbox.org",)


# --- limits --------------------------------------------------------------------------------------


def test_platform_max_follows_the_contract(presets: Presets) -> None:
    for preset in presets:
        assert preset.limits.platform_max == PLATFORM_MAX[preset.inbox_type], preset.id
        assert preset.limits.note, f"{preset.id}: no limits note"


def test_hard_caps(presets: Presets) -> None:
    assert presets.get("google-workspace").limits.hard_daily_cap == 2000
    assert presets.get("microsoft-365").limits.hard_daily_cap == 10000
    # Only Google and Microsoft 365 publish caps in the gathered facts; none are invented.
    capped = {p.id for p in presets if p.limits.hard_daily_cap is not None}
    assert capped == {"google-workspace", "microsoft-365"}


def test_microsoft_365_records_the_5000_conflict(presets: Presets) -> None:
    preset = presets.get("microsoft-365")
    assert preset.limits.note is not None
    assert "5,000" in preset.limits.note
    platform = [s for s in preset.sources if s.fact.startswith("Platform maximum")]
    assert len(platform) == 1
    assert "5,000" in platform[0].fact
    assert not platform[0].verified


def test_a_match_is_remembered_per_hosts_ports_and_inbox_type() -> None:
    presets = load_presets(PRESETS_DIR)

    def ask(inbox_type: InboxType, smtp_port: int | None = None, imap_port: int | None = None) -> PresetMatch:
        found = presets.match(
            smtp_host="smtp.gmail.com",
            imap_host="imap.gmail.com",
            inbox_type=inbox_type,
            smtp_port=smtp_port,
            imap_port=imap_port,
        )
        assert found is not None
        return found

    first = ask(InboxType.CUSTOM_SMTP)
    # A batch asks again for every account on the same hosts: the same answer, not a new search.
    assert ask(InboxType.CUSTOM_SMTP) is first
    for other in (
        ask(InboxType.CUSTOM_SMTP, smtp_port=465),
        ask(InboxType.CUSTOM_SMTP, imap_port=993),
        ask(InboxType.OUTLOOK_365),
    ):
        assert other is not first
        assert other.preset.id == "google-workspace"
    assert [p.id for p in ask(InboxType.OUTLOOK_365).candidates] == ["google-workspace", "microsoft-365"]


def test_remembered_matches_are_bounded_least_recently_used_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_presets, "MATCHES_REMEMBERED", 4)
    presets = load_presets(PRESETS_DIR)

    def ask(n: int) -> PresetMatch | None:
        return presets.match(
            smtp_host=f"smtp.d{n}.example", imap_host="imap.example", inbox_type=InboxType.CUSTOM_SMTP
        )

    kept = ask(0)
    second = ask(1)
    ask(2)
    ask(3)
    assert ask(0) is kept  # used again: now the most recent
    ask(4)
    ask(5)
    assert len(presets._matches) == 4
    assert ask(0) is kept
    assert ask(1) is not second  # the least recently used went first


# --- where each preset was checked -----------------------------------------------------------------


def test_every_preset_file_says_where_and_when_it_was_checked(presets: Presets) -> None:
    for preset in presets:
        assert preset.checked is not None, preset.id
        assert preset.checked.url.startswith("https://"), preset.id
        assert preset.checked.on.year >= 2026, preset.id


@pytest.mark.parametrize("drop", ["[checked]", "[[sources]]"])
def test_a_preset_without_a_source_fails_to_load(tmp_path: Path, drop: str) -> None:
    from inboxcheck._errors import PresetError
    from inboxcheck._presets import load_preset_file

    text = (PRESETS_DIR / "fastmail.toml").read_text(encoding="utf-8")
    kept, skipping = [], False
    for line in text.splitlines():
        if line.startswith("["):
            skipping = line.strip() == drop
        if not skipping:
            kept.append(line)
    path = tmp_path / "fastmail.toml"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    with pytest.raises(PresetError, match="names its source"):
        load_preset_file(path)


def test_presets_show_prints_the_source_and_date() -> None:
    from click.testing import CliRunner

    from inboxcheck.cli import cli

    result = CliRunner().invoke(cli, ["presets", "show", "fastmail"])
    assert result.exit_code == 0
    assert "checked 2026-12-07 against" in result.output
    assert "https://www.fastmail.help/" in result.output


@pytest.mark.parametrize(
    ("preset_id", "host", "includes"),
    [
        ("zoho", "smtp.zoho.com", ["zohomail.com"]),
        ("zoho", "smtp.zoho.eu", ["zohomail.eu"]),
        ("zoho-org", "smtppro.zoho.in", ["zohomail.in"]),
        ("icloud", "smtp.mail.me.com", ["icloud.com"]),
        ("proton-bridge", "127.0.0.1", ["_spf.protonmail.ch"]),
    ],
)
def test_spf_includes_follow_the_data_centre(
    presets: Presets, preset_id: str, host: str, includes: list[str]
) -> None:
    from inboxcheck._check import CheckContext
    from inboxcheck._models import Account
    from inboxcheck._options import CheckOptions
    from inboxcheck._presets import PresetMatch
    from inboxcheck.checks.dns.spf import _provider_includes
    from tests.scenarios import base_payload

    account = Account.model_validate(base_payload(email_address="jo@example.org", smtp_host=host))
    preset = presets.get(preset_id)
    match = PresetMatch(preset=preset, matched_by="smtp_host", candidates=(preset,))
    ctx = CheckContext(account, options=CheckOptions(), presets=presets, match=match)
    assert _provider_includes(ctx) == includes
    own = Account.model_validate(base_payload(email_address="jo@icloud.com", smtp_host=host))
    if preset_id == "icloud":
        ctx = CheckContext(own, options=CheckOptions(), presets=presets, match=match)
        assert _provider_includes(ctx) == [], "icloud.com's own SPF is Apple's business"


@pytest.mark.parametrize(
    ("host", "preset_id"),
    [
        ("smtp.zohocloud.ca", "zoho"),
        ("smtp.zoho.sa", "zoho"),
        ("smtppro.zoho.uk", "zoho-org"),
        ("smtppro.zoho.com.cn", "zoho-org"),
    ],
)
def test_zohos_canada_saudi_uk_and_china_data_centres(presets: Presets, host: str, preset_id: str) -> None:
    preset = presets.by_smtp_host(host)
    assert preset is not None and preset.id == preset_id
    # Their SPF include is not recorded: none is required rather than zohomail.com (a false fail).
    assert any(pattern for pattern, includes in preset.dns.spf_includes_by_host.items() if not includes)
