#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, clang-14, ASan + UBSan) in build-fuzz/ and runs each
# for SECONDS_PER_TARGET seconds on a copy of its seed corpus (tests/fuzz/corpus/<target>/), so
# the repository's corpus is never modified. Prints PASS/FAIL per target and a final
# "N passed, N failed" line; exits non-zero if any target crashed, leaked, timed out or broke an
# invariant. Crash inputs are kept under build-fuzz/fuzz-artifacts/<target>/ and their path is
# printed; to make one a regression seed, copy it into tests/fuzz/corpus/<target>/.
# What a run's corpus grew to is kept between runs (merged with libFuzzer's -merge=1, so only
# inputs that add coverage stay) in $IM_FUZZ_CORPUS/<target>/, outside the repository and the
# build tree, as the guest kernel cache is: the next run, CI's included, starts from it.
#
#   tools/fuzz.sh [SECONDS_PER_TARGET]   default 20
#   tools/fuzz.sh --regen-corpus         rewrite the generated seeds (fuzz_make_corpus)
#   tools/fuzz.sh --build-only           configure and build the targets, run nothing
#
# Environment: BUILD_FUZZ (default <repo>/build-fuzz), JOBS (compile jobs, default 2),
#              FUZZ_TARGETS (space-separated subset, default all),
#              IM_FUZZ_CORPUS (the kept corpus, default /var/tmp/iscsi-mpio-fuzz-corpus).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly repo
readonly build=${BUILD_FUZZ:-$repo/build-fuzz}
readonly jobs=${JOBS:-2}
readonly corpus_root=$repo/tests/fuzz/corpus
readonly kept_root=${IM_FUZZ_CORPUS:-/var/tmp/iscsi-mpio-fuzz-corpus}

# Target and the largest input worth trying (-max_len): room for a few PDUs or a full handshake,
# small enough that every run stays fast.
readonly -A max_len=(
  [fuzz_pdu_reader]=16384
  [fuzz_session]=16384
  [fuzz_login]=8192
  [fuzz_text_keys]=4096
  [fuzz_scsi_parsers]=1024
  [fuzz_nbd_handshake]=4096
  [fuzz_nbd_request]=64
  [fuzz_config]=4096
  [fuzz_control]=10240
)
all_targets=(fuzz_pdu_reader fuzz_session fuzz_login fuzz_text_keys fuzz_scsi_parsers
  fuzz_nbd_handshake fuzz_nbd_request fuzz_config fuzz_control)

regen=0
build_only=0
seconds=20
case ${1:-} in
  '') ;;
  --regen-corpus) regen=1 ;;
  --build-only) build_only=1 ;;
  -h | --help) sed -n '2,14{s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
  *)
    [[ $1 =~ ^[1-9][0-9]*$ ]] ||
      { echo "usage: $0 [SECONDS_PER_TARGET | --regen-corpus | --build-only]" >&2; exit 2; }
    seconds=$1
    ;;
esac
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"

for tool in clang-14 clang++-14; do
  command -v "$tool" >/dev/null || { echo "fuzz: $tool not found (tools/install-deps.sh)" >&2; exit 1; }
done

echo "== configure and build fuzz targets ($build)"
CC=clang-14 CXX=clang++-14 cmake -S "$repo" -B "$build" -G Ninja -DIM_FUZZ=ON -DIM_TESTS=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
if ((regen)); then
  ninja -C "$build" -j "$jobs" fuzz_make_corpus
  "$build/tests/fuzz/fuzz_make_corpus" "$corpus_root" "$repo/config/example.yaml"
  exit 0
fi
# Build all at once, carrying on past errors (-k 0) so that a library someone is half-way
# through editing fails only the targets that need it; each target is then checked on its own.
ninja -C "$build" -j "$jobs" -k 0 "${targets[@]}" || true
((build_only)) && exit 0

# Sanitizer reports end the run with a stack trace; leaks count as failures (libFuzzer's
# -detect_leaks is on by default under ASan).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

logs=$build/fuzz-logs
artifacts=$build/fuzz-artifacts
mkdir -p "$logs"
work=$(mktemp -d /tmp/fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT

# fuzz_one TARGET: builds (a no-op after the build above), runs and keeps the corpus of one
# target; its verdict line goes to $work/TARGET.result, starting PASS or FAIL.
fuzz_one() {
  local target=$1
  local binary=$build/tests/fuzz/$target log=$logs/$target.log result=$work/$target.result
  if ! ninja -C "$build" "$target" >"$log" 2>&1; then
    printf 'FAIL %-20s does not build; log %s\n' "$target" "$log" >"$result"
    return
  fi
  local corpus=$work/$target kept=$kept_root/$target
  mkdir -p "$corpus" "$artifacts/$target" "$kept"
  [[ -d $corpus_root/$target ]] && cp -r "$corpus_root/$target/." "$corpus/"
  cp -r "$kept/." "$corpus/"
  local seeds rc=0 execs grown
  seeds=$(find "$corpus" -type f | wc -l)
  # `timeout` only guards against a hung process: libFuzzer stops itself at -max_total_time,
  # and -timeout turns one slow input into a reported failure.
  timeout --kill-after=10 $((seconds + 120)) "$binary" -max_total_time="$seconds" \
    -max_len="${max_len[$target]:-4096}" -timeout=25 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$target/" "$corpus" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  grown=$(find "$corpus" -type f | wc -l)
  if ((rc == 0)); then
    # Keep what this run found for the next one; a failed merge only loses this run's growth.
    local note=''
    timeout --kill-after=10 120 "$binary" -merge=1 -max_len="${max_len[$target]:-4096}" \
      -timeout=25 "$kept" "$corpus" >>"$log" 2>&1 || note=$'\n    (corpus not kept: merge failed)'
    printf 'PASS %-20s %10s execs in %ss, corpus %s -> %s, %s kept%s\n' "$target" "${execs:-?}" \
      "$seconds" "$seeds" "$grown" "$(find "$kept" -type f | wc -l)" "$note" >"$result"
  else
    {
      printf 'FAIL %-20s exit %s after %s execs; log %s\n' "$target" "$rc" "${execs:-?}" "$log"
      grep -E '^==[0-9]+==ERROR|^SUMMARY|FUZZ_CHECK failed|runtime error|ALARM|Test unit written' \
        "$log" | head -n 8 | sed 's/^/    /' || true
    } >"$result"
  fi
}

# The targets run $jobs at a time: each is one single-threaded process, and the time per
# target, not the count, is what the test command pays.
running=0
for target in "${targets[@]}"; do
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
  fuzz_one "$target" &
  running=$((running + 1))
done
wait || true

passed=0
failed=0
for target in "${targets[@]}"; do
  result=$work/$target.result
  [[ -s $result ]] || printf 'FAIL %-20s gave no verdict\n' "$target" >"$result"
  cat "$result"
  if [[ $(head -c 4 "$result") == PASS ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done

echo "$passed passed, $failed failed"
((failed == 0))
