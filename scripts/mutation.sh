#!/usr/bin/env bash
# Mutation testing of the pure modules with the offline tests that exercise them (mutmut 3).
#   scripts/mutation.sh                 every module in the table below
#   scripts/mutation.sh MODULE [...]    some of them, e.g. scripts/mutation.sh inboxcheck/_limits.py
# Runs in a copy of the working tree under .mutation/ (mutmut rewrites the files it mutates), so the
# checkout is never touched; prints each module's score and its surviving mutants. Slow (minutes
# per module): not part of CI's default run. The figures are recorded in TESTING.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# module -> the offline tests that exercise it (no lab: a mutant run must take seconds).
declare -A tests=(
  [inboxcheck/dns/records/spf.py]="tests/records/test_spf.py tests/records/test_spf_edges.py tests/records/test_properties.py"
  [inboxcheck/dns/records/dmarc.py]="tests/records/test_dmarc.py tests/records/test_properties.py"
  [inboxcheck/dns/records/dkim.py]="tests/records/test_dkim.py tests/records/test_dkim_units.py tests/records/test_properties.py"
  [inboxcheck/dns/records/_common.py]="tests/records"
  [inboxcheck/_limits.py]="tests/test_limits_units.py"
  [inboxcheck/_secrets.py]="tests/test_secrets.py tests/test_secrets_units.py tests/test_scrub_excerpt.py"
  [inboxcheck/_knowledge.py]="tests/test_knowledge_units.py"
  [inboxcheck/platform/gate.py]="tests/test_gate_units.py"
)
modules=("$@")
if [ ${#modules[@]} -eq 0 ]; then
  mapfile -t modules < <(printf '%s\n' "${!tests[@]}" | sort)
fi
[ -x .venv/bin/python ] || scripts/bootstrap-venv.sh
.venv/bin/python -c 'import mutmut' 2>/dev/null || .venv/bin/python -m pip install --quiet "mutmut==3.8.1"
status=0
for module in "${modules[@]}"; do
  selection=${tests[$module]:-}
  if [ -z "$selection" ]; then
    echo "mutation.sh: no offline tests are named for $module (add it to the table)" >&2
    status=2
    continue
  fi
  # A fresh copy each run (mutmut's cache would keep verdicts from before a test changed); left
  # in place afterwards (git-ignored) for reading the survivors.
  work=$root/.mutation/$(echo "$module" | tr / _)
  rm -rf "$work"
  mkdir -p "$work"
  # The working tree as it is (tracked and new files), without ignored state.
  git ls-files -z --cached --others --exclude-standard | tar --null -cf - -T - | tar -xf - -C "$work"
  tests_toml=$(printf '"%s", ' $selection)
  cat >>"$work/pyproject.toml" <<TOML

[tool.mutmut]
source_paths = ["inboxcheck"]
only_mutate = ["$module"]
pytest_add_cli_args_test_selection = [${tests_toml%, }]
also_copy = ["lab", "tests", "presets", "fixtures", "conftest.py"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]
TOML
  echo "== $module (tests: $selection)"
  (cd "$work" && "$root/.venv/bin/mutmut" run >"$work/run.log" 2>&1) || { tail -20 "$work/run.log"; status=1; }
  (cd "$work" && "$root/.venv/bin/mutmut" results --all true 2>/dev/null || "$root/.venv/bin/mutmut" results) \
    >"$work/results.txt" || true
  # Each survivor's diff, to read: .mutation/<module>/survivors.diff
  : >"$work/survivors.diff"
  for name in $(grep -E ': (survived|no tests)' "$work/results.txt" | sed 's/:.*//'); do
    (cd "$work" && "$root/.venv/bin/mutmut" show "$name") >>"$work/survivors.diff" 2>&1 || true
  done
  grep -E ': (survived|no tests)' "$work/results.txt" || true
  total=$(grep -cE ': (killed|survived|timeout|no tests|suspicious|segfault)' "$work/results.txt" || true)
  survived=$(grep -cE ': (survived|no tests)' "$work/results.txt" || true)
  if [ "${total:-0}" -gt 0 ]; then
    echo "score $module: $((total - survived))/$total killed ($(( (total - survived) * 1000 / total / 10 )).$(( (total - survived) * 1000 / total % 10 ))%)"
  fi
  echo "survivors' diffs: ${work#$root/}/survivors.diff"
done
exit "$status"
