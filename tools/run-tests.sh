#!/usr/bin/env bash
# The tests (README "Quick start", command 2, after install): configure and build in build/,
# then run the unit tests and the integration tests with CTest, and print a summary.
# Needs root for the integration tests (they start tgtd and istgt on 127.0.0.1).
#
# Environment: BUILD (default <repo>/build), JOBS (parallel compile jobs, default 2),
#              CMAKE_BUILD_TYPE (default RelWithDebInfo).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly repo
readonly build=${BUILD:-$repo/build}
readonly jobs=${JOBS:-2}

echo "== configure and build ($build)"
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" \
  >/dev/null
ninja -C "$build" -j "$jobs"

summary=()
status=0
# run_ctest NAME CTEST_ARGS...: one CTest phase; its summary line goes into the final report.
run_ctest() {
  local name=$1 log rc=0
  shift
  log=$(mktemp /tmp/run-tests.XXXXXX.log)
  echo "== $name"
  (cd "$build" && ctest --output-on-failure "$@") 2>&1 | tee "$log" || rc=$?
  local line
  line=$(grep -E 'tests passed|No tests were found' "$log" | tail -n 1 || true)
  summary+=("$(printf '%-12s %s' "$name:" "${line:-ctest failed to run (status $rc)}")")
  rm -f "$log"
  ((rc == 0)) || status=1
}

run_ctest unit -L unit
# Both the product against tgtd/istgt (label integration) and the qemu-nbd peer (label peer).
run_ctest integration -L 'integration|peer'

# --- sanitizer build: ASan + UBSan ------------------------------------------------------------
# TODO(sanitizers): configure a second tree with -DIM_SANITIZE=ON (build-asan/), build it and
# run `ctest -L unit` there (then the integration suite with BUILD=build-asan), adding its
# summary line with run_ctest. Not enabled yet.
# ----------------------------------------------------------------------------------------------

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$status"
