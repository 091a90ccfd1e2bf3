"""Tests of the lab itself, against the real servers: if these fail, no lab-based test means much.

Client side uses aiosmtplib, aioimaplib and dnspython; STARTTLS for IMAP and pre-login
capability checks use a few lines of raw asyncio, since aioimaplib has no STARTTLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import gc
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aioimaplib
import aiosmtplib
import dns.asyncresolver
import dns.resolver
import pytest
from cryptography import x509

from lab import Endpoint, Lab, LabError, LabUser
from lab.certs import GOOD_DNS_NAMES, WRONG_DNS_NAME

pytestmark = pytest.mark.lab

TIMEOUT = 5.0
# OpenSSL verify codes as exposed by ssl.SSLCertVerificationError.verify_code.
CERT_HAS_EXPIRED = 10
SELF_SIGNED = 18
HOSTNAME_MISMATCH = 62
BAD_CERTS = [("expired", CERT_HAS_EXPIRED), ("selfsigned", SELF_SIGNED), ("wrongname", HOSTNAME_MISMATCH)]


# ----------------------------------------------------------------------------- helpers


class RawImap:
    """Just enough IMAP over asyncio streams for greetings, CAPABILITY, STARTTLS and LOGIN."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._tag = 0

    async def readline(self) -> str:
        line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        return line.decode().rstrip("\r\n")

    async def command(self, text: str) -> tuple[list[str], str]:
        """Send a command; return its untagged lines and its tagged status line."""
        self._tag += 1
        tag = f"t{self._tag}"
        self.writer.write(f"{tag} {text}\r\n".encode())
        await self.writer.drain()
        untagged: list[str] = []
        while True:
            line = await self.readline()
            if line.startswith(f"{tag} "):
                return untagged, line[len(tag) + 1 :]
            untagged.append(line)

    async def capabilities(self) -> set[str]:
        untagged, status = await self.command("CAPABILITY")
        assert status.startswith("OK"), status
        caps = next(line for line in untagged if line.startswith("* CAPABILITY "))
        return set(caps.split()[2:])

    async def starttls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        _, status = await self.command("STARTTLS")
        assert status.startswith("OK"), status
        await asyncio.wait_for(self.writer.start_tls(context, server_hostname=server_hostname), TIMEOUT)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_imap(
    endpoint: Endpoint, context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[RawImap, str]]:
    """A raw IMAP connection and its greeting; implicit TLS when ``context`` is given."""
    if context is None:
        connecting = asyncio.open_connection(endpoint.address, endpoint.port)
    else:
        connecting = asyncio.open_connection(
            endpoint.address, endpoint.port, ssl=context, server_hostname=endpoint.host
        )
    reader, writer = await asyncio.wait_for(connecting, TIMEOUT)
    client = RawImap(reader, writer)
    try:
        yield client, await client.readline()
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def imap_ssl(lab: Lab, name: str = "imaps") -> AsyncIterator[Any]:
    """An aioimaplib session on an implicit-TLS endpoint, logged out and closed afterwards."""
    endpoint = lab.imap[name]
    client = aioimaplib.IMAP4_SSL(
        host=endpoint.address, port=endpoint.port, ssl_context=lab.ssl_context(), timeout=TIMEOUT
    )
    try:
        await client.wait_hello_from_server()
        yield client
    finally:
        with contextlib.suppress(asyncio.TimeoutError, aioimaplib.Abort, OSError):
            await client.logout()
        transport = client.protocol.transport
        if transport is not None:
            transport.close()


@contextlib.asynccontextmanager
async def smtp_client(
    endpoint: Endpoint, *, implicit: bool = False, context: ssl.SSLContext | None = None
) -> AsyncIterator[aiosmtplib.SMTP]:
    """An aiosmtplib client connected to ``endpoint`` by address; no automatic STARTTLS."""
    client = aiosmtplib.SMTP(
        hostname=endpoint.address,
        port=endpoint.port,
        use_tls=implicit,
        start_tls=False,
        tls_context=context,
        timeout=TIMEOUT,
    )
    await client.connect()
    try:
        yield client
    finally:
        if client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException):
                await client.quit()
        client.close()


async def smtp_starttls(client: aiosmtplib.SMTP, lab: Lab, endpoint: Endpoint) -> None:
    await client.ehlo()
    await client.starttls(server_hostname=endpoint.host, tls_context=lab.ssl_context())
    await client.ehlo()


