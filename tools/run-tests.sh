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

# A compile cache that outlives the clone. CI builds three trees from a clean clone each time
# (this one, ASan+UBSan and the fuzz targets: about 2,300 CPU seconds on a cold cache, the
# largest share of the run on 2 cores) while a commit changes a few sources, so most objects
# come out of the cache. CMake (3.17 and later) takes the launcher from the environment when it
# first configures a tree, tools/fuzz.sh's too. The cache is keyed on the preprocessed source
# and the flags; CCACHE_BASEDIR and CCACHE_NOHASHDIR let clones at different paths share entries
# (paths under the clone are made relative, and the working directory is left out of the hash,
# so debug info names paths relative to the build directory). IM_CCACHE=0 builds without it;
# a CCACHE_DIR set by the caller is kept, root's default is /var/tmp beside the test caches.
if [[ ${IM_CCACHE:-1} != 0 ]] && command -v ccache >/dev/null; then
  if ((EUID == 0)); then
    export CCACHE_DIR=${CCACHE_DIR:-/var/tmp/iscsi-mpio-ccache}
  fi
  export CCACHE_BASEDIR=$repo CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-4G}
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_C_COMPILER_LAUNCHER=ccache
fi
# ccache_counts: the cache's hits and misses so far (the summary prints this run's share).
ccache_counts() {
  [[ -n ${CMAKE_CXX_COMPILER_LAUNCHER:-} ]] || { echo "0 0"; return; }
  ccache --print-stats | awk '$1 ~ /^(direct|preprocessed)_cache_hit$/ { hits += $2 }
    $1 == "cache_miss" { misses += $2 } END { print hits + 0, misses + 0 }'
}
read -r ccache_hits_before ccache_misses_before < <(ccache_counts)

echo "== configure and build ($build)"
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" \
  >/dev/null
ninja -C "$build" -j "$jobs"

summary=()
failures=()
status=0

