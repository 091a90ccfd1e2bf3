"""The README's examples are what the commands print, and the environment it documents is honoured."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from inboxcheck import check
from inboxcheck._options import CheckOptions, Family, Nameserver
from inboxcheck.cli import cli
from inboxcheck.cli._report import TextRenderer
from inboxcheck.cli._terminal import colour_wanted, debug_enabled
from tests.helpers import custom_payload, google_payload
from tests.peers import DnsPeer

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _block(after: str, language: str) -> str:
    """The first fenced block of ``language`` after the text ``after``."""
    start = README.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.DOTALL).search(README, start)
    assert match is not None, after
    return match.group(1)


async def test_the_dmarc_example_is_what_check_prints() -> None:
    example = _block("A DNS record to publish is printed whole", "text").rstrip("\n").splitlines()
    # A DNS server that knows no TXT record: example.com has no DMARC record.
    async with DnsPeer() as dns:
        payload = custom_payload(email_address="sam@example.com", smtp_username="sam@example.com")
        options = CheckOptions(
            families=frozenset({Family.DNS}), nameservers=(Nameserver(host="127.0.0.1", port=dns.port),)
        )
        report = await check(payload, options=options)
    lines = TextRenderer(unicode=True).render(report).splitlines()
    first = lines.index(example[0])
    assert lines[first : first + len(example)] == example


def test_the_error_document_example_is_what_check_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = json.loads(_block("an account that cannot be used is also a JSON document", "json"))
    monkeypatch.chdir(tmp_path)
    Path("account.json").write_text(json.dumps(google_payload(smtp_port="587")), encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "account.json", "--format", "json"], env={})
    assert result.exit_code == 2
    assert json.loads(result.stdout) == example


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("env", "colour"),
    [({}, True), ({"NO_COLOR": "1"}, False), ({"TERM": "dumb"}, False), ({"TERM": "xterm"}, True)],
)
def test_colour_follows_no_color_and_term_as_the_readme_says(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], colour: bool
) -> None:
    for name in ("NO_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
        assert f"`{name}" in README
    assert colour_wanted(_Tty()) is colour
    assert colour_wanted(io.StringIO()) is False


def test_inboxcheck_debug_is_as_the_readme_says(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "`INBOXCHECK_DEBUG`" in README
    monkeypatch.delenv("INBOXCHECK_DEBUG", raising=False)
    assert debug_enabled() is False
    monkeypatch.setenv("INBOXCHECK_DEBUG", "1")
    assert debug_enabled() is True


def test_every_schema_name_the_readme_lists_exists() -> None:
    from inboxcheck._schema import DOCUMENTS

    for name in DOCUMENTS:
        assert f"`{name}`" in README, name
