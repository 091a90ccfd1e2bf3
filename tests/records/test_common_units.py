"""The record parsers' shared parts, exactly: the syntax error (position kept inside the record, the
character it names, the pointer) and the tag list (positions of names and values, whitespace, case,
each error's words and position)."""

from __future__ import annotations

import pytest

from inboxcheck.dns.records._common import RecordSyntaxError, Tag, parse_tag_list


def test_a_syntax_error_names_the_character_and_points_at_it() -> None:
    error = RecordSyntaxError("bad", record="abc", position=1)
    assert (error.message, error.record, error.position) == ("bad", "abc", 1)
    assert str(error) == "bad (at character 2)"
    assert error.pointer() == "abc\n ^"
    assert isinstance(error, ValueError)


def test_a_position_outside_the_record_is_kept_inside_it() -> None:
    assert RecordSyntaxError("x", record="abc", position=-5).position == 0
    assert RecordSyntaxError("x", record="abc", position=3).position == 3
    assert RecordSyntaxError("x", record="abc", position=99).position == 3
    assert RecordSyntaxError("x", record="", position=2).position == 0


def test_tags_with_their_positions() -> None:
    text = " a=1;\tbb = two words ;;c=;\r\nD=x "
    assert parse_tag_list(text, what="list") == [
        Tag("a", "1", 1, 3),
        Tag("bb", "two words", 6, 11),
        Tag("c", "", 23, 25),
        Tag("d", "x", 28, 30),
    ]


def test_case_is_folded_only_when_asked() -> None:
    assert [t.name for t in parse_tag_list("A=1; b=2", what="list")] == ["a", "b"]
    assert [t.name for t in parse_tag_list("A=1; b=2", what="list", fold_case=False)] == ["A", "b"]
    assert len(parse_tag_list("A=1; a=2", what="list", fold_case=False)) == 2
    assert parse_tag_list("k=a=b", what="list")[0].value == "a=b"


def test_an_empty_list_and_empty_parts_are_allowed() -> None:
    assert parse_tag_list("", what="list") == []
    assert parse_tag_list(" ; ;\t;", what="list") == []


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("a=1; " + "x" * 50, f"the thing has a part without '=': {'x' * 40!r}", 5),
        ("a=1;  =2", "the thing has an invalid tag name ''", 6),
        ("a=1; 1a=2", "the thing has an invalid tag name '1a'", 5),
        ("a=1; a-b=2", "the thing has an invalid tag name 'a-b'", 5),
        ("a=1; " + "a" * 50 + "!=2", f"the thing has an invalid tag name {'a' * 40!r}", 5),
        ("a=1; A=2", "the thing has the tag 'A' twice", 5),
        ("a_1=1; a_1=2", "the thing has the tag 'a_1' twice", 7),
    ],
)
def test_each_error_says_what_and_where(text: str, message: str, position: int) -> None:
    with pytest.raises(RecordSyntaxError) as caught:
        parse_tag_list(text, what="thing")
    assert caught.value.message == message
    assert caught.value.position == position
    assert caught.value.record == text


def test_only_spaces_tabs_and_line_breaks_are_whitespace_between_tags() -> None:
    # RFC 6376 3.2: FWS is spaces, tabs and CRLF; a vertical tab or a no-break space is data.
    assert parse_tag_list("a=1\x0b", what="list")[0].value == "1\x0b"
    assert parse_tag_list("a=\u00a01", what="list")[0].value == "\u00a01"
    with pytest.raises(RecordSyntaxError, match="invalid tag name"):
        parse_tag_list("\x0ba=1", what="list")
    with pytest.raises(RecordSyntaxError, match="without '='"):
        parse_tag_list("a=1;\x0c", what="list")
