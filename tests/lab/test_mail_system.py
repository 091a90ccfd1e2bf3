"""The lab as a small real mail system: DKIM-signed submission, a second unsigned domain, local
delivery, special-use folders, the global junk rule, blocklist zones and reverse DNS.

Plain stdlib clients (smtplib, imaplib) and dnspython against the lab's NSD: the inboxcheck
features these pieces exist for are written later, so nothing here goes through inboxcheck.
"""

from __future__ import annotations

import base64
import email.message
import hashlib
import imaplib
import os
import re
import secrets
import shutil
import signal
import smtplib
import time
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from lab import Lab
from tests.lab.test_lab import lab_process_ids

pytestmark = pytest.mark.lab

TIMEOUT = 10.0


# ----------------------------------------------------------------------------- helpers


def resolver(lab: Lab) -> dns.resolver.Resolver:
    """A resolver that asks only the lab's NSD (TCP, since the DKIM record is over 512 bytes)."""
    result = dns.resolver.Resolver(configure=False)
    result.nameservers = [lab.nameserver[0]]
    result.port = lab.nameserver[1]
    result.lifetime = 3.0
    return result


def answer(lab: Lab, name: str, rdtype: str) -> list[str]:
    return [r.to_text() for r in resolver(lab).resolve(name, rdtype, tcp=True)]


def txt(lab: Lab, name: str) -> list[bytes]:
    return [b"".join(r.strings) for r in resolver(lab).resolve(name, "TXT", tcp=True)]


def rcode(lab: Lab, name: str, rdtype: str = "A") -> int:
    query = dns.message.make_query(name, rdtype)
    response = dns.query.tcp(query, lab.nameserver[0], port=lab.nameserver[1], timeout=3.0)
    return int(response.rcode())


def submit(
    lab: Lab, sender: str, recipient: str, subject: str, *, headers: dict[str, str] | None = None
) -> None:
    """Send one message over the STARTTLS submission port, logged in as ``sender``."""
    user = lab.user(sender)
    message = email.message.EmailMessage()
    message["From"], message["To"], message["Subject"] = user.email, recipient, subject
    message["Message-ID"] = f"<{secrets.token_hex(8)}@lab.test>"
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content("Sent through the lab's Postfix, OpenDKIM and Dovecot LMTP.\n")
    with smtplib.SMTP("127.0.0.1", lab.smtp["submission"].port, timeout=TIMEOUT) as client:
        client.starttls(context=lab.ssl_context())
        client.login(user.username, user.password)
        client.send_message(message)


def imap_login(lab: Lab, address: str) -> imaplib.IMAP4_SSL:
    user = lab.user(address)
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", lab.imap["imaps"].port, ssl_context=lab.ssl_context(), timeout=TIMEOUT
    )
    client.login(user.username, user.password)
    return client


