"""Scrub before you cut: no fragment of 6 or more characters of any secret reaches the output, when
the platform's text is shortened (a Location header, a 422 message, a 400 body excerpt), when a server
echoes a secret changed (upper-cased) or cut short (a truncated AUTH PLAIN base64)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from inboxcheck._credential import Credential
from inboxcheck._secrets import REDACTED, SUBSTRING_MIN, Scrubber
from inboxcheck.platform.client import PlatformClient
from inboxcheck.platform.key import ApiKey
from inboxcheck.platform.replies import MESSAGE_MAX
from lab.api_double import ApiDouble, Respond

KEY = "cs_test_CUTkeyZ9x8w7v6u5t4s3QWERTY"  # 28 characters after cs_test_
PASSWORD = "Cut-Canary-Pa55word!x"  # 21 characters
USER = "sam@peer.test"
FIXED_NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def fragments(secret: str, size: int = SUBSTRING_MIN) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


def leaked(texts: list[str], secret: str) -> list[str]:
    """Every 6-character fragment of ``secret`` (in any case) found in ``texts``."""
    folded = [text.lower() for text in texts]
    return sorted(f for f in fragments(secret) if any(f.lower() in text for text in folded))


# --- the scrubber -----------------------------------------------------------------------------------


def scrubber() -> Scrubber:
    return Scrubber(credentials=[Credential(USER, SecretStr(PASSWORD))])


def test_an_upper_cased_echo_is_removed() -> None:
    text = f"535 5.7.8 AUTH FAILED FOR {USER.upper()} WITH {PASSWORD.upper()}"
    assert leaked([scrubber()(text)], PASSWORD) == []


@pytest.mark.parametrize("lead", ["", f"\0{USER}\0", f"{USER}\0{USER}\0"])
@pytest.mark.parametrize("keep", range(SUBSTRING_MIN, len(PASSWORD)))
def test_a_truncated_auth_string_echo_is_removed(lead: str, keep: int) -> None:
    """The server cut the AUTH string short: as text (a prefix of the base64) and re-encoded (the
    base64 of a prefix, padded); either decodes to the password's first ``keep`` characters."""
    whole = base64.b64encode((lead + PASSWORD).encode()).decode()
    reencoded = base64.b64encode((lead + PASSWORD[:keep]).encode()).decode()
    cut = whole[: len(reencoded.rstrip("="))]
    for echo in (cut, reencoded):
        cleaned = scrubber()(f"501 5.5.2 bad AUTH PLAIN {echo} here")
        assert REDACTED in cleaned
        rest = cleaned.split(" bad AUTH PLAIN ", 1)[1].removesuffix(" here").replace(REDACTED, "")
        assert len(rest.rstrip("=")) <= 2, (echo, cleaned)  # at most the bits of one character left


def test_a_prefix_of_the_password_at_a_cut_edge_is_removed() -> None:
    for keep in range(SUBSTRING_MIN, len(PASSWORD)):
        cleaned = scrubber()(f"you sent {PASSWORD[:keep]}")
        assert leaked([cleaned], PASSWORD) == [], cleaned


@pytest.mark.parametrize("at", range(0, 40))
def test_excerpt_scrubs_the_whole_text_before_it_cuts(at: int) -> None:
    limit = 40
    text = "x" * at + PASSWORD + " and more text after it"
    cleaned = scrubber().excerpt(text, limit)
    assert len(cleaned) <= limit
    assert leaked([cleaned], PASSWORD) == [], cleaned
    assert not cleaned.endswith(("[", "[r", "[redacted"))  # no half marker left looking like text


# --- the platform client ------------------------------------------------------------------------


@pytest.fixture
async def api() -> AsyncIterator[ApiDouble]:
    async with ApiDouble(keys={KEY}) as double:
        yield double


async def _nothing(seconds: float) -> None:
    return None


def _payload() -> dict[str, Any]:
    return {
        "email_address": USER,
        "display_name": "Sam Peer",
        "inbox_type": "CUSTOM_SMTP",
        "smtp_host": "smtp.peer.test",
        "smtp_port": 587,
        "smtp_username": USER,
        "smtp_password": PASSWORD,
        "smtp_use_tls": True,
        "imap_host": "imap.peer.test",
        "imap_port": 993,
        "imap_username": USER,
        "imap_password": PASSWORD,
        "imap_use_ssl": True,
    }


def _straddling(secret: str, limit: int, inside: int) -> str:
    """Text in which ``secret`` starts ``inside`` characters before the ``limit``-th character."""
    return "y" * (limit - inside) + secret + " (end)"


@pytest.mark.parametrize("inside", [6, 12, 18])
@pytest.mark.parametrize("secret", [KEY, PASSWORD], ids=["api-key", "password"])
@pytest.mark.parametrize("where", ["422-message", "location", "400-body"])
async def test_platform_text_cut_at_a_secret_shows_no_fragment_of_it(
    api: ApiDouble, where: str, secret: str, inside: int
) -> None:
    if where == "422-message":
        answer = Respond(
            422,
            {"detail": [{"loc": ["body", "display_name"], "msg": _straddling(secret, MESSAGE_MAX, inside)}]},
        )
    elif where == "location":
        answer = Respond(
            302, {}, {"Location": "https://platform.test/" + _straddling(secret, MESSAGE_MAX - 22, inside)}
        )
    else:
        answer = Respond(400, text=_straddling(secret, 300, inside))
    api.misbehave(answer)
    client = PlatformClient(
        ApiKey.parse(KEY), base_url=api.url, sleep=_nothing, clock=lambda: FIXED_NOW, timeout=5
    )
    async with client:
        outcome = await client.create_sender_account(_payload())
    texts = [*strings(outcome.model_dump(mode="json")), repr(outcome), str(outcome)]
    assert any("yyyyyy" in text for text in texts), texts  # the text was there, cut
    assert leaked(texts, secret) == [], texts


def test_an_api_keys_public_prefix_stays_and_any_longer_prefix_goes() -> None:
    scrub = Scrubber.for_request(ApiKey.parse(KEY))
    assert scrub("used cs_test_…RTY, a cs_test_ key") == "used cs_test_…RTY, a cs_test_ key"
    assert leaked([scrub(f"used {KEY[:14]}")], KEY.removeprefix("cs_test_")) == []
    assert leaked([scrub(f"USED {KEY.upper()[:20]}")], KEY.removeprefix("cs_test_")) == []


def test_a_word_that_starts_like_the_password_stays_unless_more_of_it_is_there() -> None:
    scrub = Scrubber(credentials=[Credential(USER, SecretStr("Password-7x!q"))])
    kept = "535 5.7.8 Username and Password not accepted"
    assert scrub(kept) == kept
    assert scrub("you sent Password-7 as the password.") == f"you sent {REDACTED} as the password."
    assert scrub("the text was cut at Passwor") == f"the text was cut at {REDACTED}"  # a cut edge
    assert scrub("PASSWORD-7X!Q echoed") == f"{REDACTED} echoed"
