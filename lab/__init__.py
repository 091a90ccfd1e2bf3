"""A lab of real mail, DNS and web servers (Postfix, Dovecot, NSD, OpenDKIM, nginx) on loopback
for inboxcheck's tests.

Not part of the inboxcheck wheel. Typical use::

    with Lab() as lab:
        account = lab.account("alice@lab.test", smtp="submission", imap="imaps")

``python -m lab up`` and ``python -m lab exec -- CMD`` run it from a shell.
"""

from lab.core import Lab
from lab.types import Endpoint, LabError, LabStartError, LabUser, TlsMode

__all__ = ["Endpoint", "Lab", "LabError", "LabStartError", "LabUser", "TlsMode"]
