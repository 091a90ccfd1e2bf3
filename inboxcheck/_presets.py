"""Provider presets: what each mailbox provider expects, loaded from TOML data files in ``presets/``.

Presets are data, not code: hosts, ports, TLS modes, username rules, DNS expectations, authentication
policy, sending caps, and the source of each fact.

An account's provider is judged from its hosts and its ``inbox_type`` (:meth:`Presets.match`):

- The SMTP host, else the IMAP host, names the provider whose host globs it matches. A host that many
  unrelated services share (loopback, any IP literal, ``localhost``: a local relay, an SSH tunnel, a
  test server, Proton Mail Bridge) names a provider only together with one of that provider's ports
  on it; alone it names none.
- ``inbox_type`` ``GOOGLE_WORKSPACE`` / ``OUTLOOK_365`` always names a candidate provider, even when
  the hosts name another one or none. The run settles on the hosts' provider when there is one (its
  ports and TLS modes are the ones connected to), else on the inbox type's; both stay candidates, so
  that the replies of either are read with that provider's knowledge.

Consumer providers also list the address domains they host (``gmail.com``), so a bare address
finds its preset (:meth:`Presets.by_address_domain`).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import cache, lru_cache
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inboxcheck._endpoint import Endpoint, MailProtocol, TlsMode
from inboxcheck._errors import PresetError
from inboxcheck._models import InboxType
from inboxcheck._packaged import presets_dir, read_toml

__all__ = [
    "AuthPolicy",
    "BasicAuth",
    "DnsExpectations",
    "Preset",
    "PresetEndpoint",
    "PresetMatch",
    "Presets",
    "ServiceSpec",
    "TlsMode",  # defined in inboxcheck._endpoint, kept here for existing imports
    "UsernameRule",
    "is_shared_host",
    "load_presets",
    "presets_dir",
]


class UsernameRule(StrEnum):
    """What the provider expects as the login name."""

    EMAIL = "email"  # the full address, the same as email_address
    LOCAL_PART = "local_part"  # the part before the @
    ANY = "any"  # unknown or free (custom hosts)


class BasicAuth(StrEnum):
    """Whether a password login (as opposed to OAuth2) works for a protocol."""

    ALLOWED = "allowed"
    TENANT_SETTING = "tenant_setting"  # works only where an administrator turned it on
    RETIRED = "retired"  # switched off by the provider for good


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PresetEndpoint(_Data):
    """One ``[[smtp.endpoints]]`` / ``[[imap.endpoints]]`` entry of a preset file: an endpoint whose
    protocol is its section, and the provider's word about it. :meth:`at` is the :class:`Endpoint`."""

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)]
    tls: TlsMode
    preferred: bool = False
    note: str | None = None

    def at(self, protocol: MailProtocol | str) -> Endpoint:
        return Endpoint(protocol=MailProtocol(protocol), host=self.host, port=self.port, tls=self.tls)


class ServiceSpec(_Data):
    username: UsernameRule = UsernameRule.ANY
    endpoints: tuple[PresetEndpoint, ...] = ()
    # Extra host globs that belong to this provider (regional or legacy hosts).
    host_patterns: tuple[str, ...] = ()
    requires_tls: bool = True
    note: str | None = None

    def all_host_patterns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([e.host.lower() for e in self.endpoints] + list(self.host_patterns)))

    def preferred(self) -> PresetEndpoint | None:
        for endpoint in self.endpoints:
            if endpoint.preferred:
                return endpoint
        return self.endpoints[0] if self.endpoints else None

    def ports(self) -> dict[int, TlsMode]:
        return {endpoint.port: endpoint.tls for endpoint in self.endpoints}


class AuthPolicy(_Data):
    app_password_required: bool = False
    # Names a known shape; "google16" is 16 letters, shown as four groups of four.
    app_password_format: Literal["google16"] | None = None
    smtp_basic_auth: BasicAuth = BasicAuth.ALLOWED
    imap_basic_auth: BasicAuth = BasicAuth.ALLOWED
    oauth_only: bool = False
    notes: tuple[str, ...] = ()


class DnsExpectations(_Data):
    spf_includes: tuple[str, ...] = ()
    #: A data centre's own SPF include, chosen by the account's SMTP host (a glob, lower-case): Zoho's
    #: EU hosts want zohomail.eu, not zohomail.com. The first pattern that matches replaces spf_includes.
    spf_includes_by_host: dict[str, tuple[str, ...]] = {}
    dkim_selectors: tuple[str, ...] = ()
    # True when the provider's selector is documented: nothing there is then a failure, not a warning.
    dkim_selectors_known: bool = False
    dkim_setup: str | None = None