def wait_for_message(client: imaplib.IMAP4_SSL, folder: str, subject: str) -> bytes:
    """The raw message with ``subject`` in ``folder``, polling until delivery (asynchronous)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        client.select(folder, readonly=True)
        _, found = client.search(None, "SUBJECT", f'"{subject}"')
        ids = found[0].split()
        if ids:
            _, data = client.fetch(ids[-1].decode(), "(BODY.PEEK[])")
            raw = data[0]
            assert isinstance(raw, tuple)
            return raw[1]
        assert time.monotonic() < deadline, f"{subject!r} not in {folder} within {TIMEOUT} s"
        time.sleep(0.05)


def count_messages(client: imaplib.IMAP4_SSL, folder: str, subject: str) -> int:
    client.select(folder, readonly=True)
    _, found = client.search(None, "SUBJECT", f'"{subject}"')
    return len(found[0].split())


def header_fields(raw: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """(name, raw field including folding and CRLF) in order, and the body."""
    head, _, body = raw.partition(b"\r\n\r\n")
    fields: list[tuple[str, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, text = fields[-1]
            fields[-1] = (name, text + line + b"\r\n")
        else:
            fields.append((line.split(b":", 1)[0].decode().strip().lower(), line + b"\r\n"))
    return fields, body


def relaxed_header(field: bytes) -> bytes:
    """RFC 6376 section 3.4.2."""
    name, _, value = field.partition(b":")
    value = re.sub(rb"[ \t]+", b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.strip().lower() + b":" + value


def simple_body(body: bytes) -> bytes:
    """RFC 6376 section 3.4.3: trailing empty lines reduced to one CRLF."""
    return body.rstrip(b"\r\n") + b"\r\n"


def dkim_tags(field: bytes) -> dict[str, str]:
    value = field.partition(b":")[2].decode()
    tags = {}
    for part in value.split(";"):
        if "=" in part:
            key, _, val = part.partition("=")
            tags[key.strip()] = re.sub(r"\s+", "", val)
    return tags


def verify_dkim(raw: bytes, public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """Check the message's DKIM signature (rsa-sha256, relaxed/simple, as the lab signs) by hand;
    return its tags. Raises on a bad body hash or signature."""
    fields, body = header_fields(raw)
    signatures = [text for name, text in fields if name == "dkim-signature"]
    assert len(signatures) == 1, signatures
    signature = signatures[0]
    tags = dkim_tags(signature)
    assert (tags["a"], tags["c"]) == ("rsa-sha256", "relaxed/simple")
    assert base64.b64encode(hashlib.sha256(simple_body(body)).digest()).decode() == tags["bh"]
    unused = [(name, text) for name, text in fields if text is not signature]
    signed = b""
    for wanted in tags["h"].lower().split(":"):
        # The last unused instance of each named field, from the bottom; a name listed more often
        # than it occurs (over-signing) adds nothing.
        for index in range(len(unused) - 1, -1, -1):
            if unused[index][0] == wanted:
                signed += relaxed_header(unused.pop(index)[1]) + b"\r\n"
                break
    blanked = re.sub(rb"(?<![a-z])b=[^;]*", b"b=", signature)
    signed += relaxed_header(blanked)
    public_key.verify(base64.b64decode(tags["b"]), signed, padding.PKCS1v15(), hashes.SHA256())
    return tags


def published_key(lab: Lab, name: str) -> rsa.RSAPublicKey:
    record = txt(lab, name)[0].decode()
    p = dict(part.strip().split("=", 1) for part in record.split(";"))["p"]
    key = serialization.load_der_public_key(base64.b64decode(p))
    assert isinstance(key, rsa.RSAPublicKey)
    return key


@pytest.fixture
def subject() -> str:
    return f"lab mail {secrets.token_hex(8)}"


# ----------------------------------------------------------------------------- DKIM and delivery


def test_lab_test_mail_to_self_arrives_signed_with_the_published_key(lab: Lab, subject: str) -> None:
    submit(lab, "alice", "alice@lab.test", subject)
    with imap_login(lab, "alice") as client:
        raw = wait_for_message(client, "INBOX", subject)
    tags = verify_dkim(raw, published_key(lab, lab.dkim_record_name))
    assert (tags["d"], tags["s"]) == ("lab.test", lab.dkim_selector)
    assert lab.dkim_record_name == f"{lab.dkim_selector}._domainkey.lab.test"
    assert "from" in tags["h"].lower().split(":")


def test_a_changed_body_fails_the_hand_verifier(lab: Lab, subject: str) -> None:
    """The verifier above must be able to say no, or the signing test proves nothing."""
    submit(lab, "bob", "bob@lab.test", subject)
    with imap_login(lab, "bob") as client:
        raw = wait_for_message(client, "INBOX", subject)
    key = published_key(lab, lab.dkim_record_name)
    verify_dkim(raw, key)
    with pytest.raises(AssertionError):
        verify_dkim(raw.replace(b"Sent through", b"Sent around"), key)
    with pytest.raises(InvalidSignature):
        verify_dkim(re.sub(rb"Subject: lab mail", b"Subject: lab mall", raw), key)


def test_unsigned_domain_mail_arrives_without_a_signature(lab: Lab, subject: str) -> None:
    submit(lab, "carol@unsigned.test", "carol@unsigned.test", subject)
    with imap_login(lab, "carol@unsigned.test") as client:
        raw = wait_for_message(client, "INBOX", subject)
    fields, _ = header_fields(raw)
    assert "dkim-signature" not in {name for name, _ in fields}
    assert answer(lab, "unsigned.test", "MX") == ["10 mail.unsigned.test."]
    assert answer(lab, "mail.unsigned.test", "A") == ["127.0.0.1"]
    assert txt(lab, "unsigned.test") == [b"v=spf1 ip4:127.0.0.0/8 -all"]
    assert rcode(lab, f"{lab.dkim_selector}._domainkey.unsigned.test", "TXT") == dns.rcode.NXDOMAIN


def test_published_dkim_record_is_the_signing_key(lab: Lab) -> None:
    assert lab.dkim_key is not None
    assert txt(lab, lab.dkim_record_name) == [lab.dkim_key.record.encode()]
    private = serialization.load_pem_private_key(lab.dkim_key.private_key_pem, None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048
    assert b"PRIVATE" not in repr(lab.dkim_key).encode()
    assert published_key(lab, lab.dkim_record_name).public_numbers() == private.public_key().public_numbers()


# ----------------------------------------------------------------------------- folders and sieve


def test_special_use_folders_exist(lab: Lab) -> None:
    with imap_login(lab, "bob") as client:
        status, lines = client.list()
    assert status == "OK"
    listing = b"\n".join(line for line in lines if isinstance(line, bytes))
    assert re.search(rb'\\Junk\b.*"Junk"|\\Junk\b.* Junk', listing), listing
    assert re.search(rb'\\Sent\b.*"Sent"|\\Sent\b.* Sent', listing), listing


def test_junk_marker_files_into_junk_and_nothing_else_does(lab: Lab, subject: str) -> None:
    junk, clean = f"{subject} junk", f"{subject} clean"
    submit(lab, "alice", "bob@lab.test", junk, headers={"X-Lab-Junk": "yes"})
    submit(lab, "alice", "bob@lab.test", clean, headers={"X-Lab-Junk": "no"})
    with imap_login(lab, "bob") as client:
        wait_for_message(client, "Junk", junk)
        wait_for_message(client, "INBOX", clean)
        assert count_messages(client, "INBOX", junk) == 0
        assert count_messages(client, "Junk", clean) == 0


# ----------------------------------------------------------------------------- DNS: blocklists, PTR


def test_ip_blocklist_answers(lab: Lab) -> None:
    assert answer(lab, "2.0.0.127.zen.bl.test", "A") == ["127.0.0.2"]
    assert txt(lab, "2.0.0.127.zen.bl.test")[0].startswith(b"Listed by the inboxcheck lab")
    assert answer(lab, "254.0.0.127.zen.bl.test", "A") == ["127.255.255.254"]
    assert answer(lab, "255.0.0.127.zen.bl.test", "A") == ["127.255.255.255"]
    assert answer(lab, "252.0.0.127.zen.bl.test", "A") == ["127.255.255.252"]
    # The lab's own address is clean: NXDOMAIN, not REFUSED (the zone's apex is served).
    assert rcode(lab, "1.0.0.127.zen.bl.test") == dns.rcode.NXDOMAIN


def test_domain_blocklist_answers(lab: Lab) -> None:
    assert answer(lab, "dbltest.com.dbl.bl.test", "A") == ["127.0.1.2"]
    assert answer(lab, "spammy.test.dbl.bl.test", "A") == ["127.0.1.2"]
    assert answer(lab, "refused.test.dbl.bl.test", "A") == ["127.255.255.254"]
    assert rcode(lab, "lab.test.dbl.bl.test") == dns.rcode.NXDOMAIN


def test_smtp_host_has_forward_confirmed_reverse_dns(lab: Lab) -> None:
    with smtplib.SMTP("127.0.0.1", lab.smtp["submission"].port, timeout=TIMEOUT) as client:
        code, _ = client.ehlo("client.lab.test")
        banner_host = client.ehlo_resp.split()[0].decode() if client.ehlo_resp else ""
    assert code == 250
    assert banner_host == "mail.lab.test"
    assert answer(lab, "1.0.0.127.in-addr.arpa", "PTR") == ["mail.lab.test."]
    assert answer(lab, "mail.lab.test", "A") == ["127.0.0.1"]


def test_badptr_host_has_a_ptr_that_does_not_lead_back(lab: Lab) -> None:
    assert answer(lab, "badptr.lab.test", "A") == ["127.0.0.3"]
    assert answer(lab, "3.0.0.127.in-addr.arpa", "PTR") == ["dynamic-127-0-0-3.isp.test."]
    assert rcode(lab, "dynamic-127-0-0-3.isp.test") == dns.rcode.NXDOMAIN


# ----------------------------------------------------------------------------- a lab of its own


@pytest.fixture
def own_lab() -> Iterator[Lab]:
    lab = Lab(keep_workdir=True)
    lab.start()
    try:
        yield lab
    finally:
        workdir = lab.workdir
        lab.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_dead_milter_tempfails_and_stop_leaves_no_process(own_lab: Lab, subject: str) -> None:
    running = own_lab.pids()
    assert running["opendkim"] and running["nginx"]
    workdir = own_lab.workdir
    assert set(lab_process_ids(workdir)) >= {pid for pids in running.values() for pid in pids}

    for pid in running["opendkim"]:  # the lab's own live child: no stale pid
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(smtplib.SMTPResponseException) as refused:
        submit(own_lab, "alice", "alice@lab.test", subject)
    assert 400 <= refused.value.smtp_code < 500, refused.value

    own_lab.stop()
    assert lab_process_ids(workdir) == []
    assert all(not pids for pids in own_lab.pids().values())
