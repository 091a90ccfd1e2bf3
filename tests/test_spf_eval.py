"""One focused test for each way the old SPF paths disagreed with RFC 7208 (issue 23), through the
public ``check_host`` and the shared parser.

The zones are served by the suite's DNS server on loopback (tests/spf_suite.py): several need what
NSD cannot serve (a TXT record with no strings, a name that never answers).
"""

from __future__ import annotations

from typing import Any, Final

import pytest
from click.testing import CliRunner

import inboxcheck
from inboxcheck.cli import cli
from inboxcheck.dns.records._common import RecordSyntaxError
from inboxcheck.dns.records.spf import parse_spf
from tests.spf_suite import SuiteDnsServer

_ZONE: Final[dict[str, list[Any]]] = {
    "v4.test": [{"TXT": "v=spf1 ip4:192.0.2.1 -all"}],
    "v6map.test": [{"TXT": "v=spf1 ip6:::ffff:192.0.2.0/120 -all"}],
    "a-mapped.test": [{"TXT": "v=spf1 a ?all"}, {"AAAA": "::ffff:192.0.2.1"}],
    "slash.test": [{"TXT": "v=spf1 a:host/one.slash.test/24 -all"}],
    "host/one.slash.test": [{"A": "192.0.2.9"}],
    "mx11.test": [{"TXT": "v=spf1 mx ip4:192.0.2.1 -all"}]
    + [{"MX": [i, f"mx{i}.mx11.test"]} for i in range(11)],
    **{f"mx{i}.mx11.test": [{"A": "192.0.2.1"}] for i in range(11)},
    "void.test": [{"TXT": "v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test ip4:192.0.2.1 -all"}],
    "nullmx.test": [{"TXT": "v=spf1 mx -all"}, {"MX": [0, "."]}],
    "macro-c.test": [{"TXT": "v=spf1 a:%{c}.macro-c.test -all"}],
    "macro-r.test": [{"TXT": "v=spf1 exists:%{r}.macro-r.test -all"}],
    "macro-t.test": [{"TXT": "v=spf1 include:%{t}.macro-t.test -all"}],
    "emptytxt.test": [{"TXT": []}, {"TXT": "v=spf1 ip4:192.0.2.1 -all"}],
    "exists.test": [{"TXT": "v=spf1 exists:%{ir}.%{l1r+-}.list.exists.test -all"}],
    "1.2.0.192.bob.list.exists.test": [{"A": "127.0.0.2"}],
    "ptr.test": [{"TXT": "v=spf1 ptr -all"}],
    "1.2.0.192.in-addr.arpa": [{"PTR": "mail.ptr.test"}],
    "mail.ptr.test": [{"A": "192.0.2.1"}],
    "xn--bcher-kva.test": [{"TXT": "v=spf1 ip4:192.0.2.1 exists:%{l}.idn.test -all"}],
    "digits.test": [{"TXT": "v=spf1 a:%{d" + "9" * 5000 + "}.digits.test ip4:192.0.2.1 -all"}],
    "digits.test.digits.test": [{"A": "192.0.2.7"}],
    "zero.test": [{"TXT": "v=spf1 a:%{d00}.zero.test -all"}],
    "exp.test": [{"TXT": "v=spf1 -all exp=why.exp.test"}],
    "why.exp.test": [{"TXT": "%{c} may not send for %{d} (%{i})"}],
    "slow.test": ["TIMEOUT"],
    "escape.test": [{"TXT": "v=spf1 \x1b]0;pwned\x07 ip4:192.0.2.1 -all"}],
    "incslow.test": [{"TXT": "v=spf1 include:error.slow.test -all"}],
}


@pytest.fixture
async def server() -> Any:
    async with SuiteDnsServer() as running:
        running.load(_ZONE)
        yield running


async def _check(server: SuiteDnsServer, ip: str, domain: str) -> inboxcheck.SpfEvaluation:
    return await inboxcheck.check_host(ip, domain, nameservers=[server.nameserver], timeout=1.0)


