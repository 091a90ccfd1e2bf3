#!/usr/bin/env bash
# The whole test suite on this machine: system packages for the lab, a virtualenv with inboxcheck and
# its test tools, then ruff, mypy and pytest (the lab of real servers starts inside pytest).
# Extra arguments go to pytest, e.g. scripts/test.sh -k smtp -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-system-deps.sh
scripts/bootstrap-venv.sh
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/pytest "$@"
