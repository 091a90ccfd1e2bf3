"""The lab's settings-discovery cases: nginx serving Thunderbird autoconfig files over HTTPS and
HTTP, RFC 6186/8314 SRV zones and provider MX zones.

Clients are raw sockets, ssl and dnspython against the lab only: every name is sent as SNI and
Host to 127.0.0.1, never resolved by the system.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import dns.resolver
import pytest
from cryptography import x509

from lab import Lab
from lab.web import AUTOCONFIG_PATH, WELL_KNOWN_PATH

pytestmark = pytest.mark.lab

TIMEOUT = 10.0
GOOD_SITES = ["lab.test", "ac-good.test"]


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def connect(lab: Lab, host: str, *, https: bool, verify: bool = True) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", lab.https_port if https else lab.http_port), timeout=TIMEOUT
    )
    if not https:
        return sock
    context = lab.ssl_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def request(sock: socket.socket, host: str, path: str) -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())


def parse(raw: bytes) -> Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(int(lines[0].split()[1]), headers, body)


def fetch(lab: Lab, host: str, path: str, *, https: bool = True, verify: bool = True) -> Response:
    with connect(lab, host, https=https, verify=verify) as sock:
        request(sock, host, path)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return parse(b"".join(chunks))


def config_url(domain: str, kind: str) -> tuple[str, str]:
    """(host, path) of a domain's autoconfig file: ``autoconfig`` or ``well-known`` location."""
    return (f"autoconfig.{domain}", AUTOCONFIG_PATH) if kind == "autoconfig" else (domain, WELL_KNOWN_PATH)


def servers(body: bytes) -> dict[str, list[tuple[str, int, str]]]:
    """{"imap": [(hostname, port, socketType)...], "smtp": [...]} from a config-v1.1.xml."""
    # The lab's own fixture files; the bomb case never goes through here.
    root = ET.fromstring(body)  # noqa: S314
    assert root.tag == "clientConfig"
    found: dict[str, list[tuple[str, int, str]]] = {"imap": [], "smtp": []}
    for tag in ("incomingServer", "outgoingServer"):
        for server in root.iter(tag):
            found[server.get("type", "")].append(
                (
                    server.findtext("hostname", ""),
                    int(server.findtext("port", "0")),
                    server.findtext("socketType", ""),
                )
            )
    return found


