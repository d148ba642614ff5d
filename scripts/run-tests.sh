#!/usr/bin/env bash
# The whole test suite: set up (scripts/setup.sh), lint, unit tests, then the
# molecule scenarios on real systemd containers. Prints a summary line.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
cd "$SFF_ROOT"

"$here/setup.sh" || { echo "setup failed"; exit 1; }
export PATH=$SFF_ROOT/.venv/bin:$PATH

scenarios=${SFF_SCENARIOS:-default federation}
passed=0 failed=0 failures=()
stage() {
  local name=$1; shift
  local t0=$SECONDS
  echo "=== $name"
  if "$@"; then passed=$((passed + 1)); echo "=== $name: ok ($((SECONDS - t0)) s)"
  else failed=$((failed + 1)); failures+=("$name"); echo "=== $name: FAILED ($((SECONDS - t0)) s)"; fi
}

stage lint ansible-lint
stage unit python -m pytest -q tests/unit tests/static
for s in $scenarios; do
  stage "molecule $s" molecule test -s "$s"
done

[ "$failed" -eq 0 ] || echo "failed stages: ${failures[*]}"
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