class Limits(_Data):
    hard_daily_cap: Annotated[int, Field(ge=1)] | None = None
    #: The cap of the provider's own consumer addresses (address_domains: gmail.com), where it differs.
    consumer_daily_cap: Annotated[int, Field(ge=1)] | None = None
    platform_max: Annotated[int, Field(ge=1)] | None = None
    note: str | None = None
    # How hard a fleet may knock: logins a minute (each counted from its start until a minute after
    # its end) and logins at once, across the whole fleet's accounts of this provider and every
    # process checking them (fleet/pace.py; None: only the run's per-host bound applies).
    fleet_logins_per_minute: Annotated[int, Field(ge=1)] | None = None
    fleet_logins_at_once: Annotated[int, Field(ge=1)] | None = None


class Source(_Data):
    fact: str
    source: str
    url: str | None = None
    verified: bool = True


class Checked(_Data):
    """Where the preset's settings were compared, and when: every preset file has one."""

    url: Annotated[str, Field(pattern=r"^https://")]
    on: date
    against: str
    #: Whether the provider's page itself was read on that date (False: compared with a summary of
    #: it, and the page is to be read again).
    page_read: bool = False


class Preset(_Data):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    name: str
    inbox_type: InboxType
    summary: str = ""
    unverified: bool = False
    status: str | None = None
    mx_patterns: tuple[str, ...] = ()
    # Consumer address domains the provider hosts (gmail.com, aol.com): exact names, not globs.
    address_domains: tuple[str, ...] = ()
    smtp: ServiceSpec = ServiceSpec()
    imap: ServiceSpec = ServiceSpec()
    auth: AuthPolicy = AuthPolicy()
    dns: DnsExpectations = DnsExpectations()
    limits: Limits = Limits()
    notes: tuple[str, ...] = ()
    sources: tuple[Source, ...] = ()
    checked: Checked | None = None
    #: Presets whose MX hosts this provider's domains use too (Zoho personal uses zoho-org's): an MX
    #: that names one of them is no mismatch.
    mx_shared_with: tuple[str, ...] = ()

    def daily_cap(self, domain: str | None) -> int | None:
        """The provider's hard daily cap for an address at ``domain``: a consumer address (gmail.com)
        may have a lower one than the provider's business accounts."""
        limits = self.limits
        if domain is not None and domain in self.address_domains and limits.consumer_daily_cap is not None:
            return limits.consumer_daily_cap
        return limits.hard_daily_cap

    @field_validator("address_domains")
    @classmethod
    def _plain_domains(cls, domains: tuple[str, ...]) -> tuple[str, ...]:
        for domain in domains:
            # Stored exactly as lookups normalise them, so an exact comparison is enough.
            if not _ADDRESS_DOMAIN.fullmatch(domain):
                raise ValueError(
                    f"{domain!r} is not a lower-case domain name (no '@', no wildcard, no final dot)"
                )
        if len(set(domains)) != len(domains):
            raise ValueError("an address domain is listed twice")
        return domains

    @model_validator(mode="after")
    def _one_preferred(self) -> Preset:
        for service in (self.smtp, self.imap):
            if sum(endpoint.preferred for endpoint in service.endpoints) > 1:
                raise ValueError("at most one endpoint per service may be preferred")
        return self

    @property
    def is_generic(self) -> bool:
        """The catch-all preset for custom hosts, which knows no hosts of its own."""
        return not self.smtp.endpoints and not self.imap.endpoints and not self.mx_patterns

    def matches_smtp_host(self, host: str, port: int | None = None) -> bool:
        """Whether ``host`` is one of this provider's SMTP hosts (with ``port``, for a shared host)."""
        return _service_matches(self.smtp, host, port)

    def matches_imap_host(self, host: str, port: int | None = None) -> bool:
        """Whether ``host`` is one of this provider's IMAP hosts (with ``port``, for a shared host)."""
        return _service_matches(self.imap, host, port)

    def matches_mx(self, host: str) -> bool:
        return _glob_any(host, self.mx_patterns)


_ADDRESS_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")


def _normal_domain(domain: str) -> str:
    return domain.strip().lower().rstrip(".")


def is_shared_host(host: str) -> bool:
    """A host that many unrelated services share, so that it alone says nothing about the provider:
    any IP literal (loopback, private or public, v4 or v6) and ``localhost`` (RFC 6761)."""
    return _is_shared_host(host)


@lru_cache(maxsize=4096)
def _is_shared_host(host: str) -> bool:
    # Remembered: matching asks it once per preset for the same host.
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _service_matches(spec: ServiceSpec, host: str, port: int | None) -> bool:
    if is_shared_host(host):
        return port is not None and any(
            endpoint.port == port and _glob_any(host, (endpoint.host,)) for endpoint in spec.endpoints
        )
    return _glob_any(host, spec.all_host_patterns())


def _glob_any(host: str, patterns: Iterable[str]) -> bool:
    name = host.lower().rstrip(".")
    return any(_glob(name, pattern.lower()) for pattern in patterns)


