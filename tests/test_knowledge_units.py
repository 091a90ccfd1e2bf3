"""The knowledge base's parsing and matching, offline and exact: every field a rule keys on, the
order of choice (standard class first, then the most specific rule, then the likelier provider, then
file order), ``refines``, ``unambiguous``, the rule file's checks and the alert text. Small made-up rules
say what each test is about; the bundled rules are tested in test_knowledge.py. Fast enough to run
under mutation testing (scripts/mutation.sh)."""

from __future__ import annotations

from typing import Any

import pytest

from inboxcheck import _knowledge
from inboxcheck._errors import KnowledgeError
from inboxcheck._knowledge import (
    MAX_ALERT,
    KnowledgeBase,
    ParsedReply,
    Rule,
    alert_text,
    load_knowledge,
    load_rules,
    match_reply,
    parse_imap_reply,
    parse_smtp_reply,
)
from inboxcheck._models import Severity


def rule(id: str, protocol: str = "smtp", **fields: Any) -> Rule:
    return Rule.model_validate(
        {
            "id": id,
            "protocol": protocol,
            "code": f"{protocol}.test.{id.replace('-', '_').replace('.', '_')}",
            "message": "M.",
            "fix": "F.",
            "source": "test",
            "example": "e",
            **fields,
        }
    )


def chosen(
    kb: KnowledgeBase, protocol: str, reply: str, *providers: str, code: int | None = None
) -> str | None:
    match = match_reply(protocol, reply, providers=providers, reply_code=code, knowledge=kb)  # type: ignore[arg-type]
    return None if match is None else match.rule.id


# --- SMTP replies ---------------------------------------------------------------------------------


def test_smtp_code_is_the_first_lines_and_the_enhanced_status_the_first_one_given() -> None:
    parsed = parse_smtp_reply("451-first line\r\n550-5.7.1 second\r\n550 4.2.0 third")
    assert parsed.protocol == "smtp"
    assert parsed.reply_code == 451
    assert parsed.enhanced == "5.7.1"
    assert parsed.text == "first line second third"
    assert parsed.verbatim == "451-first line\r\n550-5.7.1 second\r\n550 4.2.0 third"
    assert parsed.status is None and parsed.response_codes == ()


def test_a_given_smtp_code_wins_over_the_lines_code() -> None:
    assert parse_smtp_reply("535 5.7.8 bad", code=454).reply_code == 454
    assert parse_smtp_reply("535 5.7.8 bad").reply_code == 535


def test_a_bare_smtp_code_line_is_a_code_and_digits_in_words_are_not() -> None:
    bare = parse_smtp_reply("421")
    assert (bare.reply_code, bare.text) == (421, "")
    assert parse_smtp_reply("421\r\n").reply_code == 421, "a CRLF ends a line, it is not text"
    words = parse_smtp_reply("2024 was a year")
    assert (words.reply_code, words.text) == (None, "2024 was a year")
    glued = parse_smtp_reply("535text")
    assert (glued.reply_code, glued.text) == (None, "535text")


def test_smtp_blank_lines_are_skipped_and_text_is_trimmed() -> None:
    parsed = parse_smtp_reply("\n  \n535-5.7.8   spaced out  \n\n535 5.7.8 end\n")
    assert parsed.reply_code == 535
    assert parsed.text == "spaced out end"


def test_an_enhanced_status_needs_its_own_word_and_a_valid_class() -> None:
    assert parse_smtp_reply("550 5.1.1x unknown").enhanced is None
    assert parse_smtp_reply("550 3.1.1 odd").enhanced is None
    only = parse_smtp_reply("550 5.1.1")
    assert (only.enhanced, only.text) == ("5.1.1", "")
    assert (
        parse_smtp_reply("5.7.139 Authentication unsuccessful", code=535).text
        == "Authentication unsuccessful"
    )


# --- IMAP replies ---------------------------------------------------------------------------------


def test_imap_status_is_the_tagged_lines_and_untagged_lines_do_not_override_it() -> None:
    assert parse_imap_reply("* NO [ALERT] x\r\nA2 BAD nonsense").status == "BAD"
    assert parse_imap_reply("A1 NO failed\n* BYE closing").status == "NO"
    crlf = parse_imap_reply("A1 NO failed\r\n* BYE closing")
    assert (crlf.status, crlf.text, crlf.verbatim) == (
        "NO",
        "failed closing",
        "A1 NO failed\r\n* BYE closing",
    )
    assert parse_imap_reply("* BYE going").status == "BYE"
    assert parse_imap_reply("a1 no lower case").status == "NO"
    assert parse_imap_reply("just words").status is None


