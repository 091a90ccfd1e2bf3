"""Reply classes and TLS modes against the lab's real Dovecot and Postfix (issue 9, sections 3 and 4).

Dovecot's per-mailbox connection limit (``mail_max_userip_connections``, 10 by default, left at its
default in the lab) is produced for real: the test holds that many logged-in connections of one
mailbox, then runs the check, which must say "other clients hold the mailbox", not "wrong password".
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from inboxcheck._models import Account, Report, Severity, Status
from inboxcheck._options import CheckOptions, parse_nameserver
from inboxcheck._runner import run_checks
from inboxcheck.checks.login import imap, smtp
from tests.peers import TcpForwarder

pytestmark = pytest.mark.lab

TIMEOUT = 5.0
#: Dovecot's default mail_max_userip_connections (the lab does not change it).
DOVECOT_USERIP_LIMIT = 10


def _options(lab: Any, **extra: Any) -> CheckOptions:
    address, port = lab.nameserver
    return CheckOptions(
        timeout=extra.pop("timeout", TIMEOUT),
        deadline=30,
        nameservers=(parse_nameserver(f"{address}:{port}"),),
        ca_file=lab.ca_file,
        **extra,
    )


async def _run(lab: Any, payload: dict[str, Any], specs: list[Any], **extra: Any) -> Report:
    return await run_checks(Account.model_validate(payload), options=_options(lab, **extra), specs=specs)


@contextlib.asynccontextmanager
async def _logged_in(lab: Any, payload: dict[str, Any], count: int) -> AsyncIterator[None]:
    """``count`` IMAP connections of the payload's mailbox, logged in and held open."""
    endpoint = lab.imap["imaps"]
    context = ssl.create_default_context(cafile=str(lab.ca_file))
    writers: list[asyncio.StreamWriter] = []
    try:
        for number in range(count):
            reader, writer = await asyncio.open_connection(
                endpoint.address, endpoint.port, ssl=context, server_hostname=endpoint.host
            )
            writers.append(writer)
            await reader.readline()  # the greeting
            user, password = payload["imap_username"], payload["imap_password"]
            writer.write(f'h{number} LOGIN "{user}" "{password}"\r\n'.encode())
            while not (line := await reader.readline()).startswith(f"h{number} ".encode()):
                assert line, "Dovecot closed a holding connection"
            assert line.split()[1] == b"OK", line
        yield
    finally:
        for writer in writers:
            writer.transport.abort()


async def test_dovecots_connection_limit_is_not_a_wrong_password(lab: Any) -> None:
    payload = lab.account("bob@lab.test", imap="imaps")
    async with _logged_in(lab, payload, DOVECOT_USERIP_LIMIT):
        result = (await _run(lab, payload, imap.CHECKS)).check("imap.login")
    codes = [f.code for f in result.findings]
    assert codes == ["imap.connections.limit"], [f.evidence for f in result.findings]
    finding = result.findings[0]
    assert finding.severity is Severity.ERROR
    assert result.status is Status.ERROR
    # Dovecot 2.3 as Debian 12 ships it says [LIMIT]; older releases said [UNAVAILABLE]: both are rules.
    assert str(finding.evidence["reply"]).startswith("NO [LIMIT] Maximum number of connections")
    assert "mail_max_userip_connections" in str(finding.evidence["reply"])
    assert "platform's own workers" in (finding.fix or "")


# --- the TLS mode on the wrong port: real Postfix and Dovecot ------------------------------------

#: Issue 9 found the mismatch within 5 s with --timeout 10 (2 s of grace, then one handshake). Since
#: issue 17 a port other than 465/993 (the lab's are free loopback ports) is given the step timeout to
#: greet, less the probe's end, before it is sent a handshake: a slow but working server is never
#: bothered. So the step timeout here is 4 s: found after about 3 s, within the same bound.
MISMATCH_TIMEOUT = 4.0
MISMATCH_BOUND = 5.0


async def _mismatch(lab: Any, payload: dict[str, Any], specs: list[Any], name: str) -> tuple[Any, float]:
    start = time.perf_counter()
    report = await _run(lab, payload, specs, timeout=MISMATCH_TIMEOUT)
    elapsed = time.perf_counter() - start
    result = report.check(name)
    codes = [f.code for f in result.findings]
    assert codes == [f"{name.split('.')[0]}.tls.mode_mismatch"], result
    assert elapsed < MISMATCH_BOUND, f"took {elapsed:.2f} s with --timeout {MISMATCH_TIMEOUT:g}"
    return result.findings[0], elapsed


@pytest.mark.parametrize("host_style", ["name", "address"])
async def test_dovecot_implicit_tls_port_with_ssl_off(lab: Any, host_style: str) -> None:
    payload = lab.account(imap="imaps", host_style=host_style) | {"imap_use_ssl": False}
    finding, _ = await _mismatch(lab, payload, imap.CHECKS, "imap.login")
    assert finding.evidence["observed"] == "implicit"
    assert finding.fix == f"Turn imap_use_ssl on for port {lab.imap['imaps'].port}."


@pytest.mark.parametrize("host_style", ["name", "address"])
async def test_dovecot_starttls_port_with_ssl_on(lab: Any, host_style: str) -> None:
    payload = lab.account(imap="imap_starttls", host_style=host_style) | {"imap_use_ssl": True}
    finding, _ = await _mismatch(lab, payload, imap.CHECKS, "imap.login")
    assert finding.evidence["observed"] == "plain"
    assert str(finding.evidence["greeting"]).startswith("* OK")


@pytest.mark.parametrize("use_tls", [True, False], ids=["starttls", "tls-off"])
@pytest.mark.parametrize("host_style", ["name", "address"])
async def test_postfix_implicit_tls_port_configured_for_a_greeting(
    lab: Any, host_style: str, use_tls: bool
) -> None:
    payload = lab.account(smtp="submissions", host_style=host_style) | {"smtp_use_tls": use_tls}
    assert payload["smtp_port"] != 465
    finding, _ = await _mismatch(lab, payload, smtp.CHECKS, "smtp.login")
    assert finding.evidence["observed"] == "implicit"
    assert "465" in (finding.fix or "")


async def test_postfix_starttls_port_behind_465(lab: Any) -> None:
    endpoint = lab.smtp["submission"]
    try:
        forwarder = TcpForwarder(("127.0.0.1", 465), (endpoint.address, endpoint.port))
        await forwarder.__aenter__()
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.1:465 here ({exc})")
    try:
        payload = lab.account(smtp="submission", host_style="address") | {
            "smtp_port": 465,
            "smtp_use_tls": True,
        }
        finding, _ = await _mismatch(lab, payload, smtp.CHECKS, "smtp.login")
    finally:
        await forwarder.__aexit__(None, None, None)
    assert finding.evidence["observed"] == "plain"
    assert str(finding.evidence["greeting"]).startswith("220 ")
    assert "587" in (finding.fix or "")