def access_log_line(lab: Lab, pattern: str) -> str:
    """The access log line matching ``pattern`` (nginx writes it as the request ends: poll)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        for line in lab.access_log.read_text().splitlines():
            if re.search(pattern, line):
                return line
        assert time.monotonic() < deadline, f"no access log line like {pattern!r}"
        time.sleep(0.05)


def smtp_greets(lab: Lab, port: int, *, implicit_tls: bool) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        if implicit_tls:
            with lab.ssl_context().wrap_socket(sock, server_hostname="mail.lab.test") as tls:
                return tls.recv(512)
        return sock.recv(512)


def resolver(lab: Lab) -> dns.resolver.Resolver:
    result = dns.resolver.Resolver(configure=False)
    result.nameservers = [lab.nameserver[0]]
    result.port = lab.nameserver[1]
    result.lifetime = 3.0
    return result


def srv(lab: Lab, name: str) -> list[tuple[int, str]]:
    return [(r.port, r.target.to_text()) for r in resolver(lab).resolve(name, "SRV")]


# ----------------------------------------------------------------------------- autoconfig over HTTP(S)


@pytest.mark.parametrize("kind", ["autoconfig", "well-known"])
@pytest.mark.parametrize("domain", GOOD_SITES)
def test_good_config_points_at_the_lab_servers(lab: Lab, domain: str, kind: str) -> None:
    host, path = config_url(domain, kind)
    response = fetch(lab, host, f"{path}?emailaddress=alice%40{domain}")
    assert response.status == 200
    assert response.headers["content-type"] == "application/xml"
    found = servers(response.body)
    assert found["imap"] == [
        ("mail.lab.test", lab.imap["imaps"].port, "SSL"),
        ("mail.lab.test", lab.imap["imap_starttls"].port, "STARTTLS"),
    ]
    assert found["smtp"] == [("mail.lab.test", lab.smtp["submission"].port, "STARTTLS")]
    assert smtp_greets(lab, found["smtp"][0][1], implicit_tls=False).startswith(b"220 mail.lab.test")
    line = access_log_line(
        lab, rf"https host={re.escape(host)} sni={re.escape(host)} \"GET {re.escape(path)}\?"
    )
    assert line.split('"')[-1].split()[0] == "200"


@pytest.mark.parametrize("domain", GOOD_SITES)
def test_each_location_exists_only_on_its_own_host(lab: Lab, domain: str) -> None:
    assert fetch(lab, domain, AUTOCONFIG_PATH).status == 404
    assert fetch(lab, f"autoconfig.{domain}", WELL_KNOWN_PATH).status == 404
    assert fetch(lab, "autoconfig.srv-inside.test", AUTOCONFIG_PATH, verify=False).status == 404


def test_plain_http_serves_the_same_file_and_logs_no_sni(lab: Lab) -> None:
    over_tls = fetch(lab, "autoconfig.ac-good.test", AUTOCONFIG_PATH)
    plain = fetch(lab, "autoconfig.ac-good.test", AUTOCONFIG_PATH, https=False)
    assert (plain.status, plain.body) == (200, over_tls.body)
    access_log_line(lab, r"^127\.0\.0\.1 \[\S+\] http host=autoconfig\.ac-good\.test sni=- \"GET ")


def test_web_certificate_names_the_autoconfig_hosts(lab: Lab) -> None:
    cert = x509.load_pem_x509_certificate((lab.workdir / "certs" / "web.pem").read_bytes())
    names = set(
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    )
    assert {"lab.test", "autoconfig.lab.test", "ac-good.test", "autoconfig.ac-good.test"} <= names
    assert "autoconfig.ac-httponly.test" not in names


def test_httponly_case_has_its_file_only_over_plain_http(lab: Lab) -> None:
    host = "autoconfig.ac-httponly.test"
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(lab, host, AUTOCONFIG_PATH)
    assert fetch(lab, host, AUTOCONFIG_PATH, verify=False).status == 404
    plain = fetch(lab, host, AUTOCONFIG_PATH, https=False)
    assert plain.status == 200
    assert servers(plain.body)["smtp"]
    assert fetch(lab, "ac-httponly.test", WELL_KNOWN_PATH, https=False).status == 200


def test_huge_case_is_over_a_megabyte_and_well_formed(lab: Lab) -> None:
    response = fetch(lab, "autoconfig.ac-huge.test", AUTOCONFIG_PATH)
    assert response.status == 200
    assert int(response.headers["content-length"]) == len(response.body) > 1_000_000
    assert servers(response.body)["imap"]


def test_slow_case_drips(lab: Lab) -> None:
    """After a second of reading, a file of about 1.5 kB at 100 bytes/s is far from complete."""
    full = fetch(lab, "autoconfig.ac-good.test", AUTOCONFIG_PATH).body
    with connect(lab, "autoconfig.ac-slow.test", https=True) as sock:
        request(sock, "autoconfig.ac-slow.test", AUTOCONFIG_PATH)
        received = sock.recv(65536)  # the first bytes come at once (the rate's first second)
        assert received.startswith(b"HTTP/1.1 200")
        sock.settimeout(0.2)
        stop_at = time.monotonic() + 1.0
        while time.monotonic() < stop_at:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            received += chunk
    body = parse(received).body
    assert len(body) < len(full) - 500
    assert b"</clientConfig>" not in body


def test_malformed_case_is_not_well_formed(lab: Lab) -> None:
    response = fetch(lab, "autoconfig.ac-malformed.test", AUTOCONFIG_PATH)
    assert response.status == 200
    assert response.body.startswith(b"<?xml")
    with pytest.raises(ET.ParseError):
        ET.fromstring(response.body)  # noqa: S314 - the lab's file, declared broken and without entities


def test_bomb_case_declares_a_billion_laughs(lab: Lab) -> None:
    response = fetch(lab, "ac-bomb.test", WELL_KNOWN_PATH)
    assert response.status == 200
    assert len(response.body) < 4096
    entities = dict(re.findall(rb'<!ENTITY (\w+) "([^"]*)">', response.body))
    sizes: dict[bytes, int] = {}
    for name, value in entities.items():  # declared in dependency order
        references = re.findall(rb"&(\w+);", value)
        sizes[name] = sum(sizes[ref] for ref in references) + len(re.sub(rb"&\w+;", b"", value))
    assert sizes[b"lol9"] >= 3 * 10**9
    assert b"&lol9;" in response.body


def test_port_case_has_implicit_tls_smtp_off_465(lab: Lab) -> None:
    found = servers(fetch(lab, "autoconfig.ac-port.test", AUTOCONFIG_PATH).body)
    assert found["smtp"] == [("mail.lab.test", lab.smtp["submissions"].port, "SSL")]
    assert found["smtp"][0][1] != 465
    assert smtp_greets(lab, found["smtp"][0][1], implicit_tls=True).startswith(b"220 mail.lab.test")


# ----------------------------------------------------------------------------- SRV and MX


def test_srv_targets_inside_the_domain(lab: Lab) -> None:
    target = "mail.srv-inside.test."
    assert srv(lab, "_submission._tcp.srv-inside.test") == [(lab.smtp["submission"].port, target)]
    assert srv(lab, "_submissions._tcp.srv-inside.test") == [(lab.smtp["submissions"].port, target)]
    assert srv(lab, "_imap._tcp.srv-inside.test") == [(lab.imap["imap_starttls"].port, target)]
    assert srv(lab, "_imaps._tcp.srv-inside.test") == [(lab.imap["imaps"].port, target)]
    assert [r.to_text() for r in resolver(lab).resolve(target, "A")] == ["127.0.0.1"]


def test_srv_targets_outside_the_domain_resolve_to_a_lab_endpoint(lab: Lab) -> None:
    target = "mail.elsewhere.test."
    assert srv(lab, "_submissions._tcp.srv-outside.test") == [(lab.smtp["submissions"].port, target)]
    assert srv(lab, "_imaps._tcp.srv-outside.test") == [(lab.imap["imaps"].port, target)]
    assert [r.to_text() for r in resolver(lab).resolve(target, "A")] == ["127.0.0.1"]
    greeting = smtp_greets(lab, lab.smtp["submissions"].port, implicit_tls=True)
    assert greeting.startswith(b"220 ")


def test_srv_dot_target_means_not_offered(lab: Lab) -> None:
    assert srv(lab, "_submission._tcp.srv-none.test") == [(0, ".")]
    assert srv(lab, "_imap._tcp.srv-none.test") == [(0, ".")]
    assert srv(lab, "_submissions._tcp.srv-none.test") == [
        (lab.smtp["submissions"].port, "mail.srv-none.test.")
    ]
    assert srv(lab, "_imaps._tcp.srv-none.test") == [(lab.imap["imaps"].port, "mail.srv-none.test.")]


def test_srv_and_autoconfig_disagree(lab: Lab) -> None:
    records = {
        "smtp": srv(lab, "_submission._tcp.srv-disagree.test"),
        "imap": srv(lab, "_imaps._tcp.srv-disagree.test"),
    }
    assert records == {
        "smtp": [(lab.smtp["submission"].port, "mail.srv-disagree.test.")],
        "imap": [(lab.imap["imaps"].port, "mail.srv-disagree.test.")],
    }
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver(lab).resolve("_submissions._tcp.srv-disagree.test", "SRV")
    found = servers(fetch(lab, "autoconfig.srv-disagree.test", AUTOCONFIG_PATH).body)
    assert found == {
        "smtp": [("mail.lab.test", lab.smtp["submissions"].port, "SSL")],
        "imap": [("mail.lab.test", lab.imap["imap_starttls"].port, "STARTTLS")],
    }


def test_provider_mx_domains(lab: Lab) -> None:
    google = sorted(r.to_text() for r in resolver(lab).resolve("disc-google.test", "MX"))
    assert google == ["1 aspmx.l.google.com.", "5 alt1.aspmx.l.google.com."]
    outlook = [r.to_text() for r in resolver(lab).resolve("disc-outlook.test", "MX")]
    assert outlook == ["0 disc-outlook-test.mail.protection.outlook.com."]


def test_info_names_the_web_server_and_the_dkim_key(lab: Lab) -> None:
    info = lab.info()
    assert info["web"] == {
        "https_port": lab.https_port,
        "http_port": lab.http_port,
        "access_log": str(lab.access_log),
    }
    assert info["dkim"]["record_name"] == lab.dkim_record_name
    assert lab.https_port != lab.http_port
