"""Small value types shared by the lab's modules and its users."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TlsMode = Literal["starttls", "implicit", "none"]


class LabError(RuntimeError):
    """The lab cannot run here (missing binary, not root, bad zone file, ...)."""


class LabStartError(LabError):
    """A server did not come up; the message carries the tail of the relevant logs."""


@dataclass(frozen=True)
class Endpoint:
    """One listening server port, as a client of the lab should address it.

    ``host`` is a name the lab's NSD resolves (and the good certificate names); ``address`` is the
    IP it resolves to, for clients that do not use the lab's resolver.
    """

    host: str
    address: str
    port: int
    tls: TlsMode

    def as_dict(self) -> dict[str, str | int]:
        """JSON-friendly form used by :meth:`lab.Lab.info`."""
        return {"host": self.host, "address": self.address, "port": self.port, "tls": self.tls}


@dataclass(frozen=True)
class LabUser:
    """A mailbox of the lab; the password is random per lab start and kept out of ``repr``."""

    email: str
    username: str
    password: str = field(repr=False)
    display_name: str = ""
