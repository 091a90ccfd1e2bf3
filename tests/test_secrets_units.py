"""The scrubber's parts, exactly: each encoding of a secret, plain secrets beside credentials, the
account and request constructors, bytes, the JSON pre-check, the walker's two modes and the logging
filter on a record. Fast enough for mutation testing (scripts/mutation.sh inboxcheck/_secrets.py)."""

from __future__ import annotations

import base64
import logging
import sys
from urllib.parse import quote_plus

from pydantic import SecretStr
from pydantic_core import to_json

from inboxcheck._credential import Credential
from inboxcheck._models import Account
from inboxcheck._secrets import MASK, REDACTED, SUBSTRING_MIN, Scrubber, masked
from inboxcheck.platform.key import ApiKey
from tests.helpers import custom_payload


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


def test_each_encoding_of_a_secret_is_a_form_exactly() -> None:
    password = 'a b/\u00e4"xyz'
    forms = set(Scrubber([password]).forms)
    assert {
        password,
        'a b/\\u00e4\\"xyz',  # JSON, ASCII-escaped
        'a b/\u00e4\\"xyz',  # JSON as UTF-8
        "a%20b%2F%C3%A4%22xyz",  # percent-encoded, "/" too
        "a+b%2F%C3%A4%22xyz",  # form-encoded, "/" too
    } <= forms
    # A tab is where the UTF-8 JSON form differs from every other form (IMAP quoting keeps it as is).
    assert "p\u00e4ss\\tw\u00f6rd" in Scrubber(["p\u00e4ss\tw\u00f6rd"]).forms


def test_a_lone_surrogate_in_a_secret_is_percent_encoded_not_an_error() -> None:
    scrub = Scrubber(["abc\ud800defg"])
    assert "abc%ED%A0%80defg" in scrub.forms
    assert scrub("echo abc%ED%A0%80defg") == f"echo {REDACTED}"
    assert scrub.could_be_in_json('{"reply":"nothing"}') is False


def test_plain_secrets_are_removed_in_their_wire_forms_too() -> None:
    scrub = Scrubber(["first-secret", "second-secret"])
    assert scrub("first-secret and second-secret") == f"{REDACTED} and {REDACTED}"
    # AUTH LOGIN sends the secret alone in base64; SASL PLAIN with empty identities.
    assert scrub(f"got {b64('first-secret')}") == f"got {REDACTED}"
    assert scrub(f"got {b64(chr(0) + chr(0) + 'second-secret')}") == f"got {REDACTED}"
    assert b64("\0XXXX\0first-secret") not in scrub.forms


def test_the_account_scrubber_covers_both_passwords() -> None:
    account = Account.model_validate(
        custom_payload(smtp_password="smtp-pass-one", imap_password="imap-pass-two")
    )
    scrub = Scrubber.for_account(account)
    assert scrub("smtp-pass-one imap-pass-two") == f"{REDACTED} {REDACTED}"
    plain = account.smtp_credential.sasl_plain()
    assert scrub(plain) == REDACTED


def test_the_request_scrubber_covers_the_key_and_the_secret_named_strings_only() -> None:
    key = "cs_test_" + "k" * 24
    scrub = Scrubber.for_request(
        ApiKey.parse(key),
        {"smtp_password": "pw-first-long", "smtp_username": "sam@example.test", "api_token": 123456},
        {"imap_password": "pw-second-long"},
    )
    assert scrub(f"{key} pw-first-long pw-second-long") == f"{REDACTED} {REDACTED} {REDACTED}"
    assert scrub("sam@example.test 123456") == "sam@example.test 123456"


def test_bytes_are_scrubbed_and_undecodable_bytes_kept() -> None:
    scrub = Scrubber(["hunter2-long"])
    data = b"x hunter2-long \xff\xfe"
    assert scrub.bytes(data) == b"x " + REDACTED.encode() + b" \xff\xfe"
    clean = b"nothing here \xff"
    assert scrub.bytes(clean) is clean
    assert scrub.bytes("h\u00e9 hunter2-long".encode()) == "h\u00e9 ".encode() + REDACTED.encode()


