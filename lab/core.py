"""The :class:`Lab`: real Postfix, Dovecot, NSD, OpenDKIM and nginx on loopback, for inboxcheck's tests.

One start makes a temp work dir, fresh certificates, random user passwords and free ports,
renders the configs, starts every server in its own session and waits until each one answers.
One stop ends every process it started (and only those) and removes the work dir.
"""

from __future__ import annotations

import atexit
import functools
import grp
import os
import pwd
import secrets
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from lab.certs import LabCerts, make_lab_certs
from lab.dkim import DkimKey, OpenDkim, make_dkim_key
from lab.dovecot import DovecotInstance, ImapListener, MailStore, write_users_file
from lab.host import check_workdir, make_workdir, preflight
from lab.layout import (
    DKIM_SELECTOR,
    DOMAIN,
    DOVECOT_CERTS,
    FIXTURE_ZONES,
    IMAP_LISTENERS,
    MAIL_HOST,
    SECOND_HOST,
    SMTP_LISTENERS,
    UNSIGNED_DOMAIN,
)
from lab.nsd import NsdServer, Zone, check_zones, discover_zones, prepare_zones
from lab.oauth_double import OAuthDouble
from lab.ports import free_ports
from lab.postfix import PostfixInstance, SmtpListener
from lab.procs import (
    ForegroundDaemon,
    SessionLeader,
    process_name,
    sweep_lab_processes,
    tcp_listening,
    terminate_sessions,
    wait_until,
)
from lab.types import Endpoint, LabError, LabStartError, LabUser
from lab.watchdog import dismiss_watchdog, start_watchdog
from lab.web import WebServer, discover_sites, tls_names

_READY_TIMEOUT = 20.0


