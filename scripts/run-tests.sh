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

# The nodes' wheelhouse, downloaded once before the scenarios start: the
# federation scenario mounts it into its hosts, and on a bare machine nothing
# else would have put it there in time.
stage wheelhouse ansible-playbook playbooks/wheelhouse.yml -e "@$SFF_CACHE/python/standin-vars.yml"
# The scenarios use their own containers and networks: they run side by side
# (much of their time is spent waiting on installs and job deadlines), and
# lint and the unit tests run while they do. Each scenario's output goes to
# build/test-logs/<scenario>.log and is printed whole when it ends.
logs=$SFF_ROOT/build/test-logs
mkdir -p "$logs"
declare -A started pids
for s in $scenarios; do
  started[$s]=$SECONDS
  molecule test -s "$s" >"$logs/$s.log" 2>&1 &
  pids[$s]=$!
  echo "=== molecule $s: started (output in $logs/$s.log)"
done
stage lint ansible-lint
stage unit python -m pytest -q tests/unit tests/static
for s in $scenarios; do
  wait "${pids[$s]}"; rc=$?
  cat "$logs/$s.log"
  stage "molecule $s" sh -c "echo 'molecule $s: exit $rc after $((SECONDS - started[$s])) s'; exit $rc"
done

# CI shows only the end of this output: name the failed tests last, from
# pytest's short summary in each scenario's log (molecule boxes and wraps it).
failed_tests() {
  sed 's/\x1b\[[0-9;]*m//g' "$1" | awk '
    /short test summary info/ { on = 1; next }
    on && /[0-9]+ (passed|failed|errors?)( |,|$)/ { on = 0 }
    on {
      sub(/^ *│ ?/, ""); sub(/^ +/, "")
      if ($0 ~ /^=+$/ || $0 == "") next
      if ($0 ~ /^(FAILED|ERROR)/) { if (entry != "") print entry; entry = $0 }
      else if (entry != "") entry = entry (entry ~ /^(FAILED|ERROR)$/ ? " " : "") $0
    }
    END { if (entry != "") print entry }'
}
for s in $scenarios; do
  [ -f "$logs/$s.log" ] && failed_tests "$logs/$s.log" | sed "s/^/$s: /"
done
[ "$failed" -eq 0 ] || echo "failed stages: ${failures[*]}"
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
