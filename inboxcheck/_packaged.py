"""The one way inboxcheck reads the data it ships: TOML files, parsed with an error that names the file.

- Inside the package: ``knowledge/*.toml`` (reply rules), ``blocklists.toml``, ``diagnosis.toml``
  (the weights of the causes): :func:`packaged` finds them in a wheel, an editable install and a
  source checkout alike.
- The provider presets sit at the top of the repository (``presets/``) and are force-included in the
  wheel as ``inboxcheck/_data/presets``: :func:`presets_dir` finds whichever is there.

Everything is read on first use and kept (the callers cache), never at import.

The shipped TOML is also parsed ahead, into ``parsed-data.json`` (by the SHA-256 of each file's text):
parsing the 26 presets with the pure-Python ``tomllib`` was most of a check run's data loading (10 ms
of CPU on every start). A text is looked up by its digest, so an edited file (or one that is not
ours) has no entry and is parsed as TOML: the file can lag behind the sources, never give stale data.
Regenerate it with ``python -m inboxcheck._packaged > inboxcheck/parsed-data.json``; a test keeps it
equal to the sources.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Final

from inboxcheck._errors import InboxcheckError, PresetError

__all__ = ["packaged", "packaged_files", "parse_toml", "parsed_ahead_document", "presets_dir", "read_toml"]

#: The file of the package holding its TOML parsed ahead (see the module's docstring).
PARSED_AHEAD: Final = "parsed-data.json"
# TOML's dates and times, which JSON lacks, are written as {"$toml": kind, "value": ISO text}.
_TAG: Final = "$toml"
_REVIVE: Final[dict[str, Any]] = {
    "date": datetime.date.fromisoformat,
    "time": datetime.time.fromisoformat,
    "datetime": datetime.datetime.fromisoformat,
}


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
    """``text`` as TOML, or ``error`` naming ``source``; a new object on every call.

    A text the package ships comes from :data:`PARSED_AHEAD` (the same value ``tomllib`` gives)."""
    ahead = _parsed_ahead().get(_digest(text))
    if ahead is not None:
        parsed: dict[str, Any] = json.loads(ahead, object_hook=_revive if _TAG in ahead else None)
        return parsed
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from exc


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@functools.cache
def _parsed_ahead() -> dict[str, str]:
    """Digest of a shipped TOML text -> its parse as JSON text; empty when the file is missing."""
    try:
        document = json.loads(packaged(PARSED_AHEAD).read_text(encoding="utf-8"))
        parsed = document["parsed"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # parse the TOML instead: slower, never wrong
    return parsed if isinstance(parsed, dict) else {}


def _revive(table: dict[str, Any]) -> Any:
    if len(table) == 2 and isinstance(kind := table.get(_TAG), str) and kind in _REVIVE:
        return _REVIVE[kind](table["value"])
    return table


def _tag(value: object) -> dict[str, str]:
    for kind, cls in (("datetime", datetime.datetime), ("date", datetime.date), ("time", datetime.time)):
        if isinstance(value, cls):
            return {_TAG: kind, "value": value.isoformat()}
    raise TypeError(f"{type(value).__name__} is not a TOML value")


def _shipped_toml() -> Iterator[Path | Traversable]:
    """Every TOML file the package ships: its own folders (an installed wheel's presets among them),
    and the presets beside it in a source checkout."""
    root = packaged()
    found: dict[str, Path | Traversable] = {}
    if isinstance(root, Path):
        found.update((str(path), path) for path in root.rglob("*.toml"))
    found.update((str(path), path) for path in presets_dir().glob("*.toml"))
    return iter(found[name] for name in sorted(found))


def parsed_ahead_document() -> str:
    """The content :data:`PARSED_AHEAD` must have: every shipped TOML text, parsed, by its digest.

    A text whose parse would not come back from JSON exactly as ``tomllib`` gives it is left out (it
    is then parsed as TOML)."""
    import tomllib

    parsed: dict[str, str] = {}
    for file in _shipped_toml():
        text = file.read_text(encoding="utf-8")
        value = tomllib.loads(text)
        encoded = json.dumps(value, default=_tag, ensure_ascii=False, separators=(",", ":"))
        if json.loads(encoded, object_hook=_revive) == value:  # not so: NaN, a table named like a tag
            parsed[_digest(text)] = encoded
    document = {
        "comment": "TOML the package ships, parsed ahead: python -m inboxcheck._packaged > inboxcheck/"
        + PARSED_AHEAD,
        "parsed": dict(sorted(parsed.items())),
    }
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"


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


if __name__ == "__main__":
    import sys

    sys.stdout.write(parsed_ahead_document())