@pytest.mark.parametrize(
    ("ip", "domain", "expected"),
    [
        # An IPv4-mapped client is evaluated as IPv4 (RFC 7208 5): ip4 matches, ip6 and AAAA do not.
        ("::ffff:192.0.2.1", "v4.test", "pass"),
        ("::ffff:192.0.2.1", "v6map.test", "fail"),
        ("::ffff:192.0.2.1", "a-mapped.test", "neutral"),
        # A '/' inside an a: domain-spec is part of the name, not a malformed prefix.
        ("192.0.2.200", "slash.test", "pass"),
        # More than 10 MX names: permerror, even though an address would match.
        ("192.0.2.1", "mx11.test", "permerror"),
        # A third void lookup: permerror before the ip4 term is reached.
        ("192.0.2.1", "void.test", "permerror"),
        # A null MX (RFC 7505) has no address: the mx term does not match, no temperror.
        ("192.0.2.1", "nullmx.test", "fail"),
        # c, r and t are only for explanation strings.
        ("192.0.2.1", "macro-c.test", "permerror"),
        ("192.0.2.1", "macro-r.test", "permerror"),
        ("192.0.2.1", "macro-t.test", "permerror"),
        # A TXT record with no strings is ignored, not an unreadable answer.
        ("192.0.2.1", "emptytxt.test", "pass"),
        # exists, ptr and macros are evaluated.
        ("192.0.2.1", "exists.test", "fail"),
        ("192.0.2.1", "ptr.test", "pass"),
        ("192.0.2.2", "ptr.test", "fail"),
        # A timeout is temperror, never "no record"; also through an include.
        ("192.0.2.1", "slow.test", "temperror"),
        ("192.0.2.1", "incslow.test", "temperror"),
        # Thousands of digits in a macro keep every part (and crash nothing); zero parts is an error.
        ("192.0.2.7", "digits.test", "pass"),
        ("192.0.2.1", "zero.test", "permerror"),
        # A malformed domain is none (RFC 7208 4.3), without a lookup.
        ("192.0.2.1", "a..b.test", "none"),
        ("192.0.2.1", "x" * 64 + ".test", "none"),
    ],
)
async def test_check_host(server: SuiteDnsServer, ip: str, domain: str, expected: str) -> None:
    result = await _check(server, ip, domain)
    assert result.result.value == expected, result.reason


async def test_exists_with_sender_macros(server: SuiteDnsServer) -> None:
    result = await inboxcheck.check_host(
        "192.0.2.1", "exists.test", sender="bob@exists.test", nameservers=[server.nameserver], timeout=1.0
    )
    assert (result.result.value, result.mechanism) == (
        "pass",
        "exists:%{ir}.%{l1r+-}.list.exists.test",
    )


async def test_an_internationalised_domain_is_asked_as_a_labels(server: SuiteDnsServer) -> None:
    result = await _check(server, "192.0.2.1", "bücher.test")
    assert (result.result.value, result.domain) == ("pass", "xn--bcher-kva.test")


async def test_a_macro_that_expands_to_utf8_names_nothing(server: SuiteDnsServer) -> None:
    result = await inboxcheck.check_host(
        "192.0.2.9", "bücher.test", sender="jörg@bücher.test", nameservers=[server.nameserver], timeout=1.0
    )
    assert (result.result.value, result.void_lookups) == ("fail", 1)
    assert [q.name for q in result.queries] == ["xn--bcher-kva.test"]


async def test_explanation_and_what_was_asked(server: SuiteDnsServer) -> None:
    result = await _check(server, "192.0.2.1", "exp.test")
    assert result.result.value == "fail"
    assert result.explanation == "192.0.2.1 may not send for exp.test (192.0.2.1)"
    assert result.mechanism == "-all"
    assert [(q.name, q.type) for q in result.queries] == [("exp.test", "TXT"), ("why.exp.test", "TXT")]
    assert result.lookup_terms == 0


async def test_the_malformed_domain_asks_nothing(server: SuiteDnsServer) -> None:
    result = await _check(server, "192.0.2.1", "a..b.test")
    assert result.queries == ()


@pytest.mark.parametrize(
    "record",
    ["v=spf1 a:host/one.example.com -all", "v=spf1 mx:a/b.example.com/24//64 -all"],
)
def test_parser_keeps_a_slash_inside_the_name(record: str) -> None:
    parse_spf(record)  # the DNS check used to call these records broken


