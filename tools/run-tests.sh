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
# run_ctest NAME CTEST_ARGS...: one CTest phase in $ctest_dir (default the main build); its
# summary line goes into the final report.
run_ctest() {
  local name=$1 log rc=0
  shift
  log=$(mktemp /tmp/run-tests.XXXXXX.log)
  echo "== $name"
  (cd "${ctest_dir:-$build}" && ctest --output-on-failure "$@") 2>&1 | tee "$log" || rc=$?
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
# The unit tests again, built by g++ with -fsanitize=address,undefined (IM_SANITIZE) in their own
# tree: a leak, an out-of-bounds access or any undefined behaviour aborts the test binary. Only
# the unit_* binaries are built (the Asio daemon is not needed for them). Then the libFuzzer
# targets (tools/fuzz.sh, clang) for FUZZ_SECONDS each on the seed corpus.
# Environment: BUILD_ASAN (default <repo>/build-asan), FUZZ_SECONDS (default 15, 0 skips fuzzing).
readonly asan_build=${BUILD_ASAN:-$repo/build-asan}
started=$SECONDS
echo "== configure and build unit tests with ASan+UBSan ($asan_build)"
cmake -S "$repo" -B "$asan_build" -G Ninja -DIM_SANITIZE=ON \
  -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
# The pure libraries' tests: the protocol code the fuzzers also cover. The Asio-heavy binaries
# (unit_nbd_server) would triple the cold build time on a 2-core CI machine.
unit_targets=(unit_common unit_scsi unit_iscsi unit_nbd unit_nbd_kernel unit_config unit_mpio
  unit_iscsi_mpio unit_check_config)
if ninja -C "$asan_build" -j "$jobs" "${unit_targets[@]}"; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest_dir=$asan_build run_ctest asan-unit -L unit -E 'unit\.nbd_server' 
  summary[-1]+=" ($((SECONDS - started)) s with build)"
else
  summary+=("$(printf '%-12s %s' "asan-unit:" "build of ${unit_targets[*]} failed")")
  status=1
fi

readonly fuzz_seconds=${FUZZ_SECONDS:-10}
if ((fuzz_seconds > 0)); then
  started=$SECONDS
  fuzz_log=$(mktemp /tmp/run-tests.XXXXXX.log)
  echo "== fuzz ($fuzz_seconds s per target)"
  rc=0
  JOBS=$jobs "$repo/tools/fuzz.sh" "$fuzz_seconds" 2>&1 | tee "$fuzz_log" || rc=$?
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$fuzz_log" | tail -n 1 || true)
  summary+=("$(printf '%-12s %s' "fuzz:" \
    "${line:-tools/fuzz.sh failed to run (status $rc)} ($((SECONDS - started)) s with build)")")
  rm -f "$fuzz_log"
  ((rc == 0)) || status=1
fi
# ----------------------------------------------------------------------------------------------

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$status"
