"""Reply classes and TLS modes against the lab's real Dovecot and Postfix (issue 9, sections 3 and 4).

Dovecot's per-mailbox connection limit (``mail_max_userip_connections``, 10 by default, left at its
default in the lab) is produced for real: the test holds that many logged-in connections of one
mailbox, then runs the check, which must say "other clients hold the mailbox", not "wrong password".
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest

from inboxcheck._models import Account, Report, Severity, Status
from inboxcheck._options import CheckOptions, parse_nameserver
from inboxcheck._runner import run_checks
from inboxcheck.checks.login import imap

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