# The sanitizer and fuzz builds (below) start now, in the background at nice 19, and compile
# while the unit and integration tests run, on the CPU time those leave idle (they wait on path
# faults and timeouts; the TCG guests and the qemu-nbd runs keep the cores busy, and nice 19
# gives way to them). On the 2-vCPU CI VM that idle time is smaller than the waits suggest:
# the integration tests take about 1.15 cores of the 2 on average, and the ASan+UBSan tree
# (about 1,150 CPU seconds, as many as the main build) was still compiling 190-200 s after
# they ended. The ASan+UBSan tree comes first: the phases after the integration tests need
# it, and they start as soon as it is built ($prebuild_dir/asan.status holds its build's exit
# status then), while the fuzz tree (about 180 CPU seconds, needed only by the last phase)
# goes on compiling at nice 19 on what the sanitized integration tests leave idle. The phases
# below run their own cmake and ninja again, which finish whatever is left and print any
# error; the last lines of each background log are shown once it is done.
readonly asan_build=${BUILD_ASAN:-$repo/build-asan}
# -O1 -g1: half the compile time of -O2 -g on 2 cores (4.6 against 9.4 minutes here), with the
# line numbers a report needs and code the sanitizers still see as it runs.
readonly -a asan_configure=(-S "$repo" -B "$asan_build" -G Ninja -DIM_SANITIZE=ON
  -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG")
readonly fuzz_seconds=${FUZZ_SECONDS:-10}
prebuild_dir=$(mktemp -d /tmp/run-tests-prebuild.XXXXXX)
(
  rc=0
  { nice -n 19 cmake "${asan_configure[@]}" && nice -n 19 ninja -C "$asan_build" -j "$jobs"; } \
    >"$prebuild_dir/asan.log" 2>&1 || rc=$?
  echo "$rc" >"$prebuild_dir/asan.status"
  if ((fuzz_seconds > 0)); then
    JOBS=$jobs nice -n 19 "$repo/tools/fuzz.sh" --build-only >"$prebuild_dir/fuzz.log" 2>&1
  fi
) &
prebuild_pid=$!
prebuild_started=$SECONDS
# The sidecar image of integration.podman_sidecar is the Dockerfile built by podman: on new
# sources a Release compile inside the build container, minutes of CPU. It starts now too, at
# nice 19; the test waits for it on the image cache's lock and then finds the image built.
image_pid=''
if ((EUID == 0)) && command -v podman >/dev/null; then
  image_log=$(mktemp /tmp/run-tests-image.XXXXXX.log)
  nice -n 19 "$repo/tests/integration/podman-sidecar.sh" --build-only >"$image_log" 2>&1 &
  image_pid=$!
fi
# The Debian root with targetcli that integration.lio's guest configures LIO with: on a cold
# cache an mmdebstrap of 1 to 4 minutes, mostly download; it starts now too, and the suite
# waits for it on the cache's lock.
root_log=$(mktemp /tmp/run-tests-targetcli-root.XXXXXX.log)
nice -n 19 "$repo/tests/guest/make-targetcli-root.sh" >"$root_log" 2>&1 &
root_pid=$!
# How many tests each phase must run. CTest is green on a selection that matches nothing
# (--no-tests=error catches only "none") or fewer tests than meant (a label or a name that
# changed): a phase whose count differs fails. Change a count here with the test it counts.
# unit has one more than asan-unit: linkage checks the build that links the C++ libraries in.
readonly -A expected_tests=([unit]=14 [integration]=21 [asan-unit]=13 [asan-integ]=8)
# run_ctest NAME CTEST_ARGS...: one CTest phase in $ctest_dir (default the main build); its
# summary line goes into the final report.
run_ctest() {
  local name=$1 log rc=0
  shift
  log=$(mktemp /tmp/run-tests.XXXXXX.log)
  echo "== $name"
  (cd "${ctest_dir:-$build}" && ctest --no-tests=error --output-on-failure "$@") 2>&1 |
    tee "$log" || rc=$?
  local line ran
  line=$(grep -E 'tests passed|No tests were found' "$log" | tail -n 1 || true)
  ran=$(sed -nE 's/.* tests failed out of ([0-9]+)$/\1/p' <<<"$line")
  if [[ ${ran:-0} != "${expected_tests[$name]}" ]]; then
    line+=" [ran ${ran:-0} tests, expected ${expected_tests[$name]}: see tools/run-tests.sh]"
    rc=1
  fi
  summary+=("$(printf '%-12s %s' "$name:" "${line:-ctest failed to run (status $rc)}")")
  # A failing test's own lines get lost in a long log: keep the failed checks (Catch's FAILED:
  # blocks, the scripts' FAIL lines) for the end of the report.
  if ((rc != 0)); then
    failures+=("-- $name" "$(grep -B10 -A14 -E 'FAILED:|^FAIL|\bFAIL\b' "$log" | head -n 120 || true)")
  fi
  rm -f "$log"
  ((rc == 0)) || status=1
}

run_ctest unit -L unit
# Both the product against tgtd/istgt (label integration) and the qemu-nbd peer (label peer).
run_ctest integration -L 'integration|peer'

# --- sanitizer build: ASan + UBSan ------------------------------------------------------------
# The whole tree again, built by g++ with -fsanitize=address,undefined (IM_SANITIZE) in its own
# build directory: every unit test, then the integration tests that drive the daemon itself
# (the fault target, tgtd and istgt suites, the R2T matrix, the command line, check-config and
# the hostile NBD clients, socket activation, whose attach takes a socket it did not bind and
# restarts under a client)
# with the sanitized iscsi-mpio. Any report (a leak at exit, an out-of-bounds access, undefined
# behaviour) aborts the process and lands in a log file under $asan_logs, which fails the phase
# even when the process was one a suite stopped and did not wait for. The multipath, guest and
# LIO suites run only in the plain build: their time goes to waiting on faults, not to code paths
# the others miss. Then the libFuzzer targets (tools/fuzz.sh, clang) for FUZZ_SECONDS each on
# the seed corpus.
# Environment: BUILD_ASAN (default <repo>/build-asan), FUZZ_SECONDS (default 10, 0 skips fuzzing).
readonly asan_integration='integration\.(fault_target|tgtd|istgt|r2t_matrix|cli|check_config|hostile|socket_activation)$'
started=$SECONDS
echo "== background build of the ASan+UBSan tree (log $prebuild_dir/asan.log)"
# Until the background job has built the ASan+UBSan tree, or has ended without saying so; the
# fuzz tree it compiles next is waited for before the fuzz phase.
while [[ ! -s $prebuild_dir/asan.status ]] && kill -0 "$prebuild_pid" 2>/dev/null; do sleep 1; done
summary+=("$(printf '%-12s %s' "prebuild:" "ASan+UBSan tree built in \
$((SECONDS - prebuild_started)) s, the last $((SECONDS - started)) s of it after the tests")")
echo "   ${summary[-1]}"
tail -n 5 "$prebuild_dir/asan.log"
if [[ -n $image_pid ]]; then
  # Done by now: integration.podman_sidecar waited for it. Its log, for a failed image build.
  wait "$image_pid" || { echo "   the background image build failed:"; tail -n 20 "$image_log"; }
  rm -f "$image_log"
fi
# Done by now: integration.lio waited for it. Its log, for a failed build.
wait "$root_pid" || { echo "   the targetcli root build failed:"; tail -n 20 "$root_log"; }
rm -f "$root_log"
started=$SECONDS
echo "== configure and build with ASan+UBSan ($asan_build)"
cmake "${asan_configure[@]}" >/dev/null
if ninja -C "$asan_build" -j "$jobs"; then
  asan_logs=$(mktemp -d /tmp/run-tests-asan.XXXXXX)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:log_path=$asan_logs/report
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$asan_logs/report
  ctest_dir=$asan_build run_ctest asan-unit -L unit
  summary[-1]+=" ($((SECONDS - started)) s)"
  started=$SECONDS
  ctest_dir=$asan_build run_ctest asan-integ -R "$asan_integration"
  summary[-1]+=" ($((SECONDS - started)) s)"
  unset ASAN_OPTIONS UBSAN_OPTIONS
  reports=("$asan_logs"/report*)
  if [[ -e ${reports[0]} ]]; then
    echo "== sanitizer reports (${#reports[@]})"
    for report in "${reports[@]}"; do
      echo "--- $report"
      head -n 60 "$report"
    done
    summary+=("$(printf '%-12s %s' "asan-logs:" "${#reports[@]} sanitizer report(s), see above")")
    status=1
  else
    summary+=("$(printf '%-12s %s' "asan-logs:" "no sanitizer reports")")
  fi
  rm -rf "$asan_logs"
else
  summary+=("$(printf '%-12s %s' "asan:" "the ASan+UBSan build failed")")
  status=1
fi

# The fuzz tree compiled in the background meanwhile (the same job, after the ASan+UBSan tree).
started=$SECONDS
wait "$prebuild_pid" || true
if ((fuzz_seconds > 0)); then
  echo "== background build of the fuzz tree (waited $((SECONDS - started)) s for it after the ASan+UBSan phases)"
  tail -n 3 "$prebuild_dir/fuzz.log"
fi
rm -rf "$prebuild_dir"

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

if ((${#failures[@]})); then
  echo
  echo "== failed checks"
  printf '%s\n' "${failures[@]}"
fi
if [[ -n ${CMAKE_CXX_COMPILER_LAUNCHER:-} ]]; then
  read -r hits misses < <(ccache_counts)
  summary+=("$(printf '%-12s %s' "ccache:" "$((hits - ccache_hits_before)) hits, \
$((misses - ccache_misses_before)) misses (${CCACHE_DIR:-the default ccache directory})")")
fi
echo
echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$status"