_GLOB_CHARS: Final = frozenset("*?[")


def _glob(name: str, pattern: str) -> bool:
    """``fnmatch.fnmatchcase``, without compiling a regular expression for the shapes every preset
    pattern has (a host, ``*.domain``, ``mx*.domain``: no ``?`` nor ``[``): compiling hundreds of
    them cost a check run tens of milliseconds, and the last few a one-account run 5 ms."""
    if not _GLOB_CHARS & set(pattern):
        return name == pattern
    if "?" in pattern or "[" in pattern:
        return fnmatch.fnmatchcase(name, pattern)
    # Stars only: the first and last pieces are anchored, and each piece between matches leftmost
    # (a star matches any run of characters, so an earlier match never rules out a later piece).
    first, *middle, last = pattern.split("*")
    if len(name) < len(first) + len(last) or not name.startswith(first) or not name.endswith(last):
        return False
    at, end = len(first), len(name) - len(last)
    for piece in middle:
        found = name.find(piece, at, end)
        if found < 0:
            return False
        at = found + len(piece)
    return True


#: The (hosts, ports, inbox type) keys whose match a :class:`Presets` remembers: a few hundred KB.
MATCHES_REMEMBERED: Final = 4096

MatchedBy = Literal["smtp_host", "imap_host", "mx", "inbox_type"]


@dataclass(frozen=True)
class PresetMatch:
    """The provider a run settled on (``preset``), the evidence it settled by, and every candidate
    provider in order of weight (the settled one first), whose reply knowledge applies."""

    preset: Preset
    matched_by: MatchedBy
    candidates: tuple[Preset, ...] = ()

    def __post_init__(self) -> None:
        if not self.candidates:
            object.__setattr__(self, "candidates", (self.preset,))


# The preset that stands for each inbox type when nothing more specific matches.
_DEFAULT_FOR_TYPE = {
    InboxType.GOOGLE_WORKSPACE: "google-workspace",
    InboxType.OUTLOOK_365: "microsoft-365",
    InboxType.CUSTOM_SMTP: "custom",
}