def test_the_json_precheck_finds_every_escaped_form_and_only_those() -> None:
    scrub = Scrubber(['p\u00e4"ss-word'])
    document = to_json({"reply": 'echo p\u00e4"ss-word'}).decode()
    assert scrub.could_be_in_json(document) is True
    assert scrub.could_be_in_json(document) is True, "the needles are kept between calls"
    assert scrub.could_be_in_json('{"reply":"p\u00e4ss-word"}') is False
    base64_only = to_json({"reply": b64('p\u00e4"ss-word')}).decode()
    assert scrub.could_be_in_json(base64_only) is True
    assert Scrubber().could_be_in_json(document) is False
    # The end of a form is no form; its start, of 6 characters or more, is (a reply cut short).
    assert scrub.could_be_in_json(to_json({"reply": '\u00e4"ss-word'}).decode()) is False
    assert scrub.could_be_in_json(to_json({"reply": 'p\u00e4"ss-wor'}).decode()) is True


def test_the_walker_on_our_own_json_scrubs_values_only() -> None:
    scrub = Scrubber(["secret-value"])
    ours = {"secret-value": "secret-value", "password": "secret-value", "list": ("secret-value", 1)}
    assert scrub.json(ours, identifiers=()) == {
        "secret-value": REDACTED,
        "password": REDACTED,
        "list": [REDACTED, 1],
    }
    assert scrub.json({"code": "secret-value"}, identifiers={"code"}) == {"code": "secret-value"}
    assert scrub.json({"x": {"code": "secret-value"}}, identifiers={"code"}) == {
        "x": {"code": "secret-value"}
    }


def test_the_walker_on_foreign_json_scrubs_keys_and_drops_secret_named_values() -> None:
    scrub = Scrubber(["secret-value"])
    foreign = {"secret-value": "x", "my_password": {"deep": 1}, "n": 1.5, "ok": False, "none": None}
    assert scrub.json(foreign) == {
        REDACTED: "x",
        "my_password": REDACTED,
        "n": 1.5,
        "ok": False,
        "none": None,
    }
    assert scrub.json({3: "secret-value"}) == {"3": REDACTED}
    nested = {"a": {"secret-value": 1}, "l": [{"secret-value": 2}]}
    assert scrub.json(nested) == {"a": {REDACTED: 1}, "l": [{REDACTED: 2}]}


def test_the_mask_keeps_every_other_value_as_it_is() -> None:
    payload = {"password": 5, "list": ["a", {"token": "t"}], "n": None, "obj": b"raw", "x": 1.5}
    assert masked(payload) == {
        "password": MASK,
        "list": ["a", {"token": MASK}],
        "n": None,
        "obj": "b'raw'",
        "x": 1.5,
    }


def test_the_filter_leaves_a_clean_record_as_it_was() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "user %s", ("sam",), None)
    assert Scrubber(["hunter2-long"]).logging_filter().filter(record) is True
    assert (record.msg, record.args, record.exc_text, record.stack_info) == ("user %s", ("sam",), None, None)


def test_the_filter_scrubs_the_message_the_traceback_text_and_the_stack() -> None:
    scrub_filter = Scrubber(["hunter2-long"]).logging_filter()
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "sent %s", ("hunter2-long",), None)
    record.exc_text = "Traceback: hunter2-long"
    record.stack_info = "Stack: hunter2-long"
    assert scrub_filter.filter(record) is True
    assert (record.msg, record.args) == (f"sent {REDACTED}", None)
    assert record.getMessage() == f"sent {REDACTED}"
    assert record.exc_text == f"Traceback: {REDACTED}"
    assert record.stack_info == f"Stack: {REDACTED}"


def test_the_filter_renders_an_exception_itself_and_scrubs_it() -> None:
    try:
        raise ValueError("hunter2-long")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", None, exc_info)
    assert Scrubber(["hunter2-long"]).logging_filter().filter(record) is True
    assert record.exc_text is not None
    assert record.exc_text.startswith("Traceback (most recent call last):")
    assert record.exc_text.endswith(f"ValueError: {REDACTED}")
    assert record.msg == "failed"