def test_imap_text_and_response_codes() -> None:
    parsed = parse_imap_reply("\n* OK [alert] hello\n\nA1 NO [AUTHENTICATIONFAILED] nope\nstray words")
    assert parsed.protocol == "imap"
    assert parsed.text == "[alert] hello [AUTHENTICATIONFAILED] nope stray words"
    assert parsed.response_codes == ("ALERT", "AUTHENTICATIONFAILED")
    assert parsed.reply_code is None and parsed.enhanced is None


# --- matching: each field of a rule ---------------------------------------------------------------


def test_each_field_a_rule_sets_must_agree() -> None:
    kb = KnowledgeBase(
        [
            rule("by-code", reply_code=535),
            rule("by-enhanced", enhanced="5.7.8"),
            rule("by-pattern", pattern="mailbox full"),
            rule("imap-status", "imap", status="BAD"),
            rule("imap-code", "imap", response_code="webalert"),
        ]
    )
    assert chosen(kb, "smtp", "535 x") == "by-code"
    assert chosen(kb, "smtp", "536 x") is None
    assert chosen(kb, "smtp", "550 5.7.8 x") == "by-enhanced"
    assert chosen(kb, "smtp", "550 5.7.9 x") is None
    assert chosen(kb, "smtp", "552 The MAILBOX FULL, sorry") == "by-pattern", "patterns ignore case"
    assert chosen(kb, "imap", "A1 BAD x") == "imap-status"
    assert chosen(kb, "imap", "A1 NO x") is None
    assert chosen(kb, "imap", "A1 NO [WEBALERT https://x] y") == "imap-code", "response codes ignore case"
    assert chosen(kb, "imap", "A1 NO mailbox full") is None, "an SMTP rule never explains an IMAP reply"


def test_reply_class_reads_the_code_or_the_enhanced_status() -> None:
    kb = KnowledgeBase([rule("temporary", reply_class=4)])
    assert chosen(kb, "smtp", "454 try later") == "temporary"
    assert chosen(kb, "smtp", "535 4.7.0 try later") == "temporary", "a 4.x.x status is temporary too"
    assert chosen(kb, "smtp", "4.7.0 try later") == "temporary"
    assert chosen(kb, "smtp", "535 5.7.8 no") is None
    assert chosen(kb, "smtp", "no codes at all") is None
    assert chosen(kb, "smtp", "554 5.4.0 no") is None, "5.4.0 is not of class 4"
    assert chosen(kb, "smtp", "503 bad sequence") is None
    assert chosen(kb, "smtp", "421 closing") == "temporary"


def test_a_provider_rule_needs_its_provider_among_the_candidates_unless_unambiguous() -> None:
    kb = KnowledgeBase(
        [
            rule("ours", pattern="login failed", providers=("acme",)),
            rule("theirs", pattern="unique words", providers=("acme",), unambiguous=True),
        ]
    )
    assert chosen(kb, "smtp", "535 login failed", "acme") == "ours"
    assert chosen(kb, "smtp", "535 login failed", "other", "acme") == "ours"
    assert chosen(kb, "smtp", "535 login failed") is None
    assert chosen(kb, "smtp", "535 login failed", "other") is None
    assert chosen(kb, "smtp", "535 unique words") == "theirs"
    assert chosen(kb, "smtp", "535 unique words", "other") == "theirs"


def test_providers_must_be_ids_not_one_string() -> None:
    kb = KnowledgeBase([rule("any")])
    with pytest.raises(TypeError, match=r"^providers is a sequence of preset ids, not one string$"):
        kb.match(parse_smtp_reply("535 x"), providers="acme")


# --- matching: the order of choice ----------------------------------------------------------------


def test_a_standard_class_decides_before_any_provider_or_text_rule() -> None:
    kb = KnowledgeBase(
        [
            rule("wrong-password", pattern="password", providers=("acme",), enhanced="4.7.0"),
            rule("temporary", standard=True, reply_class=4),
        ]
    )
    # The text rule is far more specific, but a 4yz reply is temporary whatever its words say.
    assert chosen(kb, "smtp", "454 4.7.0 password not accepted", "acme") == "temporary"
    assert chosen(kb, "smtp", "535 5.7.8 password not accepted", "acme") is None


def test_a_text_rule_refines_a_standard_one_only_by_naming_it() -> None:
    kb = KnowledgeBase(
        [
            rule("temporary", standard=True, reply_class=4),
            rule("tls-broken", pattern="TLS not available", refines="temporary"),
            rule("tls-generic", pattern="TLS"),
        ]
    )
    assert chosen(kb, "smtp", "454 4.7.0 TLS not available") == "tls-broken"
    assert chosen(kb, "smtp", "454 4.7.0 TLS is sad") == "temporary"
    assert chosen(kb, "smtp", "554 5.7.0 TLS is sad") == "tls-generic"
    # With no class decided, a refining rule is an ordinary text rule (here the first of equals).
    assert chosen(kb, "smtp", "554 5.7.0 TLS not available") == "tls-broken"


