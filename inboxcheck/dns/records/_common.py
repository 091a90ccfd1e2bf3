"""What the record parsers share: their one error type and the tag=value list of DKIM and DMARC."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RecordSyntaxError", "Tag", "parse_tag_list"]


class RecordSyntaxError(ValueError):
    """A record does not follow its grammar.

    ``position`` is the 0-based index in ``record`` where the problem starts, so a message can point
    at it; ``message`` says what is wrong in words a person understands.
    """

    def __init__(self, message: str, *, record: str, position: int) -> None:
        self.message = message
        self.record = record
        self.position = max(0, min(position, len(record)))
        super().__init__(f"{message} (at character {self.position + 1})")

    def pointer(self) -> str:
        """The record with a caret under the offending character, for evidence."""
        return f"{self.record}\n{' ' * self.position}^"


@dataclass(frozen=True)
class Tag:
    """One ``name=value`` of a tag list, with where its name and value start."""

    name: str
    value: str
    position: int
    value_position: int


# RFC 6376 3.2: tag-name = ALPHA *ALNUMPUNC, ALNUMPUNC = ALPHA / DIGIT / "_".
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_WSP = " \t\r\n"


def parse_tag_list(text: str, *, what: str, fold_case: bool = True) -> list[Tag]:
    """Split a tag list (RFC 6376 3.2, used by DKIM keys and DMARC records) into tags.

    Whitespace around names and values is ignored; an empty tag-spec (``;;``) or a trailing ``;``
    is allowed. Duplicate names are an error (RFC 6376 3.2: "Tags with duplicate names MUST NOT occur").
    DKIM tag names are case-sensitive (RFC 6376 3.2); DMARC's are compared without case
    (``fold_case``), as deployed receivers do.
    """
    tags: list[Tag] = []
    seen: set[str] = set()
    start = 0
    for part in text.split(";"):
        part_start = start
        start += len(part) + 1
        stripped = part.strip(_WSP)
        if not stripped:
            continue
        offset = part_start + (len(part) - len(part.lstrip(_WSP)))
        if "=" not in stripped:
            raise RecordSyntaxError(
                f"the {what} has a part without '=': {stripped[:40]!r}", record=text, position=offset
            )
        raw_name, raw_value = stripped.split("=", 1)
        name = raw_name.strip(_WSP)
        if not _TAG_NAME.match(name):
            raise RecordSyntaxError(
                f"the {what} has an invalid tag name {name[:40]!r}", record=text, position=offset
            )
        key = name.lower() if fold_case else name
        if key in seen:
            raise RecordSyntaxError(f"the {what} has the tag {name!r} twice", record=text, position=offset)
        seen.add(key)
        value = raw_value.strip(_WSP)
        value_offset = offset + len(raw_name) + 1 + (len(raw_value) - len(raw_value.lstrip(_WSP)))
        tags.append(Tag(key, value, offset, value_offset))
    return tags