# --- issue 24, second round: the survivors of the extended scrubber ---------------------------------


def test_every_plain_secret_keeps_its_encoded_forms_not_only_the_last() -> None:
    first, second = 'first "secret" one', "second-secret-two"
    scrub = Scrubber([first, second])
    echo = to_json({"password": first}).decode()
    assert first not in scrub(echo) and "secret\\" not in scrub(echo)
    assert scrub(f"sent {quote_plus(first)} ok") == f"sent {REDACTED} ok"


def test_every_credential_keeps_its_encoded_forms_not_only_the_last() -> None:
    first, second = 'smtp "pass" one', "imap-pass-two"
    scrub = Scrubber(
        ["api-key-123456"],
        credentials=[Credential("sam@x.test", SecretStr(first)), Credential("sam@x.test", SecretStr(second))],
    )
    assert scrub(f"body {to_json(first).decode()} end") == f'body "{REDACTED}" end'
    assert scrub(f"body {quote_plus(first)} end") == f"body {REDACTED} end"
    assert scrub(f"url {quote_plus('api-key-123456')}") == f"url {REDACTED}"


def test_a_plain_secrets_auth_plain_forms_use_an_empty_username() -> None:
    secret = "Cut-Canary-Pa55word!x"
    scrub = Scrubber([secret])
    whole = b64(f"\0\0{secret}")
    assert scrub(f"echo {quote_plus(whole)} end") == f"echo {REDACTED} end"  # the encoded form
    cut = b64(f"\0\0{secret[:9]}")  # a truncated echo, re-encoded
    assert scrub(f"echo {cut} end") == f"echo {REDACTED} end"


def test_a_lone_surrogate_in_a_secret_with_a_space_is_form_encoded_not_an_error() -> None:
    secret = "pa ss\udc80word"
    forms = set(Scrubber([secret]).forms)
    assert "pa+ss%ED%B2%80word" in forms
    assert "pa%20ss%ED%B2%80word" in forms


def test_a_scrubber_without_long_forms_leaves_non_ascii_text_alone() -> None:
    assert Scrubber()("naïve text") == "naïve text"
    short = Scrubber(credentials=[Credential("sam@x.test", SecretStr("pass"))])
    assert short("naïve pass and compass") == f"naïve {REDACTED} and compass"


def test_an_echo_holding_every_form_of_a_six_character_password_keeps_none() -> None:
    scrub = Scrubber(credentials=[Credential("sam@x.test", SecretStr("Kx7-q!"))])
    text = " ".join(scrub.forms)
    cleaned = scrub(text)
    assert [form for form in scrub.forms if form.lower() in cleaned.lower()] == []


def test_a_case_folding_lookalike_in_an_echo_is_data_not_a_crash() -> None:
    # U+017F LATIN SMALL LETTER LONG S matches "s" under re.IGNORECASE but lower-cases to itself.
    scrub = Scrubber(credentials=[Credential("sam@x.test", SecretStr("Passwords-x1"))])
    assert scrub("sent Paſſwords-x1") == f"sent {REDACTED}"


def test_a_word_like_the_password_does_not_stop_the_scrub_of_what_follows() -> None:
    scrub = Scrubber(credentials=[Credential("sam@x.test", SecretStr("Password-7x!q"))])
    assert scrub("Username and Password not accepted: Password-7x!q") == (
        f"Username and Password not accepted: {REDACTED}"
    )


def test_a_secret_starting_one_character_into_a_word_like_another_is_found() -> None:
    scrub = Scrubber(["Passwordly1", "asswordly"])
    assert scrub("Passwordly not") == f"P{REDACTED} not"


def test_an_excerpt_keeps_a_whole_marker_at_its_end_and_a_bracket_of_the_text() -> None:
    scrub = Scrubber(["hunter2-long-secret"])
    text = "key hunter2-long-secret and more"
    assert scrub.excerpt(text, len(f"key {REDACTED}")) == f"key {REDACTED}"
    assert scrub.excerpt("see [ref] here", 5) == "see ["


def test_the_json_precheck_is_exact_for_short_forms_and_prefixes_and_folds_case() -> None:
    short = Scrubber(credentials=[Credential("sam@x.test", SecretStr("pass"))])
    assert short.could_be_in_json('{"a":"pasta"}') is False
    assert short.could_be_in_json('{"a":"pass"}') is True
    long = Scrubber(credentials=[Credential("sam@x.test", SecretStr("Cut-Canary-Pa55word!x"))])
    assert long.could_be_in_json('{"a":"Cut-C is here"}') is False
    assert long.could_be_in_json('{"a":"Cut-Ca is here"}') is True
    assert long.could_be_in_json('{"a":"CUT-CANARY-PA55WORD!X"}') is True


def test_an_auth_plain_prefix_with_fewer_than_six_password_characters_stays() -> None:
    # It holds the username (no secret) and at most 5 characters of the password.
    password = "Cut-Canary-Pa55word!x"
    scrub = Scrubber(credentials=[Credential("sam@peer.test", SecretStr(password))])
    for keep in range(SUBSTRING_MIN):
        cut = b64(f"\0sam@peer.test\0{password[:keep]}")
        assert scrub(f"echo {cut}") == f"echo {cut}", keep
    assert scrub(f"echo {b64(f'{chr(0)}sam@peer.test{chr(0)}{password[:6]}')}") == f"echo {REDACTED}"


def test_a_six_character_password_cut_at_its_base64_padding_is_removed() -> None:
    password = "Kx7-q!"
    scrub = Scrubber(credentials=[Credential("sam@xy.test", SecretStr(password))])
    sent = b64(f"\0sam@xy.test\0{password}")
    assert sent.endswith("=")
    assert scrub(f"echo {sent.rstrip('=')}") == f"echo {REDACTED}"


def test_with_secrets_adds_secrets_and_credentials_and_keeps_the_public_lead() -> None:
    key = ApiKey.parse("cs_test_CUTkeyZ9x8w7v6u5t4s3QWERTY")
    scrub = Scrubber.for_request(key).with_secrets(
        "payload-secret-1", credentials=[Credential("sam@x.test", SecretStr("smtp-pass-22"))]
    )
    plain = b64("\0sam@x.test\0smtp-pass-22")
    text = f"{key.reveal()} payload-secret-1 smtp-pass-22 {plain}"
    assert scrub(text) == " ".join([REDACTED] * 4)
    assert scrub("a cs_test_ key") == "a cs_test_ key"
    assert scrub("cut at cs_test_CUTkey") == f"cut at {REDACTED}"


def test_a_short_form_that_begins_another_does_not_cut_it_short() -> None:
    # Two short passwords, one the start of the other: the longer is removed whole, not "-9" left.
    scrub = Scrubber(
        credentials=[Credential("sam@x.test", SecretStr("pin")), Credential("sam@x.test", SecretStr("pin-9"))]
    )
    assert scrub("sent pin-9, then pin") == f"sent {REDACTED}, then {REDACTED}"


def test_a_scrubber_compiles_its_patterns_only_for_a_text_holding_a_form() -> None:
    # One scrubber per account in a batch: compiling its alternation of anchors up front cost about
    # 1 ms an account, and most never meet a form. The patterns come when a text holds one, and then
    # scrub as ever.
    scrub = Scrubber(
        credentials=[
            Credential("sam@x.test", SecretStr("Kx7-q!long-secret")),
            Credential("a", SecretStr("pin")),
        ]
    )
    assert scrub("250 2.0.0 Ok: queued as 4F2A1") == "250 2.0.0 Ok: queued as 4F2A1"
    assert scrub("* OK [CAPABILITY IMAP4rev1] ready") == "* OK [CAPABILITY IMAP4rev1] ready"
    assert (scrub._long, scrub._short) == (None, None)
    assert scrub("echo KX7-Q!LONG-SECRET and pin") == f"echo {REDACTED} and {REDACTED}"
    assert scrub._long is not None and scrub._short is not None
