"""``{{name}}`` placeholders for config templates and zone files.

Postfix (``$name``), Dovecot (``%u``, ``$name``) and zone files (``$ORIGIN``, ``@``) already use the
usual template sigils, so the lab uses double braces, which none of them know, and fails loudly on
an unknown placeholder instead of leaving it in a config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent / "config"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


class TemplateError(ValueError):
    """A template names a placeholder the lab does not provide."""


def has_placeholders(text: str) -> bool:
    """Whether ``text`` needs rendering at all (most zone files do not)."""
    return _PLACEHOLDER.search(text) is not None


def render(text: str, values: Mapping[str, object], *, source: str = "template") -> str:
    """Replace every ``{{name}}`` in ``text`` with ``str(values[name])``."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            known = ", ".join(sorted(values))
            raise TemplateError(f"{source}: unknown placeholder {{{{{name}}}}} (known: {known})")
        return str(values[name])

    return _PLACEHOLDER.sub(substitute, text)


def render_file(name: str, values: Mapping[str, object]) -> str:
    """Render ``lab/config/NAME``."""
    path = TEMPLATE_DIR / name
    return render(path.read_text(), values, source=str(path))
