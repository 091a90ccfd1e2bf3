"""The command table: every command listed with its own short help, each module loaded only when run."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from inboxcheck.cli import COMMANDS, cli, load_command


def test_each_short_help_is_the_first_line_of_its_command_docstring() -> None:
    for name, entry in COMMANDS.items():
        command = load_command(name)
        assert command.name == name, name
        first = (command.help or "").strip().splitlines()[0]
        assert entry.short_help == first, name


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"], catch_exceptions=False)
    assert result.exit_code == 0
    listed = result.stdout.split("Commands:")[1]
    assert [
        line.split()[0] for line in listed.splitlines() if line.startswith("  ") and line[2] != " "
    ] == list(COMMANDS)


def test_help_and_one_command_import_only_that_command() -> None:
    probe = (
        "import sys\n"
        "from inboxcheck.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('inboxcheck.cli.')), file=sys.stderr)\n"
    )

    def loaded(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60, check=False
        )
        return proc.stderr.strip().splitlines()[-1]

    assert loaded("--help") == "['inboxcheck.cli._terminal']"
    assert "inboxcheck.cli.connect" not in loaded("schema")
    assert "inboxcheck.cli.schema" in loaded("schema")


def test_a_command_added_to_the_group_is_listed_too() -> None:
    @click.command("extra-for-test", help="An extra command.")
    def extra() -> None:
        pass

    cli.add_command(extra)
    try:
        result = CliRunner().invoke(cli, ["--help"], catch_exceptions=False)
        assert "extra-for-test  An extra command." in result.stdout
        assert CliRunner().invoke(cli, ["extra-for-test"]).exit_code == 0
    finally:
        cli.commands.pop("extra-for-test")