class Presets:
    """A loaded, validated set of presets, in a stable order (by id)."""

    def __init__(self, presets: Iterable[Preset], *, source: Path | None = None) -> None:
        self._by_id: dict[str, Preset] = {}
        for preset in sorted(presets, key=lambda p: p.id):
            if preset.id in self._by_id:
                raise PresetError(f"two presets have the id {preset.id!r}")
            self._by_id[preset.id] = preset
        self._by_address_domain: dict[str, Preset] = {}
        for preset in self._by_id.values():
            for domain in preset.address_domains:
                other = self._by_address_domain.setdefault(domain, preset)
                if other is not preset:
                    raise PresetError(f"the presets {other.id!r} and {preset.id!r} both claim {domain!r}")
        self.source = source
        # A batch asks the same few (hosts, ports, inbox type) again and again, and a match costs a
        # glob per preset and host (4 ms an account, the largest share of a batch's own CPU in a
        # profile); presets never change once loaded, so an answer stays right. Bounded, as a batch
        # may name a hundred thousand distinct hosts.
        self._matches: dict[tuple[str, str, InboxType, int | None, int | None], PresetMatch | None] = {}
        # The last piece of every host and MX pattern (after its last star), to rule out at once a
        # host that no pattern can match (a custom domain's, most of a batch's): see _ruled_out.
        self._tails: dict[str, tuple[tuple[str, ...], tuple[str, ...]] | None] = {}

    def __iter__(self) -> Iterator[Preset]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, preset_id: object) -> bool:
        return preset_id in self._by_id

    def get(self, preset_id: str) -> Preset:
        try:
            return self._by_id[preset_id]
        except KeyError:
            known = ", ".join(self._by_id)
            raise PresetError(f"no preset called {preset_id!r}; known presets: {known}") from None

    def by_smtp_host(self, host: str, port: int | None = None) -> Preset | None:
        """The provider whose SMTP host this is; a shared host (:func:`is_shared_host`) needs ``port``."""
        if not is_shared_host(host) and self._ruled_out("smtp", host):
            return None
        return next((p for p in self if not p.is_generic and p.matches_smtp_host(host, port)), None)

    def by_imap_host(self, host: str, port: int | None = None) -> Preset | None:
        """The provider whose IMAP host this is; a shared host (:func:`is_shared_host`) needs ``port``."""
        if not is_shared_host(host) and self._ruled_out("imap", host):
            return None
        return next((p for p in self if not p.is_generic and p.matches_imap_host(host, port)), None)

    def _ruled_out(self, kind: str, host: str) -> bool:
        """True when no ``kind`` pattern (smtp, imap, mx) of any preset can match ``host``: a match
        ends with the pattern's last piece after its last star (all of it for a plain host) and
        starts with its first piece before its first star. Patterns with ``?`` or ``[`` rule nothing
        out."""
        try:
            pieces = self._tails[kind]
        except KeyError:
            pieces = self._tails[kind] = self._pieces(kind)
        if pieces is None:
            return False
        tails, heads = pieces
        name = host.lower().rstrip(".")
        return not name.endswith(tails) and not name.startswith(heads)

    def _pieces(self, kind: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """The last pieces of ``kind``'s patterns, and the first pieces of those that end in a star."""
        patterns = [
            pattern.lower()
            for preset in self
            for pattern in (
                preset.mx_patterns
                if kind == "mx"
                else (preset.smtp if kind == "smtp" else preset.imap).all_host_patterns()
            )
        ]
        if any("?" in pattern or "[" in pattern for pattern in patterns):
            return None
        tails = {pattern.rsplit("*", 1)[-1] for pattern in patterns}
        heads = {pattern.split("*", 1)[0] for pattern in patterns if pattern.endswith("*")}
        tails.discard("")
        return tuple(tails), tuple(heads)

    def by_mx(self, hosts: str | Iterable[str]) -> Preset | None:
        """The preset of the first MX host (in the order given) that one matches, or None.

        ``hosts`` is one host name or the domain's MX hosts, most preferred first. A string is one
        host, never a sequence of one-letter hosts."""
        for host in (hosts,) if isinstance(hosts, str) else hosts:
            if self._ruled_out("mx", host):
                continue
            for preset in self:
                if preset.matches_mx(host):
                    return preset
        return None

    def by_address_domain(self, domain: str) -> Preset | None:
        """The preset of the provider hosting addresses at ``domain`` (``aol.com``), or None.

        An exact, case-insensitive match against ``address_domains``: a subdomain is another domain.
        Custom domains are never listed; their provider shows in their MX hosts (:meth:`by_mx`).
        """
        return self._by_address_domain.get(_normal_domain(domain))

    def for_inbox_type(self, inbox_type: InboxType) -> Preset | None:
        preset_id = _DEFAULT_FOR_TYPE[inbox_type]
        return self._by_id.get(preset_id)

    def match(
        self,
        *,
        smtp_host: str,
        imap_host: str,
        inbox_type: InboxType,
        smtp_port: int | None = None,
        imap_port: int | None = None,
    ) -> PresetMatch | None:
        """The provider an account belongs to, and the candidates (see the module's docstring)."""
        key = (smtp_host, imap_host, inbox_type, smtp_port, imap_port)
        try:
            found = self._matches.pop(key)
        except KeyError:
            found = self._match(key)
            if len(self._matches) >= MATCHES_REMEMBERED:
                self._matches.pop(next(iter(self._matches)), None)
        self._matches[key] = found  # the most recent last: the least recently used goes first
        return found

    def _match(self, key: tuple[str, str, InboxType, int | None, int | None]) -> PresetMatch | None:
        smtp_host, imap_host, inbox_type, smtp_port, imap_port = key
        by_type = self.for_inbox_type(inbox_type)
        found: PresetMatch | None = None
        preset = self.by_smtp_host(smtp_host, smtp_port)
        if preset is not None:
            found = PresetMatch(preset, "smtp_host")
        elif (preset := self.by_imap_host(imap_host, imap_port)) is not None:
            found = PresetMatch(preset, "imap_host")
        if found is None:
            return PresetMatch(by_type, "inbox_type") if by_type is not None else None
        if (
            by_type is not None
            and not by_type.is_generic
            and by_type.inbox_type is not found.preset.inbox_type
        ):
            return PresetMatch(found.preset, found.matched_by, candidates=(found.preset, by_type))
        return found


def load_preset_file(path: Path) -> Preset:
    """Read and validate one preset file, with an error naming the file and the field."""
    data = read_toml(path, what="the preset", error=PresetError)
    try:
        preset = Preset.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise PresetError(f"{path}: invalid preset: {problems}") from None
    if path.stem != preset.id:
        raise PresetError(f"{path}: the file must be named after its id, {preset.id}.toml")
    if preset.checked is None or not preset.sources:
        raise PresetError(
            f"{path}: a preset names its source: a [checked] table (url, on, against) and [[sources]]"
        )
    return preset


def load_presets(directory: Path | None = None) -> Presets:
    """Load every ``*.toml`` preset in ``directory`` (the bundled presets by default)."""
    if directory is None:
        return _bundled_presets()
    return _load_dir(directory)


@cache
def _bundled_presets() -> Presets:
    return _load_dir(presets_dir())


def _load_dir(directory: Path) -> Presets:
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise PresetError(f"{directory}: no preset files (*.toml) found")
    return Presets((load_preset_file(path) for path in files), source=directory)
