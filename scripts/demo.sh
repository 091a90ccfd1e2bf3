#!/usr/bin/env bash
# The main job end to end on this machine: start the lab of real servers (Postfix, Dovecot, NSD) and
# the platform's API double, check a lab account (account, DNS, SMTP, IMAP), create it, print the
# report and the created inbox, and stop everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-system-deps.sh
scripts/bootstrap-venv.sh >/dev/null
exec .venv/bin/python -m lab.demo "$@"