def lab_process_ids(workdir: Path) -> list[int]:
    """Live processes that belong to a lab, found independently of the lab's own bookkeeping:
    their command line, environment or working directory mentions the lab's work dir."""
    marker = str(workdir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":
                continue
            blobs = [
                (entry / "cmdline").read_bytes(),
                (entry / "environ").read_bytes(),
                bytes((entry / "cwd").readlink()),
            ]
            if any(marker in blob for blob in blobs):
                found.append(int(entry.name))
    return found


@pytest.fixture
def failed_handshakes() -> Iterator[None]:
    """Collect what a failed TLS handshake leaves behind, here rather than in a later test.

    asyncio (3.11) does not close the transport of a handshake that fails; its ResourceWarning
    comes whenever the garbage collector next runs, and pytest turns it into a failure of
    whichever test that happens to be. The tests using this fixture fail handshakes on purpose.
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def short_workdir() -> Iterator[Path]:
    """A fresh dir with a short path (Dovecot's UNIX sockets live below it) that the servers'
    unprivileged users may traverse."""
    path = Path(tempfile.mkdtemp(prefix="iblt-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- SMTP


async def test_submission_requires_starttls_before_auth(lab: Lab) -> None:
    endpoint = lab.smtp["submission"]
    async with smtp_client(endpoint) as client:
        await client.ehlo()
        assert client.supports_extension("starttls")
        assert not client.supports_extension("auth")  # smtpd_tls_auth_only
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.mail("alice@lab.test")
        assert refused.value.code == 530  # "Must issue a STARTTLS command first"


async def test_submission_offers_auth_after_starttls_and_logs_in(lab: Lab) -> None:
    endpoint = lab.smtp["submission"]
    alice = lab.user("alice")
    async with smtp_client(endpoint) as client:
        await smtp_starttls(client, lab, endpoint)
        assert "plain" in client.server_auth_methods
        response = await client.login(alice.username, alice.password)
        assert response.code == 235


async def test_submission_rejects_a_wrong_password(lab: Lab) -> None:
    endpoint = lab.smtp["submission"]
    async with smtp_client(endpoint) as client:
        await smtp_starttls(client, lab, endpoint)
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as failure:
            await client.login("alice@lab.test", "not-the-password")
        assert failure.value.code == 535


async def test_submissions_is_implicit_tls_with_auth(lab: Lab) -> None:
    endpoint = lab.smtp["submissions"]
    bob = lab.user("bob")
    async with smtp_client(endpoint, implicit=True, context=lab.ssl_context()) as client:
        assert client.get_transport_info("sslcontext") is not None
        await client.ehlo()
        assert not client.supports_extension("starttls")
        response = await client.login(bob.username, bob.password)
        assert response.code == 235


@pytest.mark.parametrize(("name", "verify_code"), BAD_CERTS)
@pytest.mark.usefixtures("failed_handshakes")
async def test_smtp_bad_certificates_fail_verification(lab: Lab, name: str, verify_code: int) -> None:
    endpoint = lab.smtp[name]
    assert endpoint.tls == "starttls"
    async with smtp_client(endpoint) as client:
        await client.ehlo()
        assert client.supports_extension("starttls")
        with pytest.raises(ssl.SSLCertVerificationError) as failure:
            await client.starttls(server_hostname=endpoint.host, tls_context=lab.ssl_context())
        assert failure.value.verify_code == verify_code


async def test_nostarttls_offers_auth_in_the_clear(lab: Lab) -> None:
    endpoint = lab.smtp["nostarttls"]
    alice = lab.user("alice")
    async with smtp_client(endpoint) as client:
        await client.ehlo()
        assert not client.supports_extension("starttls")
        assert "plain" in client.server_auth_methods
        # The trap works: a careless client really could log in here.
        response = await client.login(alice.username, alice.password)
        assert response.code == 235


async def test_unknown_recipient_is_refused_at_rcpt(lab: Lab) -> None:
    endpoint = lab.smtp["submission"]
    alice = lab.user("alice")
    async with smtp_client(endpoint) as client:
        await smtp_starttls(client, lab, endpoint)
        await client.login(alice.username, alice.password)
        await client.mail(alice.email)
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as failure:
            await client.rcpt("nobody@lab.test")
        assert failure.value.code == 550


# ----------------------------------------------------------------------------- IMAP


async def test_imaps_login_with_right_and_wrong_password(lab: Lab) -> None:
    alice = lab.user("alice")
    started = time.monotonic()
    async with imap_ssl(lab) as client:
        wrong = await client.login(alice.username, "not-the-password")
        assert wrong.result == "NO"
    async with imap_ssl(lab) as client:
        right = await client.login(alice.username, alice.password)
        assert right.result == "OK"
    # auth_failure_delay = 0 and no auth penalty: a failure does not slow later logins.
    assert time.monotonic() - started < 1.5


async def test_imap_starttls_on_127_0_0_1_allows_login(lab: Lab) -> None:
    endpoint = lab.imap["imap_starttls"]
    bob = lab.user("bob")
    async with raw_imap(endpoint) as (client, greeting):
        assert greeting.startswith("* OK")
        caps = await client.capabilities()
        assert "STARTTLS" in caps
        assert "LOGINDISABLED" not in caps  # Dovecot trusts 127.0.0.1 -> 127.0.0.1
        await client.starttls(lab.ssl_context(), endpoint.host)
        _, status = await client.command(f'LOGIN "{bob.username}" "{bob.password}"')
        assert status.startswith("OK"), status


async def test_logindisabled_listener_refuses_login_before_starttls(lab: Lab) -> None:
    endpoint = lab.imap["logindisabled"]
    alice = lab.user("alice")
    assert (endpoint.address, endpoint.host) == ("127.0.0.2", "imap2.lab.test")
    async with raw_imap(endpoint) as (client, _greeting):
        caps = await client.capabilities()
        assert {"STARTTLS", "LOGINDISABLED"} <= caps
        assert not any(cap.startswith("AUTH=") for cap in caps)
        _, status = await client.command(f'LOGIN "{alice.username}" "{alice.password}"')
        assert status.startswith("NO"), status
        await client.starttls(lab.ssl_context(), endpoint.host)
        caps = await client.capabilities()
        assert "LOGINDISABLED" not in caps
        _, status = await client.command(f'LOGIN "{alice.username}" "{alice.password}"')
        assert status.startswith("OK"), status


@pytest.mark.parametrize(("name", "verify_code"), BAD_CERTS)
@pytest.mark.usefixtures("failed_handshakes")
async def test_imap_bad_certificates_fail_verification(lab: Lab, name: str, verify_code: int) -> None:
    endpoint = lab.imap[name]
    assert endpoint.tls == "implicit"
    with pytest.raises(ssl.SSLCertVerificationError) as failure:
        async with raw_imap(endpoint, lab.ssl_context()):
            pass
    assert failure.value.verify_code == verify_code


@pytest.mark.parametrize(("name", "verify_code"), BAD_CERTS)
@pytest.mark.usefixtures("failed_handshakes")
async def test_imap_bad_certificates_fail_after_starttls(lab: Lab, name: str, verify_code: int) -> None:
    endpoint = lab.imap[f"{name}_starttls"]
    async with raw_imap(endpoint) as (client, _greeting):
        with pytest.raises(ssl.SSLCertVerificationError) as failure:
            await client.starttls(lab.ssl_context(), endpoint.host)
    assert failure.value.verify_code == verify_code


async def test_bad_certificate_instances_share_users(lab: Lab) -> None:
    """Past the certificate (verification off), the extra Dovecots know the same users."""
    endpoint = lab.imap["expired"]
    careless = ssl.create_default_context()
    careless.check_hostname = False
    careless.verify_mode = ssl.CERT_NONE
    alice = lab.user("alice")
    async with raw_imap(endpoint, careless) as (client, _greeting):
        _, status = await client.command(f'LOGIN "{alice.username}" "{alice.password}"')
        assert status.startswith("OK"), status


# ----------------------------------------------------------------------------- mail flow


async def test_message_from_alice_reaches_bobs_inbox(lab: Lab) -> None:
    alice, bob = lab.user("alice"), lab.user("bob")
    subject = f"lab check {secrets.token_hex(8)}"
    message = email.message.EmailMessage()
    message["From"], message["To"], message["Subject"] = alice.email, bob.email, subject
    message.set_content("Hello Bob, this came through Postfix and Dovecot LMTP.\n")
    endpoint = lab.smtp["submission"]
    async with smtp_client(endpoint) as client:
        await smtp_starttls(client, lab, endpoint)
        await client.login(alice.username, alice.password)
        await client.send_message(message)

    async with imap_ssl(lab) as imap:
        assert (await imap.login(bob.username, bob.password)).result == "OK"
        deadline = time.monotonic() + 10
        while True:  # delivery is asynchronous (queue manager -> LMTP): poll, with a deadline
            await imap.select("INBOX")
            found = await imap.search(f'SUBJECT "{subject}"')
            ids = found.lines[0].split()
            if ids:
                break
            assert time.monotonic() < deadline, "message not delivered within 10 s"
            await asyncio.sleep(0.05)
        fetched = await imap.fetch(ids[-1].decode(), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert subject.encode() in b"".join(
            line for line in fetched.lines if isinstance(line, bytes | bytearray)
        )


# ----------------------------------------------------------------------------- DNS


async def test_nsd_answers_the_lab_zone(lab: Lab, lab_resolver: dns.asyncresolver.Resolver) -> None:
    mail = await lab_resolver.resolve("mail.lab.test", "A")
    assert [r.to_text() for r in mail] == ["127.0.0.1"]
    second = await lab_resolver.resolve("imap2.lab.test", "A")
    assert [r.to_text() for r in second] == ["127.0.0.2"]
    mx = await lab_resolver.resolve("lab.test", "MX")
    assert [(r.preference, r.exchange.to_text()) for r in mx] == [(10, "mail.lab.test.")]
    spf = await lab_resolver.resolve("lab.test", "TXT")
    assert [b"".join(r.strings) for r in spf] == [b"v=spf1 ip4:127.0.0.0/8 -all"]
    dmarc = await lab_resolver.resolve("_dmarc.lab.test", "TXT")
    assert b"".join(next(iter(dmarc)).strings).startswith(b"v=DMARC1; p=quarantine")
    dkim = await lab_resolver.resolve("lab._domainkey.lab.test", "TXT", tcp=True)
    record = b"".join(next(iter(dkim)).strings)
    assert record.startswith(b"v=DKIM1; k=rsa; p=MIIBIjAN")  # 2048-bit RSA SPKI
    srv = await lab_resolver.resolve("_submission._tcp.lab.test", "SRV")
    assert [(r.port, r.target.to_text()) for r in srv] == [(lab.smtp["submission"].port, "mail.lab.test.")]
    ptr = await lab_resolver.resolve("1.0.0.127.in-addr.arpa", "PTR")
    assert [r.to_text() for r in ptr] == ["mail.lab.test."]


async def test_missing_names_under_test_are_nxdomain(
    lab_resolver: dns.asyncresolver.Resolver,
) -> None:
    with pytest.raises(dns.resolver.NXDOMAIN):
        await lab_resolver.resolve("_dmarc.test", "TXT")
    with pytest.raises(dns.resolver.NXDOMAIN):
        await lab_resolver.resolve("missing.lab.test", "A")
    with pytest.raises(dns.resolver.NoAnswer):
        await lab_resolver.resolve("mail.lab.test", "AAAA")


# ----------------------------------------------------------------------------- certificates


def test_good_certificate_is_strict_and_names_every_lab_host(lab: Lab) -> None:
    context = lab.ssl_context()
    assert context.verify_flags & ssl.VERIFY_X509_STRICT
    pem = (lab.workdir / "certs" / "good.pem").read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == set(GOOD_DNS_NAMES)
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "127.0.0.2"}
    for extension in (
        x509.BasicConstraints,
        x509.KeyUsage,
        x509.ExtendedKeyUsage,
        x509.AuthorityKeyIdentifier,
        x509.SubjectKeyIdentifier,
    ):
        cert.extensions.get_extension_for_class(extension)


def test_bad_certificates_are_bad_in_the_intended_way(lab: Lab) -> None:
    certs = lab.workdir / "certs"

    def load(name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((certs / f"{name}.pem").read_bytes())

    expired, selfsigned, wrong = load("expired"), load("selfsigned"), load("wrongname")
    ca = x509.load_pem_x509_certificate(lab.ca_file.read_bytes())
    now = time.time()
    assert expired.not_valid_after_utc.timestamp() < now
    assert expired.issuer == ca.subject
    assert selfsigned.issuer == selfsigned.subject != ca.subject
    san = wrong.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [WRONG_DNS_NAME]


# ----------------------------------------------------------------------------- API


def test_user_repr_hides_the_password(lab: Lab) -> None:
    alice = lab.user("alice")
    assert isinstance(alice, LabUser)
    assert alice.password not in repr(alice)
    assert len(alice.password) >= 20


def test_info_is_json_without_passwords(lab: Lab) -> None:
    text = json.dumps(lab.info())
    for user in lab.users.values():
        assert user.password not in text
    with_passwords = lab.info(with_passwords=True)
    assert with_passwords["users"]["bob@lab.test"]["password"] == lab.user("bob").password
    assert set(lab.smtp) == {"submission", "submissions", "expired", "selfsigned", "wrongname", "nostarttls"}
    assert {"imaps", "imap_starttls", "logindisabled", "expired", "selfsigned", "wrongname"} <= set(lab.imap)


def test_account_payload(lab: Lab) -> None:
    account = lab.account("bob@lab.test", smtp="submissions", imap="imap_starttls")
    bob = lab.user("bob")
    assert account == {
        "email_address": "bob@lab.test",
        "display_name": bob.display_name,
        "inbox_type": "CUSTOM_SMTP",
        "smtp_host": "mail.lab.test",
        "smtp_port": lab.smtp["submissions"].port,
        "smtp_username": bob.username,
        "smtp_password": bob.password,
        "smtp_use_tls": True,
        "imap_host": "mail.lab.test",
        "imap_port": lab.imap["imap_starttls"].port,
        "imap_username": bob.username,
        "imap_password": bob.password,
        "imap_use_ssl": False,
        "daily_limit": 25,
    }
    plain = lab.account(smtp="nostarttls", imap="imaps", host_style="address")
    assert (plain["smtp_use_tls"], plain["imap_use_ssl"]) == (False, True)
    assert plain["smtp_host"] == "127.0.0.1"
    with pytest.raises(LabError, match="no SMTP endpoint"):
        lab.account(smtp="nope")


# ----------------------------------------------------------------------------- lifecycle


def test_stop_leaves_no_process_and_is_idempotent() -> None:
    """A lab of its own (not the session's): start, then stop twice."""
    lab = Lab(keep_workdir=True)
    lab.start()
    workdir = lab.workdir
    try:
        running = lab.pids()
        assert all(running[name] for name in ("postfix", "dovecot-main", "nsd"))
        assert set(lab_process_ids(workdir)) >= {pid for pids in running.values() for pid in pids}
        started = time.monotonic()
        lab.stop()
        assert time.monotonic() - started < 5
        assert lab_process_ids(workdir) == []
        assert all(not pids for pids in lab.pids().values())
        lab.stop()
    finally:
        lab.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_broken_zone_fails_start_clearly_and_cleans_up(short_workdir: Path, tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "broken.test.zone").write_text("$TTL 300\n@ IN SOA ns1 host 1 2 3 4\nwww IN A 999.1.1.1\n")
    lab = Lab(workdir=short_workdir / "lab", zone_dirs=[zones])
    with pytest.raises(LabError, match=r"broken\.test\.zone") as failure:
        lab.start()
    # NSD's own words, e.g. "invalid IPv4 address '999.1.1.1'".
    assert "999.1.1.1" in str(failure.value)
    assert lab_process_ids(short_workdir) == []
    lab.stop()


def test_cli_exec_passes_the_info_file_and_the_exit_status() -> None:
    """``python -m lab exec -- CMD``: CMD sees a private info file with passwords, its exit
    status comes back, and the lab is gone afterwards."""
    probe = (
        "import json, os, stat, sys\n"
        "path = os.environ['INBOXCHECK_LAB_JSON']\n"
        "info = json.load(open(path))\n"
        "print(json.dumps({'mode': stat.S_IMODE(os.stat(path).st_mode), 'workdir': info['workdir'],"
        " 'has_password': bool(info['users']['alice@lab.test']['password'])}))\n"
        "sys.exit(7)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "lab", "exec", "--", sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 7, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["mode"] == 0o600
    assert seen["has_password"]
    workdir = Path(seen["workdir"])
    assert not workdir.exists()
    assert lab_process_ids(workdir) == []


def test_watchdog_cleans_up_when_the_owner_is_killed() -> None:
    """SIGKILL leaves no chance to call stop(): the lab's watchdog ends the servers instead."""
    code = (
        "import sys, time\n"
        "from lab import Lab\n"
        "lab = Lab()\n"
        "lab.start()\n"
        "print(lab.workdir, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        workdir = Path(owner.stdout.readline().strip())
        assert lab_process_ids(workdir)
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    deadline = time.monotonic() + 10
    while lab_process_ids(workdir) or workdir.exists():  # the watchdog needs a moment: poll
        assert time.monotonic() < deadline, f"lab in {workdir} still there: {lab_process_ids(workdir)}"
        time.sleep(0.05)