def test_of_two_standard_rules_the_more_specific_decides() -> None:
    kb = KnowledgeBase(
        [
            rule("imap-no", "imap", standard=True, status="NO"),
            rule("imap-unavailable", "imap", standard=True, status="NO", response_code="UNAVAILABLE"),
        ]
    )
    assert chosen(kb, "imap", "A1 NO [UNAVAILABLE] later") == "imap-unavailable"
    assert chosen(kb, "imap", "A1 NO other") == "imap-no"


def test_specificity_provider_beats_enhanced_beats_pattern_beats_code() -> None:
    kb = KnowledgeBase(
        [
            rule("code", reply_code=535),
            rule("pattern", pattern="denied"),
            rule("enhanced", enhanced="5.7.8"),
            rule("provider", providers=("acme",)),
        ]
    )
    assert chosen(kb, "smtp", "535 5.7.8 denied", "acme") == "provider"
    assert chosen(kb, "smtp", "535 5.7.8 denied") == "enhanced"
    assert chosen(kb, "smtp", "535 5.7.9 denied") == "pattern"
    assert chosen(kb, "smtp", "535 5.7.9 nope") == "code"


def test_specificity_weights() -> None:
    assert rule("a").specificity == 0
    assert rule("b", reply_code=535).specificity == 1
    assert rule("c", reply_class=5).specificity == 1
    assert rule("d", "imap", status="NO").specificity == 1
    assert rule("e", pattern="x").specificity == 2
    assert rule("f", "imap", response_code="ALERT").specificity == 2
    assert rule("g", enhanced="5.7.8").specificity == 4
    assert rule("h", providers=("acme",)).specificity == 16
    assert rule("i", providers=("acme",), enhanced="5.7.8", pattern="x", reply_code=535).specificity == 23


def test_of_equally_specific_rules_the_likelier_provider_wins_then_file_order() -> None:
    kb = KnowledgeBase(
        [
            rule("beta-rule", pattern="failed", providers=("beta",)),
            rule("alpha-rule", pattern="failed", providers=("alpha",)),
            rule("first", pattern="nope"),
            rule("second", pattern="nope"),
        ]
    )
    assert chosen(kb, "smtp", "535 failed", "alpha", "beta") == "alpha-rule"
    assert chosen(kb, "smtp", "535 failed", "beta", "alpha") == "beta-rule"
    assert chosen(kb, "smtp", "535 failed", "gamma", "alpha", "beta") == "alpha-rule"
    assert chosen(kb, "smtp", "535 nope") == "first"


def test_a_rule_for_several_providers_ranks_by_its_likeliest_one() -> None:
    kb = KnowledgeBase(
        [
            rule("for-b", pattern="x", providers=("b",)),
            rule("for-c-or-a", pattern="x", providers=("c", "a")),
        ]
    )
    assert chosen(kb, "smtp", "535 x", "a", "b", "c") == "for-c-or-a"
    assert chosen(kb, "smtp", "535 x", "b", "a") == "for-b"


def test_an_unambiguous_rule_outside_the_candidates_ranks_after_the_candidates_rules() -> None:
    kb = KnowledgeBase(
        [
            rule("elsewhere", pattern="x", providers=("other",), unambiguous=True),
            rule("here", pattern="x", providers=("acme",)),
        ]
    )
    assert chosen(kb, "smtp", "535 x", "acme") == "here"
    assert chosen(kb, "smtp", "535 x") == "elsewhere"


def test_the_match_carries_the_parsed_reply() -> None:
    kb = KnowledgeBase([rule("any", reply_code=535)])
    match = match_reply("smtp", "denied", reply_code=535, knowledge=kb)
    assert match is not None
    assert match.reply == ParsedReply("smtp", "denied", "denied", 535, None)
    imap = match_reply("imap", "A1 NO x", knowledge=KnowledgeBase([rule("n", "imap", status="NO")]))
    assert imap is not None and imap.reply.status == "NO" and imap.reply.protocol == "imap"


def test_the_bundled_base_reads_the_class_before_the_provider() -> None:
    # Google's words for a wrong password, sent as a temporary reply: "try again later" decides.
    match = match_reply(
        "smtp", "454 4.7.0 Username and Password not accepted", providers=["google-workspace"]
    )
    assert match is not None and match.rule.code == "smtp.reply.temporary"
    assert match_reply("smtp", "250 2.0.0 nothing known here") is None
    assert match_reply("smtp", "454 4.7.0 x", knowledge=load_knowledge()) == match_reply(
        "smtp", "454 4.7.0 x"
    )


# --- the rule file's checks ---------------------------------------------------------------------


