"""The one way inboxcheck reads the data it ships: TOML files, parsed with an error that names the file.

- Inside the package: ``knowledge/*.toml`` (reply rules), ``blocklists.toml``, ``diagnosis.toml``
  (the weights of the causes): :func:`packaged` finds them in a wheel, an editable install and a
  source checkout alike.
- The provider presets sit at the top of the repository (``presets/``) and are force-included in the
  wheel as ``inboxcheck/_data/presets``: :func:`presets_dir` finds whichever is there.

Everything is read on first use and kept (the callers cache), never at import.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from inboxcheck._errors import InboxcheckError, PresetError

__all__ = ["packaged", "packaged_files", "parse_toml", "presets_dir", "read_toml"]


def packaged(*parts: str) -> Traversable:
    """A file or folder shipped inside the package (``packaged("knowledge")``)."""
    return resources.files("inboxcheck").joinpath(*parts)


def packaged_files(folder: str, suffix: str = ".toml") -> list[Traversable]:
    """The files of a packaged folder that end in ``suffix``, by name."""
    return sorted((f for f in packaged(folder).iterdir() if f.name.endswith(suffix)), key=lambda f: f.name)


def presets_dir() -> Path:
    """Where the bundled presets live.

    An installed wheel carries them inside the package (``inboxcheck/_data/presets``); an editable
    install or a source checkout has them at the top of the repository, beside the package.
    """
    bundled = packaged("_data", "presets")
    if isinstance(bundled, Path) and bundled.is_dir():
        return bundled
    checkout = Path(__file__).resolve().parent.parent / "presets"
    if checkout.is_dir():
        return checkout
    raise PresetError(
        "the provider presets are missing: expected inboxcheck/_data/presets in the installed package "
        f"or {checkout} in a source checkout; reinstall inboxcheck"
    )


def parse_toml(text: str, *, source: str, error: type[InboxcheckError] = InboxcheckError) -> dict[str, Any]:
    """``text`` as TOML, or ``error`` naming ``source``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from exc


def read_toml(
    file: Traversable | Path,
    *,
    source: str | None = None,
    what: str = "the file",
    error: type[InboxcheckError] = InboxcheckError,
) -> dict[str, Any]:
    """The TOML ``file``, or ``error`` naming it (``source``, else its path) and what it is."""
    label = source if source is not None else str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{label}: cannot read {what}: {exc}") from exc
    return parse_toml(text, source=label, error=error)
