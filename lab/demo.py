"""The end-to-end demo behind the README's main command (``scripts/demo.sh``).

Starts the lab (Postfix, Dovecot, NSD on loopback) and the platform's API double, writes a lab
account in the platform's payload format *without* its password (the password travels in
``INBOXCHECK_SMTP_PASSWORD``, the API key in ``COLDSEND_API_KEY``, as a user would pass them), runs
the real ``inboxcheck connect`` against it (account, DNS, SMTP and IMAP checks, every DNS lookup sent
to the lab's server, then the create call), shows what the platform recorded, and stops everything.
Exits with inboxcheck's exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lab import Lab
from lab.api_double import ApiDouble


def _banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def _inboxcheck() -> list[str]:
    exe = shutil.which("inboxcheck", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "inboxcheck"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.demo", description=__doc__)
    parser.add_argument("--format", choices=["text", "json"], default="text")
    args = parser.parse_args(argv)

    api_key = "cs_test_" + secrets.token_urlsafe(24)
    with (
        tempfile.TemporaryDirectory(prefix="icdemo-") as tmp,
        Lab() as lab,
        ApiDouble(keys={api_key}).running_in_thread() as api,
    ):
        payload = lab.account("alice@lab.test", smtp="submission", imap="imaps")
        password = payload.pop("smtp_password")
        payload.pop("imap_password")
        account_file = Path(tmp) / "account.json"
        account_file.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        host, port = lab.nameserver

        _banner("the account file (passwords left out: they come from the environment)")
        print(account_file.read_text(encoding="utf-8"), end="")

        command = [
            *_inboxcheck(),
            "connect",
            str(account_file),
            "--api-url",
            api.url,
            "--dkim-selector",
            "lab",
            "--nameserver",
            f"{host}:{port}",
            "--ca-file",
            str(lab.ca_file),
            "--timeout",
            "5",
            "--format",
            args.format,
        ]
        _banner("inboxcheck connect " + " ".join(command[command.index("connect") + 1 :]))
        env = {**os.environ, "INBOXCHECK_SMTP_PASSWORD": password, "COLDSEND_API_KEY": api_key}
        result = subprocess.run(command, env=env, check=False)
        _banner(f"the platform (API double) recorded {len(api.creates())} create call(s)")
        for inbox in api.accounts.values():
            print(json.dumps(inbox, indent=2, default=str))
        _banner(f"inboxcheck exited with {result.returncode}; stopping the lab and the API double")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