class Lab:
    """Real mail and DNS servers on loopback, for one test session or one benchmark.

    Use as a context manager, or call :meth:`start` and :meth:`stop` (which is idempotent and
    safe after a half-failed start). Needs root and the Debian packages from
    ``scripts/install-system-deps.sh``.
    """

    def __init__(
        self,
        *,
        workdir: Path | None = None,
        zone_dirs: Sequence[Path] = (),
        users: Sequence[str] = ("alice", "bob"),
        unsigned_users: Sequence[str] = ("carol",),
        keep_workdir: bool = False,
    ) -> None:
        self._requested_workdir = workdir
        self._zone_dirs = [FIXTURE_ZONES, *zone_dirs]
        self._user_names = list(users)
        self._unsigned_user_names = list(unsigned_users)
        self._keep_workdir = keep_workdir
        self._owns_workdir = False
        self._workdir: Path | None = None
        self._certs: LabCerts | None = None
        self._postfix: PostfixInstance | None = None
        self._dovecots: list[DovecotInstance] = []
        self._nsd: NsdServer | None = None
        self._dkim: OpenDkim | None = None
        self._web: WebServer | None = None
        #: The OAuth2 double: Dovecot's token introspection, and a refresh endpoint for tests.
        self.oauth: OAuthDouble | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._zones: list[Zone] = []
        self.users: dict[str, LabUser] = {}
        self.smtp: dict[str, Endpoint] = {}
        self.imap: dict[str, Endpoint] = {}
        self.nameserver: tuple[str, int] = ("127.0.0.1", 0)
        #: The selector OpenDKIM signs lab.test mail with; the key is new at every start.
        self.dkim_selector = DKIM_SELECTOR
        self.dkim_key: DkimKey | None = None
        #: nginx's loopback ports (HTTPS with the lab CA's web certificate; plain HTTP).
        self.https_port = 0
        self.http_port = 0
        self.started = False

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Bring every server up and wait until each answers; on any failure, stop and raise."""
        if self.started:
            return
        preflight()
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.started = True

    def stop(self) -> None:
        """End every lab process (SIGTERM, then SIGKILL after a short grace) and clean up."""
        atexit.unregister(self.stop)
        survivors: list[int] = []
        dkim = self._dkim.daemon.leader() if self._dkim is not None else None
        if dkim is not None:
            # OpenDKIM takes several seconds to exit on SIGTERM and keeps nothing worth saving.
            survivors += terminate_sessions([dkim], grace=0.0)
        leaders = [leader for leader in self._leaders() if leader is not None]
        survivors += terminate_sessions(leaders, grace=3.0)
        if self._workdir is not None:
            # Safety net for a half-failed start: anything still running in the work dir.
            watchdog = [self._watchdog.pid] if self._watchdog is not None else []
            survivors += sweep_lab_processes(self._workdir, grace=1.0, exclude=watchdog)
        if self._postfix is not None:
            self._postfix.forget()
        for daemon in self._daemons():
            daemon.reap()
        self._dismiss_watchdog()
        if self.oauth is not None:
            self.oauth.stop()
            self.oauth = None
        self.started = False
        if survivors:
            names = ", ".join(f"{pid} ({process_name(pid)})" for pid in survivors)
            raise LabError(f"lab processes survived SIGKILL: {names}")
        self._remove_workdir()

    def _daemons(self) -> list[ForegroundDaemon]:
        """The servers the lab runs as its own children (Dovecot instances, NSD, OpenDKIM, nginx)."""
        daemons = [instance.daemon for instance in self._dovecots]
        for server in (self._nsd, self._dkim, self._web):
            if server is not None:
                daemons.append(server.daemon)
        return daemons

    def _leaders(self) -> list[SessionLeader | None]:
        postfix = self._postfix.leader() if self._postfix is not None else None
        return [postfix, *(daemon.leader() for daemon in self._daemons())]

    # ----------------------------------------------------------------- public helpers

    @property
    def workdir(self) -> Path:
        """The lab's temp dir (certs, configs, logs, Maildirs)."""
        if self._workdir is None:
            raise LabError("the lab is not started")
        return self._workdir

    @property
    def ca_file(self) -> Path:
        """PEM of the lab CA that issued the good, expired and wrong-name certificates."""
        if self._certs is None:
            raise LabError("the lab is not started")
        return self._certs.ca_file

    @property
    def access_log(self) -> Path:
        """nginx's access log: one line per request with ``host=``, ``sni=``, request and status."""
        if self._web is None:
            raise LabError("the lab is not started")
        return self._web.access_log

    @property
    def dkim_record_name(self) -> str:
        """Where the signing key's public half is published (``labsign._domainkey.lab.test``)."""
        return f"{self.dkim_selector}._domainkey.{DOMAIN}"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only the lab CA, hostname checks on, and as strict as
        Python 3.13's default (``VERIFY_X509_STRICT``) on every Python version."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        return context

    def user(self, name: str = "alice") -> LabUser:
        """A lab user by address or local part (``"bob"`` -> ``bob@lab.test``; users of
        ``unsigned.test`` by full address)."""
        email = name if "@" in name else f"{name}@{DOMAIN}"
        try:
            return self.users[email]
        except KeyError:
            raise LabError(f"no lab user {email!r}; users: {sorted(self.users)}") from None

    def account(
        self,
        user: str = "alice@lab.test",
        smtp: str = "submission",
        imap: str = "imaps",
        *,
        host_style: Literal["name", "address"] = "name",
    ) -> dict[str, Any]:
        """An account payload in the platform's format for ``user`` on the named endpoints.

        ``host_style="address"`` puts IPs instead of lab names, for clients that cannot use the
        lab's resolver (the good certificate names 127.0.0.1 and 127.0.0.2 too).
        """
        lab_user = self.user(user)
        smtp_ep = _lookup(self.smtp, smtp, "SMTP")
        imap_ep = _lookup(self.imap, imap, "IMAP")

        def host(endpoint: Endpoint) -> str:
            return endpoint.host if host_style == "name" else endpoint.address

        return {
            "email_address": lab_user.email,
            "display_name": lab_user.display_name,
            "inbox_type": "CUSTOM_SMTP",
            "smtp_host": host(smtp_ep),
            "smtp_port": smtp_ep.port,
            "smtp_username": lab_user.username,
            "smtp_password": lab_user.password,
            "smtp_use_tls": smtp_ep.tls in ("starttls", "implicit"),
            "imap_host": host(imap_ep),
            "imap_port": imap_ep.port,
            "imap_username": lab_user.username,
            "imap_password": lab_user.password,
            "imap_use_ssl": imap_ep.tls == "implicit",
            "daily_limit": 25,
        }

    def info(self, *, with_passwords: bool = False) -> dict[str, Any]:
        """JSON-serialisable description of the running lab; passwords only if asked for."""
        users: dict[str, dict[str, str]] = {}
        for email, user in self.users.items():
            entry = {"email": user.email, "username": user.username, "display_name": user.display_name}
            if with_passwords:
                entry["password"] = user.password
            users[email] = entry
        return {
            "workdir": str(self.workdir),
            "ca_file": str(self.ca_file),
            "nameserver": {"address": self.nameserver[0], "port": self.nameserver[1]},
            "smtp": {name: ep.as_dict() for name, ep in self.smtp.items()},
            "imap": {name: ep.as_dict() for name, ep in self.imap.items()},
            "users": users,
            "dkim": {"domain": DOMAIN, "selector": self.dkim_selector, "record_name": self.dkim_record_name},
            "web": {
                "https_port": self.https_port,
                "http_port": self.http_port,
                "access_log": str(self.access_log),
            },
            "zones": sorted(f"{zone.origin}." for zone in self._zones),
            "logs": {name: str(path) for name, path in self._log_files().items()},
        }

    def pids(self) -> dict[str, list[int]]:
        """Live pids per server (``postfix``, ``dovecot-NAME``, ``nsd``, ``opendkim``, ``nginx``)."""
        result: dict[str, list[int]] = {}
        if self._postfix is not None:
            result["postfix"] = self._postfix.pids()
        for daemon in self._daemons():
            result[daemon.name] = daemon.pids()
        return result

    # ----------------------------------------------------------------- start steps

    def _start(self) -> None:
        workdir = self._make_workdir()
        self._start_watchdog(workdir)
        log_dir = workdir / "log"
        log_dir.mkdir(mode=0o755)
        self._endpoints()
        # The zone publishes the DKIM key, so it exists before the zones are rendered.
        self.dkim_key = make_dkim_key(DOMAIN, self.dkim_selector)
        zone_sources = discover_zones(self._zone_dirs)
        self._zones = prepare_zones(zone_sources, workdir / "nsd" / "zones", self._placeholders())
        sites = discover_sites()
        with ThreadPoolExecutor(max_workers=1) as pool:
            # nsd-checkzone runs once per zone (about 2 s for a thousand zones), so it overlaps
            # certificate generation. Every zone is checked before any server starts: a broken
            # fixture then costs no server start-up and tear-down.
            zone_check = pool.submit(check_zones, self._zones)
            self._certs = make_lab_certs(workdir / "certs", web_names=tls_names(sites))
            store = self._make_users(workdir)
            self.oauth = OAuthDouble(self.users)
            self.oauth.start()
            self._configure_dovecots(workdir, log_dir, store)
            self._dkim = OpenDkim(workdir / "dkim", log_dir)
            self._dkim.configure(self.dkim_key)
            self._web = WebServer(workdir / "web", log_dir)
            self._web.configure(
                https_port=self.https_port,
                http_port=self.http_port,
                cert=self._certs.web,
                sites=sites,
                values=self._placeholders(),
            )
            zone_check.result()
        self._start_postfix(workdir, log_dir)
        for instance in self._dovecots:
            instance.start()  # does not wait; readiness is polled below
        self._start_nsd(workdir, log_dir)
        self._dkim.start()
        self._web.start()
        self._wait_ready()

    def _make_workdir(self) -> Path:
        """The work dir, kept before it is checked so that a stop after a refusal still removes it."""
        self._workdir, self._owns_workdir = make_workdir(self._requested_workdir)
        check_workdir(self._workdir)
        return self._workdir

    def _start_watchdog(self, workdir: Path) -> None:
        """A process that cleans up if this one dies without ``stop()`` (see lab/watchdog.py)."""
        mode: Literal["remove", "keep"] = (
            "remove" if self._owns_workdir and not self._keep_workdir else "keep"
        )
        self._watchdog = start_watchdog(workdir, mode)

    def _dismiss_watchdog(self) -> None:
        """Tell the watchdog the lab stopped cleanly, and reap it."""
        watchdog, self._watchdog = self._watchdog, None
        dismiss_watchdog(watchdog)

    def _endpoints(self) -> None:
        """Pick free ports and fill :attr:`smtp`, :attr:`imap` and :attr:`nameserver`."""
        imap_addresses = [address for _, _, address in IMAP_LISTENERS.values()]
        addresses = ["127.0.0.1", *(["127.0.0.1"] * len(SMTP_LISTENERS)), *imap_addresses]
        ports = free_ports([*addresses, "127.0.0.1", "127.0.0.1"], udp_too=[True])
        self.https_port, self.http_port = ports[-2:]
        ports = ports[:-2]
        self.nameserver = ("127.0.0.1", ports[0])
        smtp_ports = ports[1 : 1 + len(SMTP_LISTENERS)]
        imap_ports = ports[1 + len(SMTP_LISTENERS) :]
        self.smtp = {
            name: Endpoint(MAIL_HOST, "127.0.0.1", port, tls)
            for (name, (tls, _)), port in zip(SMTP_LISTENERS.items(), smtp_ports, strict=True)
        }
        self.imap = {
            name: Endpoint(MAIL_HOST if address == "127.0.0.1" else SECOND_HOST, address, port, tls)
            for (name, (_, tls, address)), port in zip(IMAP_LISTENERS.items(), imap_ports, strict=True)
        }

    def _placeholders(self) -> dict[str, object]:
        """Values zone and autoconfig files may use: ``{{smtp.NAME}}``, ``{{imap.NAME}}``,
        ``{{dns}}``, ``{{https}}``, ``{{http}}``, ``{{dkim.selector}}`` and ``{{dkim.record}}``
        (the key's TXT data as quoted strings of at most 255 characters)."""
        values: dict[str, object] = {
            "dns": self.nameserver[1],
            "https": self.https_port,
            "http": self.http_port,
        }
        if self.dkim_key is not None:
            values |= {"dkim.selector": self.dkim_key.selector, "dkim.record": self.dkim_key.zone_strings()}
        values |= {f"smtp.{name}": ep.port for name, ep in self.smtp.items()}
        values |= {f"imap.{name}": ep.port for name, ep in self.imap.items()}
        return values

    def _make_users(self, workdir: Path) -> MailStore:
        """Random passwords per start; Maildirs owned by the existing ``mail`` user."""
        self.users = {}
        addresses = [f"{local}@{DOMAIN}" for local in self._user_names]
        addresses += [f"{local}@{UNSIGNED_DOMAIN}" for local in self._unsigned_user_names]
        for email in addresses:
            local = email.partition("@")[0]
            self.users[email] = LabUser(
                email=email,
                username=email,
                password=secrets.token_urlsafe(18),
                display_name=f"{local.capitalize()} Lab",
            )
        mail_user = pwd.getpwnam("mail")
        mail_root = workdir / "mail"
        mail_root.mkdir(mode=0o700)
        os.chown(mail_root, mail_user.pw_uid, mail_user.pw_gid)
        users_file = workdir / "users"
        write_users_file(users_file, self.users.values(), grp.getgrnam("dovecot").gr_gid)
        return MailStore(users_file, mail_root, mail_user.pw_uid, mail_user.pw_gid)

    def _configure_dovecots(self, workdir: Path, log_dir: Path, store: MailStore) -> None:
        assert self._certs is not None
        prefix = workdir.name
        for instance_name, cert_role in DOVECOT_CERTS.items():
            listeners = [
                ImapListener(name, self.imap[name].address, self.imap[name].port, tls)
                for name, (owner, tls, _) in IMAP_LISTENERS.items()
                if owner == instance_name
            ]
            instance = DovecotInstance(
                name=instance_name,
                root=workdir / f"d-{instance_name}",
                log_dir=log_dir,
                cert_role=cert_role,
                listeners=listeners,
                main=instance_name == "main",
            )
            assert self.oauth is not None
            instance.configure(
                certs=self._certs,
                store=store,
                instance_prefix=prefix,
                introspection_url=self.oauth.introspection_url,
            )
            self._dovecots.append(instance)

    def _start_postfix(self, workdir: Path, log_dir: Path) -> None:
        assert self._certs is not None
        main = self._dovecots[0]
        postfix = PostfixInstance(workdir / "pf", log_dir)
        postfix.configure(
            listeners=[
                SmtpListener(name, ep.port, ep.tls, SMTP_LISTENERS[name][1]) for name, ep in self.smtp.items()
            ],
            certs=self._certs,
            auth_socket=main.auth_socket,
            lmtp_socket=main.lmtp_socket,
            milter_socket=self._dkim.socket if self._dkim is not None else workdir / "no-milter",
            mailboxes=list(self.users),
        )
        self._postfix = postfix
        postfix.start()

    def _start_nsd(self, workdir: Path, log_dir: Path) -> None:
        nsd = NsdServer(workdir / "nsd", log_dir)
        nsd.configure(port=self.nameserver[1], zones=self._zones)
        self._nsd = nsd
        nsd.start()

    def _wait_ready(self) -> None:
        """Poll (no sleeps as synchronisation) until every server answers, or fail with logs."""
        deadline = time.monotonic() + _READY_TIMEOUT
        for check, describe in self._readiness_checks():
            remaining = max(0.0, deadline - time.monotonic())
            self._raise_if_dead()
            if not wait_until(functools.partial(self._alive_and, check), timeout=remaining):
                self._raise_if_dead()
                raise LabStartError(f"{describe} not ready after {_READY_TIMEOUT:.0f} s\n" + self._all_logs())

    def _readiness_checks(self) -> list[tuple[Callable[[], bool], str]]:
        assert self._nsd is not None
        nsd = self._nsd
        checks: list[tuple[Callable[[], bool], str]] = [
            (lambda: nsd.answers(f"{DOMAIN}."), f"NSD on port {self.nameserver[1]}"),
            (lambda: tcp_listening("127.0.0.1", self.nameserver[1]), "NSD over TCP"),
        ]
        for instance in self._dovecots:
            checks.append((instance.sockets_ready, f"Dovecot {instance.name} sockets"))
        if self._dkim is not None:
            checks.append((self._dkim.ready, "OpenDKIM socket"))
        for port in (self.https_port, self.http_port):
            checks.append((functools.partial(tcp_listening, "127.0.0.1", port), f"nginx on port {port}"))
        for kind, endpoints in (("SMTP", self.smtp), ("IMAP", self.imap)):
            for name, ep in endpoints.items():
                probe = functools.partial(tcp_listening, ep.address, ep.port)
                checks.append((probe, f"{kind} {name} on {ep.address}:{ep.port}"))
        return checks

    def _alive_and(self, check: Callable[[], bool]) -> bool:
        """A readiness probe that also gives up early when a server already died."""
        return self._first_dead() is not None or check()

    def _first_dead(self) -> str | None:
        for instance in self._dovecots:
            code = instance.daemon.exit_code()
            if code is not None:
                return f"Dovecot {instance.name} exited with status {code}\n{instance.logs()}"
        if self._nsd is not None and (code := self._nsd.daemon.exit_code()) is not None:
            return f"NSD exited with status {code}\n{self._nsd.logs()}"
        if self._dkim is not None and (code := self._dkim.daemon.exit_code()) is not None:
            return f"OpenDKIM exited with status {code}\n{self._dkim.logs()}"
        if self._web is not None and (code := self._web.daemon.exit_code()) is not None:
            return f"nginx exited with status {code}\n{self._web.logs()}"
        return None

    def _raise_if_dead(self) -> None:
        problem = self._first_dead()
        if problem is not None:
            raise LabStartError(problem)

    def _log_files(self) -> dict[str, Path]:
        files: dict[str, Path] = {}
        if self._postfix is not None:
            files["postfix"] = self._postfix.log_file
        for instance in self._dovecots:
            files[f"dovecot-{instance.name}"] = instance.log_file
        if self._nsd is not None:
            files["nsd"] = self._nsd.log_file
        if self._dkim is not None:
            files["opendkim"] = self._dkim.daemon.output_file
        if self._web is not None:
            files["nginx-access"] = self._web.access_log
            files["nginx-error"] = self._web.error_log
        return files

    def _all_logs(self) -> str:
        parts = []
        if self._postfix is not None:
            parts.append(self._postfix.logs())
        parts += [instance.logs() for instance in self._dovecots]
        if self._nsd is not None:
            parts.append(self._nsd.logs())
        if self._dkim is not None:
            parts.append(self._dkim.logs())
        if self._web is not None:
            parts.append(self._web.logs())
        return "\n".join(parts)

    def _remove_workdir(self) -> None:
        """Forget the servers; delete the work dir if the lab made it (and may not keep it)."""
        self._dovecots = []
        self._postfix = None
        self._nsd = None
        self._dkim = None
        self._web = None
        if self._workdir is None or not self._owns_workdir or self._keep_workdir:
            return
        shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = None
        self._certs = None


def _lookup(endpoints: dict[str, Endpoint], name: str, kind: str) -> Endpoint:
    try:
        return endpoints[name]
    except KeyError:
        raise LabError(f"no {kind} endpoint {name!r}; known: {sorted(endpoints)}") from None
