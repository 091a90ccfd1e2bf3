#!/usr/bin/env bash
# The whole test suite on this machine: system packages for the lab, a virtualenv with inboxcheck and
# its test tools, then ruff, mypy and pytest (the lab of real servers starts inside pytest).
#   scripts/test.sh [pytest args]           the newest releases of the dependencies, in .venv
#   scripts/test.sh --lowest [pytest args]  the lowest releases pyproject allows, in .venv-lowest
#                                           (pytest only: ruff and mypy need to pass once, above)
# Extra arguments go to pytest, e.g. scripts/test.sh -k smtp -x
set -euo pipefail
cd "$(dirname "$0")/.."
deps=newest
if [ "${1:-}" = "--lowest" ]; then
  deps=lowest
  shift
fi
scripts/install-system-deps.sh
# Also brings uv, from the newest environment, for the lowest one.
scripts/bootstrap-venv.sh
if [ "$deps" = newest ]; then
  venv=.venv
  .venv/bin/ruff check .
  .venv/bin/mypy
else
  venv=.venv-lowest
  uv=.venv/bin/uv
  [ -x "$venv/bin/python" ] || "$uv" venv --quiet --python .venv/bin/python "$venv"
  # Lowest for the direct dependencies (what pyproject declares), newest below them; the test tools
  # stay at their pins. Resolved to a file and synced, so an existing venv is moved to exactly it.
  # The floors are constraints too: uv's lowest-direct is a preference that a test tool's tree can
  # outweigh (FastAPI with schemathesis lifted pydantic from 2.7 to 2.9), and this run is for them.
  python3 - > "$venv/floors.txt" <<'PY'
import re
import tomllib
for requirement in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    name, floor = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([^,;\s]+)", requirement).groups()
    print(f"{name}=={floor}")
PY
  "$uv" pip compile --quiet --no-header --resolution lowest-direct --python "$venv/bin/python" \
    -c constraints/test.txt -c "$venv/floors.txt" --extra test pyproject.toml -o "$venv/requirements.txt"
  "$uv" pip sync --quiet --python "$venv/bin/python" "$venv/requirements.txt"
  # pip too: the packaging tests build and install wheels with it, as .venv's pip does.
  "$uv" pip install --quiet --python "$venv/bin/python" --no-deps -e . pip
  echo "lowest runtime dependencies:" $(grep -E '^(aioimaplib|aiosmtplib|click|defusedxml|dkimpy|dnspython|httpx|publicsuffixlist|pydantic)==' "$venv/requirements.txt")
fi
status=0
# Lets the lowest run check that it really has the floors (tests/test_packaging.py).
export INBOXCHECK_TEST_DEPS=$deps
"$venv/bin/pytest" "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests ($deps dependencies): failing, since that is never a pass" >&2
fi
exit "$status"