@pytest.mark.parametrize(
    "record",
    ["v=spf1 a:%{c}.example.com -all", "v=spf1 exists:%{r}.example.com", "v=spf1 redirect=%{t}.example.com"],
)
def test_parser_refuses_explanation_macros_in_a_domain(record: str) -> None:
    with pytest.raises(RecordSyntaxError, match="only allowed in explanation strings"):
        parse_spf(record)


def test_parser_still_refuses_a_malformed_prefix() -> None:
    for record in ("v=spf1 a:example.com/33 -all", "v=spf1 a/ -all", "v=spf1 mx:example.com/0x1 -all"):
        with pytest.raises(RecordSyntaxError):
            parse_spf(record)


def test_sync_twin_raises_for_a_bad_address() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        inboxcheck.check_host_sync("not-an-ip", "example.com")


async def test_sync_twin_refuses_inside_a_loop() -> None:
    with pytest.raises(inboxcheck.InboxcheckError, match=r"await inboxcheck\.check_host"):
        inboxcheck.check_host_sync("192.0.2.1", "example.com")


# --- the command line ----------------------------------------------------------------------------


def _spf_cli(args: list[str]) -> Any:
    return CliRunner().invoke(cli, ["spf", *args], catch_exceptions=False)


@pytest.mark.parametrize(
    ("ip", "target", "code", "first"),
    [
        ("192.0.2.1", "bob@v4.test", 0, "pass"),
        ("192.0.2.9", "v4.test", 1, "fail"),
        ("192.0.2.1", "mx11.test", 1, "permerror"),
        ("192.0.2.1", "slow.test", 3, "temperror"),
        ("192.0.2.1", "a-mapped.test", 4, "neutral"),
    ],
)
async def test_cli_exit_code_follows_the_result(
    server: SuiteDnsServer, ip: str, target: str, code: int, first: str
) -> None:
    import asyncio

    result = await asyncio.to_thread(
        _spf_cli, [ip, target, "--nameserver", server.nameserver, "--timeout", "1"]
    )
    assert result.exit_code == code, result.output
    assert result.output.splitlines()[0] == first
    assert "Received-SPF: " + first in result.output


async def test_cli_json(server: SuiteDnsServer) -> None:
    import asyncio
    import json

    result = await asyncio.to_thread(
        _spf_cli,
        [
            "192.0.2.1",
            "exp.test",
            "--helo",
            "mx.example",
            "--format",
            "json",
            "--nameserver",
            server.nameserver,
        ],
    )
    data = json.loads(result.output)
    assert (data["result"], data["explanation"], data["helo"]) == (
        "fail",
        "192.0.2.1 may not send for exp.test (192.0.2.1)",
        "mx.example",
    )
    assert result.exit_code == 1


async def test_cli_escapes_text_from_dns(server: SuiteDnsServer) -> None:
    import asyncio

    result = await asyncio.to_thread(
        _spf_cli, ["192.0.2.1", "escape.test", "--nameserver", server.nameserver]
    )
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;pwned\\x07" in result.output


async def test_cli_in_a_real_process(server: SuiteDnsServer) -> None:
    import asyncio
    import sys

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "inboxcheck",
        "spf",
        "::ffff:192.0.2.1",
        "bob@v4.test",
        "--helo",
        "mx.v4.test",
        "--nameserver",
        server.nameserver,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr
    assert stdout.decode().splitlines()[0] == "pass"
    assert (
        "Received-SPF: pass (inboxcheck: domain of bob@v4.test designates 192.0.2.1 as permitted sender) "
        "client-ip=192.0.2.1; envelope-from=bob@v4.test; helo=mx.v4.test;"
    ) in stdout.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["999.1.1.1", "example.com"], "is not an IPv4 or IPv6 address"),
        (["192.0.2.1", "no spaces.com"], "is not a domain name"),
        (["192.0.2.1", "example.com", "--nameserver", "dns.example"], "is not an IP address"),
    ],
)
def test_cli_bad_input_exits_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["spf", *args])
    assert result.exit_code == 2
    assert message in result.output