def test_a_rules_own_contradictions_are_refused() -> None:
    with pytest.raises(ValueError, match="unambiguous names whose words"):
        rule("x", unambiguous=True)
    for field in ({"providers": ("acme",)}, {"pattern": "x"}, {"refines": "y"}):
        with pytest.raises(ValueError, match="a standard rule keys on standard codes only"):
            rule("x", standard=True, **field)
    with pytest.raises(ValueError, match="reply_class is an SMTP field"):
        rule("x", "imap", reply_class=4)
    with pytest.raises(ValueError, match="the pattern does not compile: missing \\)"):
        rule("x", pattern="(unclosed")
    assert rule("x", unambiguous=True, providers=("acme",)).unambiguous is True
    assert rule("x", standard=True, reply_class=4).standard is True


def test_a_knowledge_base_refuses_duplicate_ids_and_refinements_of_non_standard_rules() -> None:
    with pytest.raises(KnowledgeError, match="two knowledge rules have the id 'x'"):
        KnowledgeBase([rule("x"), rule("y"), rule("x", pattern="other")])
    with pytest.raises(KnowledgeError, match="rule 'b' refines 'a', which is no standard rule"):
        KnowledgeBase([rule("a"), rule("b", refines="a")])
    kb = KnowledgeBase([rule("a", standard=True, reply_class=4), rule("b", refines="a")])
    assert len(kb) == 2
    assert [r.id for r in kb.rules] == ["a", "b"]


_GOOD = (
    'id = "{id}"\nprotocol = "smtp"\ncode = "smtp.a.b"\n'
    + 'message = "M."\nfix = "F."\nsource = "s"\nexample = "e"\n'
)


def test_load_rules_reads_every_rule_in_order_and_names_a_bad_one_by_position() -> None:
    text = "[[rule]]\n" + _GOOD.format(id="one") + "[[rule]]\n" + _GOOD.format(id="two")
    rules = load_rules(text, source="t.toml")
    assert [r.id for r in rules] == ["one", "two"]
    assert rules[0].severity is Severity.FAIL
    assert load_rules("", source="empty.toml") == []
    bad = text + '[[rule]]\nid = "three"\nprotocol = "pop3"\n'
    with pytest.raises(KnowledgeError) as caught:
        load_rules(bad, source="t.toml")
    message = str(caught.value)
    assert message.startswith("t.toml: rule 3 is invalid: ")
    assert "protocol: " in message
    assert "; code: Field required; message: Field required; fix: Field required; " in message
    assert caught.value.__cause__ is None
    nested = "[[rule]]\n" + _GOOD.format(id="four") + 'providers = ["a", 3]\n'
    with pytest.raises(KnowledgeError, match=r"rule 1 is invalid: providers\.1: "):
        load_rules(nested, source="t.toml")
    broken = "[[rule]]\n" + _GOOD.format(id="five") + 'pattern = "(x"\n'
    with pytest.raises(KnowledgeError, match=r"^p\.toml: rule 1 is invalid: pattern: .*the pattern does not"):
        load_rules(broken, source="p.toml")
    with pytest.raises(KnowledgeError, match=r"^bad\.toml: not valid TOML: "):
        load_rules("[[rule", source="bad.toml")


def test_the_bundled_base_is_loaded_once_from_the_packages_toml_files() -> None:
    assert load_knowledge() is load_knowledge()
    names = [f.name for f in __import__("inboxcheck._packaged", fromlist=["x"]).packaged_files("knowledge")]
    assert names == sorted(names) and names and all(n.endswith(".toml") for n in names)


def test_an_empty_knowledge_folder_is_an_error_not_an_empty_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_knowledge, "packaged_files", lambda folder: [])
    with pytest.raises(KnowledgeError, match="the knowledge base is empty"):
        load_knowledge.__wrapped__()


# --- the alert text -------------------------------------------------------------------------------


def test_alert_text_joins_the_alerts_and_drops_empty_ones() -> None:
    assert alert_text("* OK [ALERT]   \r\nA1 NO [alert]  two  ") == "two"
    assert alert_text("* OK [ALERT] one\r\nA1 NO [ALERT] two") == "one two"
    assert alert_text("* OK [ALERT]") is None
    assert alert_text("A1 NO [WEBALERT x] no") is None


def test_alert_text_escapes_what_a_terminal_would_obey() -> None:
    assert alert_text("NO [ALERT] a\x1bb\x7fc\x85d\xade") == "a\\x1bb\\x7fc\\x85d\\xade"
    assert alert_text("NO [ALERT] line\u2028sep\u0378x") == "line\\u2028sep\\u0378x"
    assert alert_text("NO [ALERT] caf\xe9 \u00fcber") == "caf\xe9 \u00fcber"


def test_alert_text_is_cut_at_its_limit() -> None:
    assert MAX_ALERT == 500
    assert alert_text("NO [ALERT] " + "x" * 600) == "x" * 500
    assert alert_text("NO [ALERT] " + "y" * 500) == "y" * 500
