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
