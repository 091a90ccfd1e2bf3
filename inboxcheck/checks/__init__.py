"""The registry: every check inboxcheck runs, in report order, named in one place."""

from __future__ import annotations

import importlib
from collections.abc import Collection
from typing import TYPE_CHECKING, Final, cast

from inboxcheck._check import CheckSpec
from inboxcheck._options import Family

if TYPE_CHECKING:
    from inboxcheck._check import CheckContext, CheckFunction, Outcome

__all__ = ["deferred", "registered_checks"]


# Each module of checks, in report order, with the family its checks are in.
_MODULES: Final = (
    ("inboxcheck.checks.account", Family.ACCOUNT),
    ("inboxcheck.checks.dns.family", Family.DNS),
    ("inboxcheck.checks.login.smtp", Family.SMTP),
    ("inboxcheck.checks.login.imap", Family.IMAP),
    ("inboxcheck.checks.login.same_mailbox", Family.IMAP),
    ("inboxcheck.checks.send", Family.SMTP),
)


def registered_checks(families: Collection[Family] | None = None) -> list[CheckSpec]:
    """Every check, account lint first, then DNS, SMTP and IMAP; given ``families``, only theirs.

    Modules are imported here rather than at the top so that ``inboxcheck --version`` and the offline
    checks do not pay for dnspython, aiosmtplib and aioimaplib, and a run of some families loads only
    their modules.
    """
    specs: list[CheckSpec] = []
    for module, family in _MODULES:
        if families is None or family in families:
            specs.extend(cast("list[CheckSpec]", importlib.import_module(module).CHECKS))
    return specs


def deferred(target: str) -> CheckFunction:
    """The check function ``"module:name"``, its module imported only when a run calls it.

    For checks that must be asked for (``CheckSpec.wanted``): a run that does not ask for them never
    loads their code (the send test's, the blocklists').
    """
    module, _, name = target.partition(":")

    async def run(ctx: CheckContext) -> Outcome:
        function = cast("CheckFunction", getattr(importlib.import_module(module), name))
        return await function(ctx)

    run.__name__ = run.__qualname__ = name
    return run
