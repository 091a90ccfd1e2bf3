"""Every exception and warning inboxcheck lets a caller see.

Findings about an account are results (:class:`inboxcheck.Finding`), never exceptions. What is raised
here is what stops inboxcheck from checking at all: a file it cannot read, an account that does not
validate, a bad option, a broken preset, an API key of the wrong shape. Every message names what, where
and how to fix it, and none ever carries a secret.

    InboxcheckError (exit 2 unless said)
    ├── AccountError          the account payload is missing, malformed or out of range (ValueError)
    ├── OptionsError          an option (timeout, nameserver, CA file, API URL...) is unusable (ValueError)
    ├── PresetError           a preset file is missing or invalid
    ├── ResultsLogError       a batch's results log cannot be used (in use, the input, unwritable)
    ├── KnowledgeError        a provider reply-rule file is missing or invalid (a packaging bug)
    ├── ApiKeyError           the platform API key is missing or not shaped like one (ValueError)
    └── ApiError              the platform's create call stopped the run
        └── CreateFailed      a create call that created nothing; carries its CreateOutcome and exit code
                              (defined beside CreateOutcome in platform/outcomes.py)

    UserWarning
    └── InsecureKeyFileWarning  the API key file can be read by other users

Exceptions that never leave the module that raises them stay beside their code: the pure parsers'
:class:`~inboxcheck.dns.records._common.RecordSyntaxError` and :class:`~inboxcheck._der.DerError`
become findings where they are caught, and the login conversations' own control flow
(``checks.login.probe.Stop``, ``checks.login.imap_protocol._PeerFailed``, ``dns.wire._Unusual``)
ends inside the check.

An ``OSError`` whose errno is in ``LOCAL_SHORTAGE`` (too many open files, no buffer space, no memory)
is this machine's shortage: wherever it is caught (a connection, a DNS lookup, the runner) it becomes
``run.resources``, never a finding about the account.

This module imports nothing from the package, so every module may import it (no import circle):
an exception that carries one of the package's types lives beside that type and subclasses one here.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Final

__all__ = [
    "LOCAL_SHORTAGE",
    "AccountError",
    "ApiError",
    "ApiKeyError",
    "FieldProblem",
    "InboxcheckError",
    "InsecureKeyFileWarning",
    "KnowledgeError",
    "OAuthInputError",
    "OptionsError",
    "PresetError",
    "ResultsLogError",
]


#: A shortage on this machine: too many open files (the process's, the system's), no buffer space,
#: no memory. An OSError with one of these is never a finding about the account (``run.resources``).
LOCAL_SHORTAGE: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class InboxcheckError(Exception):
    """The root of every error inboxcheck raises on purpose."""

    exit_code = 2


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field of the account payload."""

    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


class AccountError(InboxcheckError, ValueError):
    """The account payload cannot be used; ``problems`` lists one line per field."""

    def __init__(self, source: str, problems: list[FieldProblem] | None = None, *, message: str = "") -> None:
        self.source = source
        self.problems = list(problems or [])
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"{self.source}: {self.message or 'the account is not valid'}"
        if not self.problems:
            return head
        return "\n".join([head, *(f"  {problem}" for problem in self.problems)])


class OptionsError(InboxcheckError, ValueError):
    """An option given to a check cannot be used."""


class OAuthInputError(InboxcheckError, ValueError):
    """The OAuth2 options or their files cannot be used (a token file missing, a bad token URL)."""


class PresetError(InboxcheckError):
    """A provider preset is missing or invalid."""


class KnowledgeError(InboxcheckError):
    """A knowledge-base file is missing or invalid (a packaging bug, not a finding)."""


class ResultsLogError(InboxcheckError):
    """A batch's results log (``--output``) cannot be used: another run holds it, it is the batch
    file itself, or the OS refuses to open, read or write it (the message gives the OS's reason)."""


class ApiKeyError(InboxcheckError, ValueError):
    """The platform API key is missing or not of the documented form."""


class ApiError(InboxcheckError):
    """The platform's create call failed in a way that stops the run."""


class InsecureKeyFileWarning(UserWarning):
    """The API key file can be read by other users of this machine."""
