#!/usr/bin/env bash
# Creates .venv (once) and installs inboxcheck in editable mode with its test tools: the newest
# releases of its dependencies, the test tools (and uv) at the versions constraints/test.txt pins.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
pip=(.venv/bin/python -m pip --quiet --disable-pip-version-check)
"${pip[@]}" install --upgrade pip
# eager: an old .venv moves to the newest runtime dependencies too, as a fresh CI machine has them.
"${pip[@]}" install --upgrade --upgrade-strategy eager -c constraints/test.txt -e '.[test]' uv
