"""The provider error knowledge base: the pure matcher, the data, and every error-table row served
from a scripted peer through the real SMTP and IMAP checks."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from inboxcheck._errors import KnowledgeError
from inboxcheck._knowledge import (
    KnowledgeBase,
    Rule,
    alert_text,
    load_knowledge,
    load_rules,
    match_reply,
    parse_imap_reply,
    parse_smtp_reply,
)
from inboxcheck._models import Severity
from inboxcheck._presets import load_presets
from inboxcheck.checks.login import imap, smtp
from tests.peers import DnsPeer, PeerCerts, secret_wire_forms
from tests.scenarios import ELAPSED_BOUND, TOKEN, ImapScript, SmtpScript, base_payload, peer, run_check

KB = load_knowledge()
PRESETS = load_presets()

# Every row of the error table in provider-facts.md ("Error replies and what they mean"): the provider's
# preset (None for server software seen anywhere), the protocol, the reply as the table gives it, and
# the finding code inboxcheck must give for it.
ERROR_TABLE: list[tuple[str | None, str, str, str]] = [
    ("google-workspace", "smtp", "530 5.7.0 Must issue a STARTTLS command first", "smtp.auth.tls_required"),
    (
        "google-workspace",
        "smtp",
        "534-5.7.9 Application-specific password required",
        "smtp.auth.app_password_required",
    ),
    ("google-workspace", "smtp", "535-5.7.8 Username and Password not accepted", "smtp.auth.rejected"),
    (
        "google-workspace",
        "imap",
        "NO [ALERT] Application-specific password required",
        "imap.auth.app_password_required",
    ),
    ("google-workspace", "imap", "NO [AUTHENTICATIONFAILED] Invalid credentials", "imap.auth.rejected"),
    (
        "google-workspace",
        "imap",
        "NO [ALERT] Your account is not enabled for IMAP use.",
        "imap.auth.imap_disabled",
    ),
    (
        "google-workspace",
        "imap",
        "NO [ALERT] IMAP access is disabled for your domain.",
        "imap.auth.imap_disabled",
    ),
    (
        "google-workspace",
        "imap",
        "NO [WEBALERT https://accounts.google.com/x] Web login required",
        "imap.auth.web_login_required",
    ),
    (
        "google-workspace",
        "imap",
        "NO [ALERT] Please log in via your web browser",
        "imap.auth.web_login_required",
    ),
    (
        "microsoft-365",
        "smtp",
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant",
        "smtp.auth.disabled_for_tenant",
    ),
    (
        "microsoft-365",
        "smtp",
        "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
        "smtp.auth.basic_auth_disabled",
    ),
    ("microsoft-365", "smtp", "535 5.7.3 Authentication unsuccessful", "smtp.auth.rejected"),
    ("microsoft-365", "smtp", "530 5.7.57 Client not authenticated to send mail", "smtp.auth.required"),
    (
        "microsoft-365",
        "smtp",
        "550 5.7.60 Client does not have permissions to send as this sender",
        "smtp.send.send_as_denied",
    ),
    (
        "microsoft-365",
        "smtp",
        "550 5.7.30 Basic authentication is not supported for Client Submission.",
        "smtp.auth.basic_auth_retired",
    ),
    ("microsoft-365", "imap", "NO LOGIN failed.", "imap.auth.basic_auth_retired"),
    ("outlook-com", "imap", "NO AUTHENTICATE failed.", "imap.auth.basic_auth_retired"),
    ("yahoo", "smtp", "535 5.7.0 (#AUTH005) Too many bad auth attempts.", "smtp.auth.app_password_required"),
    ("zoho", "smtp", "535 Authentication Failed", "smtp.auth.rejected"),
    ("zoho-org", "smtp", "554 5.1.8 Sender Address Blocked", "smtp.send.sender_blocked"),
    (None, "smtp", "535 5.7.8 Error: authentication failed: authentication failure", "smtp.auth.rejected"),
    (None, "smtp", "503 5.5.1 Error: authentication not enabled", "smtp.auth.not_enabled"),
    (None, "smtp", "454 4.7.0 TLS not available due to local problem", "smtp.starttls.failed"),
    (None, "imap", "NO [AUTHENTICATIONFAILED] Authentication failed.", "imap.auth.rejected"),
    (
        None,
        "imap",
        "NO LOGIN failed\n* BYE mail.example.com Zimbra IMAP server terminating connection",
        "imap.auth.rejected",
    ),
]

REQUIRED_CODES = {
    "smtp.auth.rejected",
    "smtp.auth.app_password_required",
    "smtp.auth.disabled_for_tenant",
    "smtp.auth.basic_auth_disabled",
    "imap.auth.rejected",
    "imap.auth.app_password_required",
    "imap.auth.imap_disabled",
    "imap.auth.web_login_required",
    "imap.auth.basic_auth_retired",
}


# --- the pure matcher ------------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "protocol", "reply", "code"), ERROR_TABLE)
def test_every_error_table_row_is_matched(provider: str | None, protocol: str, reply: str, code: str) -> None:
    match = match_reply(protocol, reply, providers=[provider] if provider else [])  # type: ignore[arg-type]
    assert match is not None, reply
    assert match.rule.code == code


def test_the_required_codes_are_all_in_the_knowledge_base() -> None:
    assert {rule.code for rule in KB.rules} >= REQUIRED_CODES


@pytest.mark.parametrize("rule", KB.rules, ids=lambda rule: rule.id)
def test_every_rule_matches_its_own_example_and_reads_well(rule: Rule) -> None:
    match = match_reply(
        rule.protocol, rule.example, providers=rule.providers[:1], credential=rule.credential or "password"
    )
    assert match is not None and match.rule.id == rule.id
    for text in (rule.message, rule.fix):
        assert text[0].isupper() and text.endswith("."), text
    for preset_id in rule.providers:
        assert preset_id in PRESETS, f"{rule.id} names an unknown preset {preset_id}"


def test_microsofts_login_failed_is_policy_there_and_wrong_credentials_elsewhere() -> None:
    at_microsoft = match_reply("imap", "NO LOGIN failed.", providers=["microsoft-365"])
    elsewhere = match_reply("imap", "NO LOGIN failed.", providers=["custom"])
    unknown = match_reply("imap", "NO LOGIN failed.")
    assert at_microsoft is not None and at_microsoft.rule.code == "imap.auth.basic_auth_retired"
    assert elsewhere is not None and elsewhere.rule.code == "imap.auth.rejected"
    assert unknown is not None and unknown.rule.code == "imap.auth.rejected"


def test_a_providers_rule_beats_the_generic_one_for_the_same_reply() -> None:
    google = match_reply(
        "smtp", "535-5.7.8 Username and Password not accepted", providers=["google-workspace"]
    )
    generic = match_reply("smtp", "535-5.7.8 Username and Password not accepted")
    assert google is not None and google.rule.id == "google.smtp.credentials-not-accepted"
    assert generic is not None and generic.rule.id == "generic.smtp.535"


def test_unknown_replies_match_nothing() -> None:
    assert match_reply("smtp", "250 2.0.0 OK") is None
    assert match_reply("smtp", "550 5.1.1 No such user") is None
    assert match_reply("imap", "OK LOGIN completed") is None
    assert match_reply("imap", "NO [BADCHARSET] Unknown charset") is None


# --- standard codes first (RFC 5321/3463 reply classes, RFC 5530 response codes) -------------------

CLASS_TABLE: list[tuple[str, str, str]] = [
    ("smtp", "454 4.7.0 Temporary authentication failure", "smtp.reply.temporary"),
    ("smtp", "421 4.7.0 Try again later, closing connection.", "smtp.reply.temporary"),
    ("smtp", "451 4.3.0 Temporary lookup failure", "smtp.reply.temporary"),
    # An enhanced status of class 4 is temporary even under a code of another class.
    ("smtp", "535 4.7.0 Authentication back end unavailable", "smtp.reply.temporary"),
    ("smtp", "432 4.7.12 A password transition is needed", "smtp.reply.temporary"),
    ("imap", "NO [UNAVAILABLE] Temporary authentication failure", "imap.reply.temporary"),
    (
        "imap",
        "NO [UNAVAILABLE] Maximum number of connections from user+IP exceeded "
        "(mail_max_userip_connections=10)",
        "imap.connections.limit",
    ),
    ("imap", "NO [ALERT] Too many simultaneous connections. (Failure)", "imap.connections.limit"),
    (
        "imap",
        "NO [LIMIT] Maximum number of connections from user+IP exceeded (mail_max_userip_connections=10)",
        "imap.connections.limit",
    ),
    ("imap", "NO [LIMIT] Too many commands", "imap.reply.limit"),
    ("imap", "NO [AUTHENTICATIONFAILED] Authentication failed.", "imap.auth.rejected"),
    ("imap", "NO [AUTHORIZATIONFAILED] No such authorization-ID", "imap.auth.authorization_failed"),
    ("imap", "NO [EXPIRED] That password isn't valid any more", "imap.auth.expired"),
    ("imap", "NO [PRIVACYREQUIRED] Connection is not private", "imap.auth.privacy_required"),
    ("imap", "NO [CONTACTADMIN] Please contact the administrator", "imap.auth.contact_admin"),
]


@pytest.mark.parametrize(("protocol", "reply", "code"), CLASS_TABLE)
@pytest.mark.parametrize("providers", [(), ("google-workspace",), ("microsoft-365", "google-workspace")])
def test_standard_codes_decide_whatever_the_provider(
    protocol: str, reply: str, code: str, providers: tuple[str, ...]
) -> None:
    match = match_reply(protocol, reply, providers=providers)  # type: ignore[arg-type]
    assert match is not None and match.rule.code == code
    temporary = code in (
        "smtp.reply.temporary",
        "imap.reply.temporary",
        "imap.reply.limit",
        "imap.connections.limit",
    )
    assert (match.rule.severity is Severity.ERROR) == temporary


def test_a_temporary_class_beats_words_that_would_mean_a_wrong_password() -> None:
    # Microsoft's "LOGIN failed" words, Zimbra's, Google's: under [UNAVAILABLE] or a 4yz none decides.
    for providers in ((), ("microsoft-365",)):
        imap_match = match_reply("imap", "NO [UNAVAILABLE] LOGIN failed.", providers=providers)
        assert imap_match is not None and imap_match.rule.code == "imap.reply.temporary"
    google = match_reply(
        "smtp", "454 4.7.0 Username and Password not accepted, try later", providers=["google-workspace"]
    )
    assert google is not None and google.rule.code == "smtp.reply.temporary"


def test_a_text_rule_refines_its_class_only_when_it_says_so() -> None:
    google = match_reply(
        "imap", "NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)", providers=["google-workspace"]
    )
    assert google is not None and google.rule.id == "google.imap.invalid-credentials"
    postfix = match_reply("smtp", "454 4.7.0 TLS not available due to local problem")
    assert postfix is not None and postfix.rule.code == "smtp.starttls.failed"
    assert postfix.rule.severity is Severity.ERROR, "a 4yz reply is never a verdict"


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("534-5.7.9 Application-specific password required.", "smtp.auth.app_password_required"),
        (
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
            "smtp.auth.disabled_for_tenant",
        ),
        ("535 5.7.3 Authentication unsuccessful [X]", "smtp.auth.rejected"),
        ("530 5.7.57 Client not authenticated to send mail.", "smtp.auth.required"),
    ],
)
@pytest.mark.parametrize("providers", [(), ("custom",), ("yahoo",)])
def test_unambiguous_provider_words_apply_whatever_preset_was_settled_on(
    reply: str, code: str, providers: tuple[str, ...]
) -> None:
    match = match_reply("smtp", reply, providers=providers)
    assert match is not None and match.rule.code == code
    assert match.rule.unambiguous


def test_googles_imap_app_password_alert_applies_on_any_host() -> None:
    match = match_reply("imap", "NO [ALERT] Application-specific password required: https://x (Failure)")
    assert match is not None and match.rule.code == "imap.auth.app_password_required"


def test_ambiguous_words_need_the_provider_among_the_candidates() -> None:
    retired: list[tuple[str, ...]] = [
        ("google-workspace", "microsoft-365"),
        ("microsoft-365",),
        ("outlook-com",),
    ]
    for providers in retired:
        match = match_reply("imap", "NO LOGIN failed.", providers=providers)
        assert match is not None and match.rule.code == "imap.auth.basic_auth_retired", providers
    rejected: list[tuple[str, ...]] = [(), ("custom",), ("google-workspace",)]
    for providers in rejected:
        match = match_reply("imap", "NO LOGIN failed.", providers=providers)
        assert match is not None and match.rule.code == "imap.auth.rejected", providers


def test_providers_must_be_a_sequence_of_ids_not_one_string() -> None:
    with pytest.raises(TypeError):
        match_reply("imap", "NO LOGIN failed.", providers="microsoft-365")


def test_alert_text_is_shown_escaped() -> None:
    assert alert_text("NO [ALERT] Please log in \x1b[31mnow\x07 (Failure)") == (
        "Please log in \\x1b[31mnow\\x07 (Failure)"
    )
    assert alert_text("* OK [ALERT] one\nA1 NO [ALERT] two") == "one two"
    assert alert_text("NO [AUTHENTICATIONFAILED] nope") is None
    assert len(alert_text("NO [ALERT] " + "x" * 5000) or "") <= 500


def test_smtp_parsing_of_multiline_replies_and_codes() -> None:
    parsed = parse_smtp_reply(
        "534-5.7.9 Application-specific password required.\n534 5.7.9  https://x - gsmtp"
    )
    assert parsed.reply_code == 534
    assert parsed.enhanced == "5.7.9"
    assert parsed.text == "Application-specific password required. https://x - gsmtp"
    bare = parse_smtp_reply("Authentication unsuccessful", code=535)
    assert (bare.reply_code, bare.enhanced, bare.text) == (535, None, "Authentication unsuccessful")
    aiosmtplib_form = parse_smtp_reply("5.7.8 Error: authentication failed: x", code=535)
    assert aiosmtplib_form.enhanced == "5.7.8"


def test_imap_parsing_reads_status_and_response_codes() -> None:
    parsed = parse_imap_reply("a1 NO [WEBALERT https://x] Web login required.")
    assert parsed.status == "NO"
    assert parsed.response_codes == ("WEBALERT",)
    untagged_first = parse_imap_reply("* NO [ALERT] Please log in\nA2 NO [AUTHENTICATIONFAILED] failed")
    assert untagged_first.status == "NO"
    assert untagged_first.response_codes == ("ALERT", "AUTHENTICATIONFAILED")
    zimbra = parse_imap_reply("NO LOGIN failed\n* BYE bye")
    assert zimbra.status == "NO"


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=400), code=st.none() | st.integers(min_value=0, max_value=999))
def test_the_matcher_never_raises_on_hostile_text(text: str, code: int | None) -> None:
    match_reply("smtp", text, providers=["google-workspace"], reply_code=code)
    match_reply("imap", text, providers=["microsoft-365", "google-workspace"])
    alert_text(text)


def test_invalid_rule_files_are_reported_with_their_source() -> None:
    with pytest.raises(KnowledgeError, match=r"broken\.toml: rule 1 is invalid"):
        load_rules('[[rule]]\nid = "x"\nprotocol = "smtp"\n', source="broken.toml")
    with pytest.raises(KnowledgeError, match="not valid TOML"):
        load_rules("[[rule", source="bad.toml")
    rule = KB.rules[0]
    with pytest.raises(KnowledgeError, match="two knowledge rules"):
        KnowledgeBase([rule, rule])
    base = (
        'id = "x"\nprotocol = "smtp"\ncode = "smtp.a.b"\nmessage = "M."\nfix = "F."\nsource = "s"\n'
        'example = "e"\n'
    )
    with pytest.raises(KnowledgeError, match="unambiguous"):
        load_rules("[[rule]]\n" + base + "unambiguous = true\n", source="t.toml")
    with pytest.raises(KnowledgeError, match="standard"):
        load_rules("[[rule]]\n" + base + 'standard = true\npattern = "x"\n', source="t.toml")
    with pytest.raises(KnowledgeError, match="no standard rule"):
        KnowledgeBase(load_rules("[[rule]]\n" + base + 'refines = "nothing"\n', source="t.toml"))


def test_the_knowledge_base_ships_inside_the_package() -> None:
    from importlib import resources

    folder = resources.files("inboxcheck").joinpath("knowledge")
    assert sorted(f.name for f in folder.iterdir() if f.name.endswith(".toml"))
    assert len(KB) >= len(ERROR_TABLE)


# --- each rule served by a scripted peer, through the real checks ----------------------------------


def _host(rule: Rule) -> str:
    if not rule.providers:
        return "mail.peer.test"
    preset = PRESETS.get(rule.providers[0])
    service = preset.smtp if rule.protocol == "smtp" else preset.imap
    return service.endpoints[0].host


PROVIDER_HOSTS = tuple(sorted({_host(rule) for rule in KB.rules}))


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts(extra_names=PROVIDER_HOSTS)


def _tagged(example: str) -> str:
    return "\n".join(line for line in example.split("\n") if not line.startswith("*"))


@pytest.mark.parametrize("rule", [r for r in KB.rules if r.protocol == "smtp"], ids=lambda rule: rule.id)
async def test_smtp_reply_served_by_a_peer_gives_the_rules_finding(rule: Rule, certs: PeerCerts) -> None:
    at_starttls = rule.reply_code == 454
    script = SmtpScript(tls=certs.server_context())
    if rule.credential == "oauth2":
        script.extensions_after_tls = ("AUTH PLAIN LOGIN XOAUTH2",)
    if at_starttls:
        script.starttls_reply = rule.example
    else:
        script.auth_reply = rule.example
    host = _host(rule)
    async with DnsPeer() as dns, peer(script) as server:
        payload = base_payload(smtp_host=host, smtp_port=server.port, imap_host="mail.peer.test")
        run = await run_check(
            smtp.CHECKS,
            "smtp.login",
            payload,
            certs=certs,
            nameservers=[dns.nameserver],
            token=TOKEN if rule.credential == "oauth2" else None,
        )
    finding = run.finding(rule.code)
    assert finding.evidence["rule"] == rule.id
    assert finding.evidence["reply"] == rule.example, "the server's reply must be kept verbatim"
    assert finding.severity is rule.severity
    # Microsoft's Basic-auth refusals carry its timeline after the rule's words (checks/login/microsoft.py).
    assert finding.message.startswith(rule.message) and finding.fix == rule.fix
    assert run.elapsed < ELAPSED_BOUND
    if at_starttls:
        for form in secret_wire_forms("sam@peer.test", "correct horse battery"):
            assert form not in server.received


@pytest.mark.parametrize("rule", [r for r in KB.rules if r.protocol == "imap"], ids=lambda rule: rule.id)
async def test_imap_reply_served_by_a_peer_gives_the_rules_finding(rule: Rule, certs: PeerCerts) -> None:
    script = ImapScript(greeting="* OK ready", implicit=True, login_reply=rule.example)
    if rule.credential == "oauth2":
        script.capabilities_implicit += " AUTH=XOAUTH2"
    host = _host(rule)
    async with DnsPeer() as dns, peer(script, tls=certs.server_context()) as server:
        payload: dict[str, Any] = base_payload(
            imap_host=host, imap_port=server.port, smtp_host="mail.peer.test"
        )
        run = await run_check(
            imap.CHECKS,
            "imap.login",
            payload,
            certs=certs,
            nameservers=[dns.nameserver],
            token=TOKEN if rule.credential == "oauth2" else None,
        )
    finding = run.finding(rule.code)
    assert finding.evidence["rule"] == rule.id
    assert finding.evidence["reply"] == _tagged(rule.example)
    assert finding.severity is rule.severity
    assert run.codes == [rule.code]
    assert run.elapsed < ELAPSED_BOUND
    assert not any(b"EXAMINE" in command for command in script.commands)


# --- a provider named by inbox_type, on a host that names none (a relay, a tunnel, a test server) ---

_TYPE_OF = {"google-workspace": "GOOGLE_WORKSPACE", "microsoft-365": "OUTLOOK_365"}
_TYPED_RULES = [r for r in KB.rules if set(r.providers) & set(_TYPE_OF)]


def _inbox_type(rule: Rule) -> str:
    return next(_TYPE_OF[p] for p in rule.providers if p in _TYPE_OF)


def test_every_candidates_rules_apply() -> None:
    # An ambiguous provider rule (Microsoft's bare "LOGIN failed."): it applies when its provider is
    # any of the candidates, and only then. (Unambiguous ones apply from any host: see above.)
    example = next(r for r in KB.rules if r.id == "microsoft.imap.login-failed").example
    for candidates in (["zoho-org", "microsoft-365"], ["microsoft-365", "zoho-org"]):
        found = match_reply("imap", example, providers=candidates)
        assert found is not None and found.rule.id == "microsoft.imap.login-failed", candidates
    found = match_reply("imap", example, providers=["zoho-org"])
    assert found is None or found.rule.id != "microsoft.imap.login-failed"


def test_of_two_equally_specific_provider_rules_the_likelier_candidates_wins() -> None:
    def rule(provider: str) -> Rule:
        return Rule(
            id=f"{provider}.smtp.same",
            protocol="smtp",
            providers=(provider,),
            reply_code=535,
            code="smtp.auth.rejected",
            message=f"{provider} says no.",
            fix="Try again.",
            source="test",
            example="535 no",
        )

    kb = KnowledgeBase([rule("zoho-org"), rule("google-workspace")])
    reply = parse_smtp_reply("535 no")
    for candidates in (["google-workspace", "zoho-org"], ["zoho-org", "google-workspace"]):
        found = kb.match(reply, providers=candidates)
        assert found is not None and found.rule.providers == (candidates[0],)


@pytest.mark.parametrize("rule", _TYPED_RULES, ids=lambda rule: rule.id)
async def test_a_providers_reply_from_loopback_gives_its_finding_by_inbox_type(
    rule: Rule, certs: PeerCerts
) -> None:
    script: SmtpScript | ImapScript
    if rule.protocol == "smtp":
        at_starttls = rule.reply_code == 454
        script = SmtpScript(
            tls=certs.server_context(),
            starttls_reply=rule.example if at_starttls else SmtpScript.starttls_reply,
            auth_reply=SmtpScript.auth_reply if at_starttls else rule.example,
        )
        if rule.credential == "oauth2":
            script.extensions_after_tls = ("AUTH PLAIN LOGIN XOAUTH2",)
        tls = None
    else:
        script = ImapScript(greeting="* OK ready", implicit=True, login_reply=rule.example)
        if rule.credential == "oauth2":
            script.capabilities_implicit += " AUTH=XOAUTH2"
        tls = certs.server_context()
    async with peer(script, tls=tls) as server:
        payload = base_payload(inbox_type=_inbox_type(rule), **{f"{rule.protocol}_port": server.port})
        specs = smtp.CHECKS if rule.protocol == "smtp" else imap.CHECKS
        token = TOKEN if rule.credential == "oauth2" else None
        run = await run_check(specs, f"{rule.protocol}.login", payload, certs=certs, token=token)
    finding = run.finding(rule.code)
    assert finding.evidence["rule"] == rule.id
    assert run.report.preset is not None
    assert run.report.preset.matched_by == "inbox_type"
