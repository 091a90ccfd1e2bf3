"""The presets' host patterns match exactly as fnmatch does, with or without its regular expressions."""

from __future__ import annotations

import fnmatch

from hypothesis import given, settings, strategies as st

from inboxcheck._presets import _glob, load_presets

_NAME = st.text(alphabet="ab.-1", max_size=8)
_PATTERN = st.text(alphabet="ab.-1*?[]", max_size=8)


@given(_NAME, _PATTERN)
def test_glob_is_fnmatchcase(name: str, pattern: str) -> None:
    assert _glob(name, pattern) == fnmatch.fnmatchcase(name, pattern)


def test_every_preset_pattern_matches_as_fnmatch_does() -> None:
    patterns: set[str] = set()
    for preset in load_presets():
        patterns |= {p.lower() for p in preset.mx_patterns}
        patterns |= {p.lower() for p in (*preset.smtp.all_host_patterns(), *preset.imap.all_host_patterns())}
    names = [p.replace("*", "x.y").replace("?", "z") for p in patterns] + ["gmail.com", ".google.com", "a.b"]
    for pattern in patterns:
        for name in names:
            assert _glob(name, pattern) == fnmatch.fnmatchcase(name, pattern), (name, pattern)


@settings(max_examples=500)
@given(st.text(alphabet="ab.", max_size=10), st.text(alphabet="ab.*", max_size=8))
def test_a_pattern_of_stars_matches_as_fnmatchcase(name: str, pattern: str) -> None:
    # Stars only: the shape _glob matches without a regular expression (leftmost pieces).
    assert _glob(name, pattern) == fnmatch.fnmatchcase(name, pattern), (name, pattern)


def _host_names() -> list[str]:
    names = ["mail.b0001.test", "smtp.ionos.de", "IMAP.IONOS.FR.", "smtp.1und1.x", "127.0.0.1", "localhost"]
    for preset in load_presets():
        for pattern in (
            *preset.mx_patterns,
            *preset.smtp.all_host_patterns(),
            *preset.imap.all_host_patterns(),
        ):
            names += [pattern.replace("*", "x"), pattern.replace("*", "").upper() + ".", "a" + pattern[1:]]
    return names


def test_hosts_ruled_out_at_once_are_the_hosts_no_pattern_matches() -> None:
    # Presets rules out a host by its patterns' first and last pieces before any glob: the answer
    # must be the one of asking every preset in turn.
    presets = load_presets()
    real = [preset for preset in presets if not preset.is_generic]
    for host in _host_names():
        for port in (None, 587, 993):
            smtp = next((p for p in real if p.matches_smtp_host(host, port)), None)
            imap = next((p for p in real if p.matches_imap_host(host, port)), None)
            assert presets.by_smtp_host(host, port) is smtp, host
            assert presets.by_imap_host(host, port) is imap, host
        assert presets.by_mx(host) is next((p for p in presets if p.matches_mx(host)), None), host
    assert presets.by_smtp_host("smtp.ionos.de") is presets.get("ionos")
    assert presets.by_smtp_host("mail.b0001.test") is None
