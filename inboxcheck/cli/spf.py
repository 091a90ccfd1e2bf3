"""``inboxcheck spf IP ADDRESS|DOMAIN``: RFC 7208 ``check_host()`` for one client address.

The text output is what spfquery's and swaks' users read: the result on the first line, then the
term that decided it, the domain's explanation (for a fail), the lookups it cost, and a
``Received-SPF`` header field (RFC 7208 9.1) as a receiver would add it. Every text from DNS is
escaped before it reaches the terminal; ``--format json`` keeps it exact.

Exit codes: 0 pass; 1 fail, softfail or permerror (mail from this address fails SPF, or the
record is broken for every receiver); 2 bad input; 3 temperror (a lookup failed: could not tell);
4 neutral or none (the domain makes no statement about this address).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Final

import click

from inboxcheck.cli._terminal import run_async

if TYPE_CHECKING:
    from inboxcheck.dns.spf_eval import SpfEvaluation

__all__ = ["EXIT_CODES", "spf"]

EXIT_CODES: Final = {
    "pass": 0,
    "fail": 1,
    "softfail": 1,
    "permerror": 1,
    "temperror": 3,
    "neutral": 4,
    "none": 4,
}


@click.command()
@click.argument("ip", metavar="IP")
@click.argument("target", metavar="ADDRESS|DOMAIN")
@click.option("--helo", metavar="NAME", help="The name the client gave in HELO/EHLO (the %{h} macro).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format on stdout.",
)
@click.option(
    "--nameserver",
    "nameservers",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Send all DNS lookups to this server instead of the system resolver (repeatable).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True, max=600),
    default=10.0,
    show_default=True,
    help="Seconds allowed for each DNS lookup.",
)
def spf(
    ip: str, target: str, helo: str | None, fmt: str, nameservers: tuple[str, ...], timeout: float
) -> None:
    """Evaluate SPF (RFC 7208 check_host) for a client at IP sending as ADDRESS or DOMAIN.

    With an ADDRESS the sender is that address and the domain its part after the @; with a DOMAIN
    the sender is postmaster@DOMAIN. Exit 0: pass; 1: fail, softfail or permerror; 3: temperror
    (could not tell); 4: neutral or none; 2: bad input.
    """

    from inboxcheck._errors import OptionsError
    from inboxcheck._options import parse_nameserver
    from inboxcheck.cli._terminal import escape
    from inboxcheck.dns.spf_entry import check_host
    from inboxcheck.dns.spf_record import client_address, valid_domain

    try:
        client_address(ip)
    except ValueError:
        raise click.BadParameter(f"{escape(ip)!s} is not an IPv4 or IPv6 address", param_hint="IP") from None
    sender = target if "@" in target else None
    domain = target.rpartition("@")[2].strip()
    if not valid_domain(domain) or any(c.isspace() or not c.isprintable() for c in domain):
        raise click.BadParameter(
            f"{escape(domain)!r} is not a domain name (two or more labels of 1 to 63 characters)",
            param_hint="ADDRESS|DOMAIN",
        )
    if helo is not None and (not helo or any(c.isspace() or not c.isprintable() for c in helo)):
        raise click.BadParameter(f"{escape(helo)!r} is not a host name", param_hint="--helo")
    try:
        servers = [parse_nameserver(n) for n in nameservers]
    except OptionsError as exc:
        raise click.BadParameter(str(exc), param_hint="--nameserver") from None
    result = run_async(check_host(ip, domain, sender=sender, helo=helo, nameservers=servers, timeout=timeout))
    if fmt == "json":
        click.echo(result.model_dump_json(indent=2))
    else:
        click.echo(render_text(result))
    sys.exit(EXIT_CODES[result.result.value])


def render_text(result: SpfEvaluation) -> str:
    from inboxcheck.cli._terminal import escape

    lines = [result.result.value]
    if result.mechanism is not None:
        where = escape(result.mechanism_domain or "")
        lines.append(f"  mechanism:   {escape(result.mechanism)} (in the SPF record of {where})")
    if result.record is not None:
        lines.append(f"  record:      {escape(result.record)}")
    if result.explanation is not None:
        lines.append(f"  explanation: {escape(result.explanation)}")
    if result.reason and result.mechanism is None:  # a match says it all in its mechanism line
        lines.append(f"  reason:      {escape(result.reason)}")
    lines.append(
        f"  lookups:     {result.lookup_terms} of 10 terms that query DNS, {result.void_lookups} of 2 void "
        f"lookups, {len(result.queries)} DNS queries"
    )
    lines.append(escape(received_spf(result)))
    return "\n".join(lines)


_COMMENTS: Final = {
    "pass": "domain of {sender} designates {ip} as permitted sender",
    "fail": "domain of {sender} does not designate {ip} as permitted sender",
    "softfail": "transitioning domain of {sender} does not designate {ip} as permitted sender",
    "neutral": "{ip} is neither permitted nor denied by domain of {sender}",
    "none": "domain of {sender} does not designate permitted sender hosts",
    "permerror": "permanent error in processing domain of {sender}",
    "temperror": "temporary error in processing during lookup of {sender}",
}


def received_spf(result: SpfEvaluation) -> str:
    """The ``Received-SPF`` header field (RFC 7208 9.1) a receiver would add for this result."""
    comment = _COMMENTS[result.result.value].format(sender=result.sender, ip=result.ip)
    pairs = [f"client-ip={result.ip};", f"envelope-from={_quoted(result.sender)};"]
    if result.helo:
        pairs.append(f"helo={_quoted(result.helo)};")
    return f"Received-SPF: {result.result.value} (inboxcheck: {comment}) " + " ".join(pairs)


def _quoted(value: str) -> str:
    """A value as RFC 5322 dot-atom, or a quoted string."""
    if value and all(c.isalnum() or c in "!#$%&'*+-/=?^_`{|}~.@" for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
