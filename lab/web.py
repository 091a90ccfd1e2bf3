"""nginx serving Thunderbird autoconfig files for the lab's discovery test domains."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.certs import CertPair
from lab.procs import ForegroundDaemon, find_binary, log_tail
from lab.templates import render, render_file

AUTOCONFIG_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "autoconfig"
#: Where Thunderbird looks: on ``autoconfig.DOMAIN`` and under ``DOMAIN``'s well-known path.
AUTOCONFIG_PATH = "/mail/config-v1.1.xml"
WELL_KNOWN_PATH = "/.well-known/autoconfig/mail/config-v1.1.xml"
#: Domains whose file is sent at this many bytes per second.
SLOW_RATE = 100
SLOW_DOMAINS = ("ac-slow.test",)
#: Domains whose file exists only over plain HTTP (their names are not in the web certificate).
PLAIN_ONLY_DOMAINS = ("ac-httponly.test",)
#: Size of the padding comment of the ``{{huge_padding}}`` placeholder (ac-huge.test): over 1 MB.
HUGE_PADDING = 1_200_000


@dataclass(frozen=True)
class Site:
    """One discovery domain with an autoconfig file (``fixtures/autoconfig/DOMAIN.xml``)."""

    domain: str
    source: Path

    @property
    def hosts(self) -> tuple[str, str]:
        return (f"autoconfig.{self.domain}", self.domain)


def discover_sites(directory: Path = AUTOCONFIG_DIR) -> list[Site]:
    """Every ``DOMAIN.xml`` of the autoconfig fixtures."""
    return [Site(path.name.removesuffix(".xml"), path) for path in sorted(directory.glob("*.xml"))]


def tls_names(sites: list[Site]) -> tuple[str, ...]:
    """Names the web certificate must carry: both hosts of every site served over HTTPS."""
    return tuple(host for site in sites if site.domain not in PLAIN_ONLY_DOMAINS for host in site.hosts)


def build_webroot(www: Path, sites: list[Site], values: Mapping[str, object]) -> None:
    """Render each site's file (lab ports through placeholders) to both of its URLs."""
    values = {**values, "huge_padding": "x" * HUGE_PADDING}
    for site in sites:
        body = render(site.source.read_text(), values, source=str(site.source)).encode()
        autoconfig_host, bare_host = site.hosts
        first = www / autoconfig_host / AUTOCONFIG_PATH.lstrip("/")
        second = www / bare_host / WELL_KNOWN_PATH.lstrip("/")
        for target in (first, second):
            target.parent.mkdir(parents=True, exist_ok=True)
        first.write_bytes(body)
        os.link(first, second)  # one copy of the 1.2 MB case is enough


def _map_lines(hosts: list[str], value: object) -> str:
    return "\n".join(f"    {host} {value};" for host in hosts)


class WebServer:
    """``nginx -c CONF`` in the foreground (``daemon off``), the lab's child in its own session."""

    def __init__(self, root: Path, log_dir: Path) -> None:
        self.root = root
        self.www = root / "www"
        self.config_file = root / "nginx.conf"
        self.access_log = log_dir / "nginx-access.log"
        self.error_log = log_dir / "nginx-error.log"
        self.daemon = ForegroundDaemon("nginx", log_dir / "nginx.stderr")

    def configure(
        self,
        *,
        https_port: int,
        http_port: int,
        cert: CertPair,
        sites: list[Site],
        values: Mapping[str, object],
    ) -> None:
        """Write the web root and nginx.conf."""
        (self.root / "tmp").mkdir(parents=True)
        build_webroot(self.www, sites, values)
        slow = [host for site in sites if site.domain in SLOW_DOMAINS for host in site.hosts]
        plain = [host for site in sites if site.domain in PLAIN_ONLY_DOMAINS for host in site.hosts]
        config = render_file(
            "nginx.conf.tmpl",
            {
                "root": self.root,
                "www": self.www,
                "error_log": self.error_log,
                "access_log": self.access_log,
                "https_port": https_port,
                "http_port": http_port,
                "cert": cert.cert,
                "key": cert.key,
                "slow_hosts": _map_lines(slow, SLOW_RATE),
                "plain_only_hosts": _map_lines(plain, 1),
            },
        )
        self.config_file.write_text(config)

    def start(self) -> None:
        """Launch nginx; ``-e`` keeps even its first error messages out of /var/log."""
        argv = [
            find_binary("nginx"),
            "-e",
            str(self.error_log),
            "-p",
            str(self.root),
            "-c",
            str(self.config_file),
        ]
        self.daemon.start(argv, cwd=self.root)

    def logs(self) -> str:
        """Tails of nginx's error log and stderr."""
        return f"{log_tail(self.daemon.output_file, 10)}\n{log_tail(self.error_log)}"
