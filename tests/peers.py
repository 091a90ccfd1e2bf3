"""Scripted SMTP/IMAP peers: asyncio servers on loopback that behave exactly as a test says.

A peer runs one *script* per connection (an async function given a :class:`PeerConn`) and records
every byte it received, before and after TLS, so a test can assert on what the client sent (for
instance: no password, in no form, before TLS). Peers are used as async context managers; leaving
one aborts every connection and cancels every script, so nothing outlives the test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

__all__ = [
    "TLS_MARK",
    "DnsPeer",
    "Login",
    "LoginCounter",
    "Peer",
    "PeerCerts",
    "PeerConn",
    "Script",
    "TcpForwarder",
    "secret_wire_forms",
    "serving_in_thread",
]

LINE_LIMIT = 1 << 20
#: Written into a connection's record where TLS started: bytes before it crossed in clear text.
TLS_MARK = b"\n<<peer: TLS started>>\n"


class _RecordingReader(asyncio.StreamReader):
    def __init__(self, record: bytearray) -> None:
        super().__init__(limit=LINE_LIMIT)
        self.record = record

    def feed_data(self, data: bytes) -> None:  # type: ignore[override]
        self.record.extend(data)
        super().feed_data(data)


@dataclass
class PeerConn:
    """One client connection, seen from the peer."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: bytearray = field(default_factory=bytearray)

    async def send(self, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self.writer.write(raw)
        await self.writer.drain()

    async def line(self) -> bytes:
        """The next line from the client (without CRLF); b"" when it closed."""
        try:
            raw = await self.reader.readline()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            return b""
        return raw.rstrip(b"\r\n")

    async def start_tls(self, context: ssl.SSLContext) -> None:
        self.received.extend(TLS_MARK)
        await self.writer.start_tls(context)

    @property
    def cleartext(self) -> bytes:
        """What the client sent before TLS (everything, on a connection that never started it)."""
        return bytes(self.received).split(TLS_MARK, 1)[0]

    async def until_closed(self) -> None:
        """Read (and record) until the client goes away, answering nothing: a stalled server."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass

    def abort(self) -> None:
        self.writer.transport.abort()


Script = Callable[[PeerConn], Awaitable[None]]


class Peer:
    """A loopback server that runs ``script`` for each connection (implicit TLS with ``tls``)."""

    def __init__(
        self,
        script: Script,
        *,
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.script = script
        self.tls = tls
        self.host = host
        self.port = port
        self.connections: list[PeerConn] = []
        self.errors: list[BaseException] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def received(self) -> bytes:
        """Everything every client sent, in connection order."""
        return b"".join(bytes(conn.received) for conn in self.connections)

    @property
    def cleartext(self) -> bytes:
        """Everything every client sent before TLS (all of it on a plain connection)."""
        return b"".join(conn.cleartext for conn in self.connections)

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()

        def factory() -> asyncio.StreamReaderProtocol:
            # On an implicit-TLS port nothing crosses in clear text: the record starts encrypted.
            record = bytearray(TLS_MARK if self.tls is not None else b"")
            reader = _RecordingReader(record)
            return asyncio.StreamReaderProtocol(reader, lambda r, w: self._accept(r, w, record))

        self._server = await loop.create_server(factory, self.host, self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray) -> None:
        conn = PeerConn(reader, writer, record)
        self.connections.append(conn)
        task = asyncio.ensure_future(self._run(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, conn: PeerConn) -> None:
        try:
            await self.script(conn)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the client went away: that is the client's business, not the peer's
        except Exception as exc:  # noqa: BLE001 - kept for the test to inspect
            self.errors.append(exc)
        finally:
            conn.writer.transport.abort()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self.connections:
            conn.writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        if self._server is not None:
            await self._server.wait_closed()


@contextlib.contextmanager
def serving_in_thread(make: Callable[[], Peer]) -> Iterator[Peer]:
    """A peer served from a background thread with its own event loop, for a synchronous caller (the
    CLI through click's runner, a subprocess). ``make`` builds the peer inside that loop."""
    ready = threading.Event()
    started: list[Peer] = []
    failure: list[BaseException] = []
    stop: list[Callable[[], object]] = []

    async def serve() -> None:
        done = asyncio.Event()
        try:
            async with make() as server:
                started.append(server)
                loop = asyncio.get_running_loop()
                stop.append(lambda: loop.call_soon_threadsafe(done.set))
                ready.set()
                await done.wait()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="peer", daemon=True)
    thread.start()
    ready.wait()
    try:
        if failure:
            raise failure[0]
        yield started[0]
    finally:
        if stop:
            stop[0]()
        thread.join()


class TcpForwarder:
    """Forwards ``listen`` to ``target`` byte for byte (to put a lab port behind port 465)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen = listen
        self.target = target
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, *self.listen)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.append(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        tasks = [
            asyncio.ensure_future(pipe(reader, up_writer)),
            asyncio.ensure_future(pipe(up_reader, writer)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks)
        finally:
            self._tasks.difference_update(tasks)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        if self._server is not None:
            await self._server.wait_closed()


def secret_wire_forms(username: str, password: str) -> list[bytes]:
    """Every form a password takes on an SMTP or IMAP wire: for asserting that none arrived."""
    forms = {
        password.encode(),
        base64.b64encode(password.encode()),
        base64.b64encode(f"\0{username}\0{password}".encode()),
        base64.b64encode(f"{username}\0{username}\0{password}".encode()),
    }
    # base64 of the password at any offset inside a longer AUTH PLAIN blob: check the three alignments
    # of the password within the blob by encoding it with 0-2 leading bytes and keeping the stable core.
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + password.encode())
        core = encoded[4 if pad else 0 : -4]
        if len(core) >= 8:
            forms.add(core)
    return sorted(forms, key=len, reverse=True)


# --- counting logins -----------------------------------------------------------------------------


@dataclass
class Login:
    """One login a peer saw: from its AUTH (SMTP) or LOGIN/AUTHENTICATE (IMAP) to QUIT/LOGOUT or the
    connection's end, on the peer's clock."""

    protocol: str
    start: float
    end: float | None = None


class LoginCounter:
    """Counts the logins a server sees, as a provider's abuse detection would: wraps a peer script
    so that every login is held ``hold`` seconds before the script answers it, and recorded.

    ``most_at_once`` and ``busiest_window`` read the record (from any thread)."""

    def __init__(self, *, hold: float = 0.3, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold = hold
        self.clock = clock
        self.logins: list[Login] = []
        self._lock = threading.Lock()

    def wrap(self, protocol: str, script: Script) -> Script:
        async def counted(conn: PeerConn) -> None:
            login: Login | None = None
            read = conn.line

            async def line() -> bytes:
                nonlocal login
                data = await read()
                words = data.upper().split(b" ")
                verb = words[0] if protocol == "smtp" else (words[1] if len(words) > 1 else b"")
                if login is None and verb in (b"AUTH", b"LOGIN", b"AUTHENTICATE"):
                    login = Login(protocol, self.clock())
                    with self._lock:
                        self.logins.append(login)
                    await asyncio.sleep(self.hold)
                elif login is not None and login.end is None and (not data or verb in (b"QUIT", b"LOGOUT")):
                    login.end = self.clock()
                return data

            conn.line = line  # type: ignore[method-assign]
            try:
                await script(conn)
            finally:
                if login is not None and login.end is None:
                    login.end = self.clock()

        return counted

    def seen(self, protocol: str) -> list[Login]:
        with self._lock:
            return [login for login in self.logins if login.protocol == protocol]

    def most_at_once(self, protocol: str) -> int:
        """The most logins of ``protocol`` in progress at one moment."""
        # An end sorts before a start at the same moment: one login left as the next came.
        events = sorted(
            (point, step)
            for login in self.seen(protocol)
            for point, step in ((login.start, 1), (login.end if login.end is not None else float("inf"), -1))
        )
        inside = most = 0
        for _, step in events:
            inside += step
            most = max(most, inside)
        return most

    def busiest_window(self, protocol: str, span: float = 60.0) -> int:
        """The most logins of ``protocol`` begun within any ``span`` seconds."""
        starts = sorted(login.start for login in self.seen(protocol))
        return max((sum(1 for s in starts if first <= s < first + span) for first in starts), default=0)


# --- certificates for peers -----------------------------------------------------------------------

PEER_NAMES = ("mail.peer.test", "localhost", "127.0.0.1")


class PeerCerts:
    """A throwaway CA the client trusts, and server contexts with good and bad certificates."""

    def __init__(self, extra_names: tuple[str, ...] = ()) -> None:
        import datetime as dt

        import trustme

        self.ca = trustme.CA(organization_name="inboxcheck peer CA")
        names = (*PEER_NAMES, *extra_names)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        self._leaves = {
            "good": self.ca.issue_cert(*names, common_name="mail.peer.test"),
            "expired": self.ca.issue_cert(
                *PEER_NAMES,
                common_name="mail.peer.test",
                not_before=now - dt.timedelta(days=400),
                not_after=now - dt.timedelta(days=30),
            ),
            "expiring": self.ca.issue_cert(
                *PEER_NAMES,
                common_name="mail.peer.test",
                not_before=now - dt.timedelta(days=80),
                not_after=now + dt.timedelta(days=5, hours=12),
            ),
            "wrongname": self.ca.issue_cert("other.invalid-name.test", common_name="other.invalid-name.test"),
            "notyet": self.ca.issue_cert(
                *PEER_NAMES,
                common_name="mail.peer.test",
                not_before=now + dt.timedelta(days=3),
                not_after=now + dt.timedelta(days=400),
            ),
        }
        # Self-signed: a CA certificate presented as the server's own (issuer == subject), not trusted.
        self._selfsigned = trustme.CA(organization_name="self-signed peer")

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def server_context(self, kind: str = "good") -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if kind == "selfsigned":
            import tempfile
            from pathlib import Path

            with tempfile.TemporaryDirectory() as tmp:
                cert = Path(tmp) / "cert.pem"
                key = Path(tmp) / "key.pem"
                cert.write_bytes(self._selfsigned.cert_pem.bytes())
                key.write_bytes(self._selfsigned.private_key_pem.bytes())
                context.load_cert_chain(cert, key)
        else:
            self._leaves[kind].configure_cert(context)
        return context


# --- a DNS peer ---------------------------------------------------------------------------------


class DnsPeer(asyncio.DatagramProtocol):
    """A UDP DNS server on loopback: every name has the A records ``addresses`` (127.0.0.1), except
    the names in ``nxdomain``; ``records`` adds answers by (name, type), as zone-file text
    (``{("_dmarc.test", "TXT"): ['"v=DMARC1; p=none"'], ("victim.test", "MX"): ["10 test."]}``)."""

    def __init__(
        self,
        *,
        nxdomain: tuple[str, ...] = (),
        addresses: tuple[str, ...] = ("127.0.0.1",),
        records: dict[tuple[str, str], list[str]] | None = None,
    ) -> None:
        self.nxdomain = {name.rstrip(".").lower() for name in nxdomain}
        self.addresses = addresses
        self.records = {
            (name.rstrip(".").lower(), kind.upper()): texts for (name, kind), texts in (records or {}).items()
        }
        self.port = 0
        self.queries: list[tuple[str, str]] = []
        self._transport: asyncio.DatagramTransport | None = None

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._transport is not None:
            self._transport.close()

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        try:
            query = dns.message.from_wire(data)
        except Exception:  # noqa: BLE001 - a test DNS server ignores junk
            return
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries.append((name, dns.rdatatype.to_text(question.rdtype)))
        kind = dns.rdatatype.to_text(question.rdtype)
        if name in self.nxdomain:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif (name, kind) in self.records:
            response.answer.append(
                dns.rrset.from_text(question.name, 60, "IN", kind, *self.records[name, kind])
            )
        elif question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", *self.addresses))
        assert self._transport is not None
        self._transport.sendto(response.to_wire(want_shuffle=False), addr)  # answers in the given order
