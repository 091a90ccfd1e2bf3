"""A display_name goes into the From header of the send test's message: a line break or another control
character in it would start a header of the sender's choosing, so it is bad input (exit 2, named per
field), never a send test that fails with internal.bug."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from inboxcheck._models import Account
from inboxcheck.cli import cli
from tests.helpers import custom_payload


@pytest.mark.parametrize(
    "name",
    [
        "Sam\r\nBcc: victim@example.test",
        "Sam\nX-Injected: yes",
        "Sam\rPeer",
        "Sam\x00Peer",
        "Sam\x85Peer",  # NEL, a C1 line break
        "Sam\u2028Peer",  # the Unicode line separator
        "Sam\tPeer",
    ],
)
def test_a_control_character_in_the_display_name_is_refused(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Account.model_validate(custom_payload(display_name=name))
    (error,) = caught.value.errors()
    assert error["loc"] == ("display_name",)
    assert "message headers" in str(error["msg"])


@pytest.mark.parametrize("name", ["Jürgen Müller (Sales) – Team", "李 雷", 'O\'Brien, "Pat"'])
def test_a_real_name_is_accepted(name: str) -> None:
    assert Account.model_validate(custom_payload(display_name=name)).display_name == name


def test_cli_names_the_field_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "account.json"
    path.write_text(
        json.dumps(custom_payload(display_name="Sam\r\nBcc: victim@example.test")), encoding="utf-8"
    )
    result = CliRunner().invoke(cli, ["check", str(path), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    (problem,) = document["findings"]
    assert problem["code"] == "input.invalid"
    assert problem["evidence"]["field"] == "display_name"
    assert "carriage return" in problem["message"]
