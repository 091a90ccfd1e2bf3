"""The scrubber the SMTP and IMAP checks pass every server text through."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from inboxcheck._secrets import REDACTED, Scrubber, secret_forms


def test_every_wire_form_is_removed() -> None:
    scrub = Scrubber(secret_forms("sam@x.test", 'pa"ss\\word'))
    plain = base64.b64encode(b'\0sam@x.test\0pa"ss\\word').decode()
    login = base64.b64encode(b'pa"ss\\word').decode()
    text = f'535 you sent AUTH PLAIN {plain}, then {login}, LOGIN "sam@x.test" "pa\\"ss\\\\word"'
    cleaned = scrub(text)
    for form in ('pa"ss\\word', 'pa\\"ss\\\\word', plain, login):
        assert form not in cleaned
    assert cleaned.count(REDACTED) == 3


def test_a_short_password_is_removed_only_where_it_stands_alone() -> None:
    scrub = Scrubber(secret_forms("u", "pass"))
    assert (
        scrub("535 5.7.8 Password incorrect, bypass denied") == "535 5.7.8 Password incorrect, bypass denied"
    )
    assert scrub("you sent pass as the password") == f"you sent {REDACTED} as the password"


@settings(max_examples=200, deadline=None)
@given(password=st.text(min_size=1, max_size=40), noise=st.text(max_size=40))
def test_no_password_survives_in_a_text_around_it(password: str, noise: str) -> None:
    scrub = Scrubber(secret_forms("user@x.test", password))
    if len(password) >= 6:
        assert password not in scrub(noise + password + noise).replace(REDACTED, "\0")
