"""The scrubber the SMTP and IMAP checks pass every server text through."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import SecretStr
from pydantic_core import PydanticSerializationError, to_json

from inboxcheck._credential import Credential
from inboxcheck._secrets import MASK, REDACTED, Scrubber, is_secret_name, masked


def secret_forms(username: str, password: str) -> Scrubber:
    return Scrubber(credentials=[Credential(username, SecretStr(password))])


def test_every_wire_form_is_removed() -> None:
    scrub = secret_forms("sam@x.test", 'pa"ss\\word')
    plain = base64.b64encode(b'\0sam@x.test\0pa"ss\\word').decode()
    login = base64.b64encode(b'pa"ss\\word').decode()
    text = f'535 you sent AUTH PLAIN {plain}, then {login}, LOGIN "sam@x.test" "pa\\"ss\\\\word"'
    cleaned = scrub(text)
    for form in ('pa"ss\\word', 'pa\\"ss\\\\word', plain, login):
        assert form not in cleaned
    assert cleaned.count(REDACTED) == 3


def test_a_short_password_is_removed_only_where_it_stands_alone() -> None:
    scrub = secret_forms("u", "pass")
    assert (
        scrub("535 5.7.8 Password incorrect, bypass denied") == "535 5.7.8 Password incorrect, bypass denied"
    )
    assert scrub("you sent pass as the password") == f"you sent {REDACTED} as the password"


@settings(max_examples=200, deadline=None)
@given(password=st.text(min_size=1, max_size=40), noise=st.text(max_size=40))
def test_no_password_survives_in_a_text_around_it(password: str, noise: str) -> None:
    scrub = secret_forms("user@x.test", password)
    if len(password) >= 6:
        assert password not in scrub(noise + password + noise).replace(REDACTED, "\0")


def test_a_one_letter_password_goes_only_as_a_whole_token() -> None:
    scrub = secret_forms("u", "a")
    kept = "535 5.7.8 Authentication failed: bad user name or password"
    assert scrub(kept) == kept
    assert scrub("you sent a") == f"you sent {REDACTED}"
    assert scrub('LOGIN "u" "a"') == f'LOGIN "u" "{REDACTED}"'
    assert scrub("got 'a', wanted more") == f"got '{REDACTED}', wanted more"
    assert scrub("_a a1 \u00e9a") == "_a a1 \u00e9a"


def test_a_common_word_password_leaves_other_words_alone() -> None:
    scrub = secret_forms("u", "pass")
    kept = "Password incorrect; bypass denied; passed=0; PASS"
    assert scrub(kept) == kept
    assert scrub("pass=pass") == f"{REDACTED}={REDACTED}"


def test_one_scrubber_covers_wire_json_and_percent_forms() -> None:
    password = 'p\u00e4ss "w/rd+'
    scrub = secret_forms("sam@x.test", password)
    wire = Credential("sam@x.test", SecretStr(password))
    echoed = json.dumps({"note": f"sent {wire.sasl_plain()} and {password}"})
    for text in (echoed, quote(password, safe=""), quote_plus(wire.sasl_plain(), safe="")):
        assert scrub(text).count(REDACTED) >= 1
        for form in (password, json.dumps(password)[1:-1], wire.sasl_plain()):
            assert form not in scrub(text)


def test_the_walker_keeps_identifiers_and_scrubs_foreign_keys() -> None:
    scrub = secret_forms("u", "name")
    ours = {"name": "smtp.login", "code": "name", "summary": "sent name", "evidence": {"name": "x"}}
    assert scrub.json(ours, identifiers={"name", "code"}) == {
        "name": "smtp.login",
        "code": "name",
        "summary": f"sent {REDACTED}",
        "evidence": {"name": "x"},
    }
    foreign = {"name": "x", "password": 1, "detail": ["sent name"]}
    assert scrub.json(foreign) == {REDACTED: "x", "password": REDACTED, "detail": [f"sent {REDACTED}"]}


def test_the_mask_hides_every_secret_named_value() -> None:
    payload = {"smtp_username": "u", "smtp_password": "p", "imap_password": "q", "daily_limit": 5}
    assert masked(payload) == {
        "smtp_username": "u",
        "smtp_password": MASK,
        "imap_password": MASK,
        "daily_limit": 5,
    }


def test_a_credential_shows_no_secret() -> None:
    credential = Credential("sam", SecretStr("hunter22"))
    assert "hunter22" not in repr(credential) + str(credential)
    assert base64.b64decode(credential.sasl_plain()) == b"\0sam\0hunter22"
    assert not Credential("sam\0x", SecretStr("p")).sendable()


@settings(max_examples=300, deadline=None)
@given(password=st.text(min_size=1, max_size=12), noise=st.text(max_size=20), wire=st.booleans())
def test_a_json_text_without_any_form_proves_the_walk_would_change_nothing(
    password: str, noise: str, wire: bool
) -> None:
    # The runner skips its walk over a result when the result's JSON text holds no form: sound only
    # if every string the walk would change shows a form in that text, however JSON escapes it.
    scrub = secret_forms("sam@x.test", password)
    form = scrub.forms[0] if wire else password
    for text in (noise, noise + form, form + noise, f"{noise}{form}{noise}"):
        try:
            document = to_json({"evidence": {"reply": text}, "list": [text]}).decode()
        except PydanticSerializationError:
            continue  # a lone surrogate: the runner walks such a result
        if scrub(text) != text:
            assert scrub.could_be_in_json(document)


def test_a_json_text_of_ordinary_words_holds_no_form() -> None:
    scrub = secret_forms("sam@x.test", 'pa"ss\\word-long')
    assert not scrub.could_be_in_json('{"reply":"235 2.7.0 Authentication successful","n":3}')
    assert scrub.could_be_in_json(to_json({"reply": 'echo pa"ss\\word-long'}).decode())


def test_a_logged_exception_carrying_a_secret_is_scrubbed_by_a_real_handler() -> None:
    # The formatter renders the traceback after the handler's filters ran: the filter must render
    # and scrub it itself, or logger.exception() prints the secret.
    import io
    import logging

    scrub = secret_forms("sam@x.test", "hunter2-long-secret")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(scrub.logging_filter())
    logger = logging.getLogger("inboxcheck.tests.leak")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError("server said: hunter2-long-secret")
        except RuntimeError:
            logger.exception("login failed for %s", "sam@x.test")
        logger.error("stack", stack_info=True, extra={"x": 1})
    finally:
        logger.removeHandler(handler)
    shown = stream.getvalue()
    assert "RuntimeError" in shown and "login failed for sam@x.test" in shown
    assert "hunter2-long-secret" not in shown
    assert REDACTED in shown


def test_two_different_passwords_are_both_removed() -> None:
    scrub = Scrubber(
        credentials=[
            Credential("sam@x.test", SecretStr("smtp-secret-one")),
            Credential("sam@x.test", SecretStr("imap-secret-two")),
        ]
    )
    cleaned = scrub("smtp-secret-one then imap-secret-two")
    assert cleaned == f"{REDACTED} then {REDACTED}"
    smtp_plain = Credential("sam@x.test", SecretStr("smtp-secret-one")).sasl_plain()
    assert scrub(f"echo {smtp_plain}") == f"echo {REDACTED}"


def test_a_long_secret_goes_even_inside_a_word_and_a_short_one_does_not() -> None:
    assert secret_forms("u", "abcdef")("xxabcdefyy") == f"xx{REDACTED}yy"
    assert secret_forms("u", "abcde")("xxabcdeyy") == "xxabcdeyy"


def test_a_utf8_json_echo_of_a_password_with_a_tab_and_a_non_ascii_letter_is_removed() -> None:
    password = "p\u00e4ss\tw\u00f6rd"
    scrub = secret_forms("sam@x.test", password)
    echo = json.dumps({"echo": password}, ensure_ascii=False)
    assert "p\u00e4ss" not in scrub(echo)
    assert REDACTED in scrub(echo)


def test_the_walker_reaches_nested_keys_keys_in_lists_and_values_that_are_not_json() -> None:
    scrub = secret_forms("u", "secret-value-9")
    foreign = {
        "outer": {"inner": {"api_key": "anything", "note": "it was secret-value-9"}},
        "list": [{"token": "t"}, "secret-value-9", 5, None, True],
        "odd": {"set": b"secret-value-9"},
    }
    assert scrub.json(foreign) == {
        "outer": {"inner": {"api_key": REDACTED, "note": f"it was {REDACTED}"}},
        "list": [{"token": REDACTED}, REDACTED, 5, None, True],
        "odd": {"set": f"b'{REDACTED}'"},
    }
    assert masked({"nested": {"imap_password": "p", "keep": 1}, "Authorization": "Bearer x"}) == {
        "nested": {"imap_password": MASK, "keep": 1},
        "Authorization": MASK,
    }


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("smtp_password", True),
        ("pass", True),
        ("client_secret", True),
        ("apiKey", True),
        ("api-key", True),
        ("API_KEY", True),
        ("refresh_token", True),
        ("Authorization", True),
        ("smtp_username", False),
        ("email_address", False),
        ("daily_limit", False),
        ("apikeeper", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret
