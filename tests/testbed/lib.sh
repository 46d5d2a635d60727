# shellcheck shell=bash
# Helpers shared by the test-bed scripts (tgtd-target.sh, istgt-target.sh, run-suite.sh).
# Sourced, not executed. Everything here talks only to loopback or to a namespace the caller made.

tb_die() {
  echo "${0##*/}: $*" >&2
  exit 1
}

# tb_in_ns NETNS CMD...: run CMD inside NETNS, or directly when NETNS is empty.
tb_in_ns() {
  local netns=$1
  shift
  if [[ -n $netns ]]; then
    ip netns exec "$netns" "$@"
  else
    "$@"
  fi
}

# tb_free_port NETNS ADDR: a TCP port the kernel considers free on ADDR right now. Another
# process may take it before we bind it; callers retry the start when the daemon fails.
tb_free_port() {
  tb_in_ns "$1" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.bind((sys.argv[1], 0))
print(s.getsockname()[1])' "$2"
}

# tb_port_open NETNS ADDR PORT: true when a TCP connect to ADDR:PORT succeeds within 1 s.
tb_port_open() {
  # shellcheck disable=SC2016 # $0/$1 expand in the inner shell
  tb_in_ns "$1" timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$2" "$3" 2>/dev/null
}

# tb_running PID: true while PID exists and is not a zombie. A child that exited but was not
# yet reaped by its parent (us) still answers `kill -0`, so that test alone would wait forever.
tb_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# tb_start_time PID: the process's start time (clock ticks since boot, proc(5) field 22). PID
# plus start time names a process for good: a recycled PID gets a new start time.
tb_start_time() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  local -a fields
  read -r -a fields <<<"$stat"
  echo "${fields[19]}"
}

# tb_wait_port NETNS ADDR PORT PID SECONDS: wait until ADDR:PORT accepts connections, failing
# early when PID (the daemon that should listen there) has exited.
tb_wait_port() {
  local netns=$1 addr=$2 port=$3 pid=$4 seconds=$5
  local deadline=$((SECONDS + seconds))
  while ((SECONDS < deadline)); do
    tb_running "$pid" || return 1
    tb_port_open "$netns" "$addr" "$port" && return 0
    sleep 0.2
  done
  return 1
}

# tb_wait_gone PID SECONDS: wait until PID has exited (true) or SECONDS passed (false).
tb_wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while tb_running "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
  return 0
}

# tb_spawn PIDFILE LOG CMD...: start CMD in the background with its output in LOG, record its
# PID and start time in PIDFILE (for tb_stop_recorded), and set $spawned to the PID.
tb_spawn() {
  local pidfile=$1 out=$2
  shift 2
  "$@" </dev/null >"$out" 2>&1 &
  spawned=$!
  echo "$spawned $(tb_start_time "$spawned" || echo gone)" >>"$pidfile"
}

# tb_stop_pid PID [START_TIME]: TERM, then KILL after 10 s. With START_TIME, only if PID is still
# that process (a PID recorded long ago may have been reused by now).
tb_stop_pid() {
  local pid=$1 start_time=${2:-}
  tb_running "$pid" || return 0
  [[ -z $start_time || $(tb_start_time "$pid") == "$start_time" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! tb_wait_gone "$pid" 10; then
    kill -KILL "$pid" 2>/dev/null || true
    tb_wait_gone "$pid" 5 || true
  fi
}

# tb_stop_recorded PIDFILE: tb_stop_pid every process tb_spawn recorded there, then empty it.
tb_stop_recorded() {
  local pid start_time
  [[ -f $1 ]] || return 0
  while read -r pid start_time; do tb_stop_pid "$pid" "$start_time"; done <"$1"
  : >"$1"
}

# tb_kill_tree PID: TERM PID and all its descendants (children first found, then killed
# together), KILL whatever is left after 5 s. For process trees this shell started itself.
tb_kill_tree() {
  local -a tree=("$1") queue=("$1")
  local pid child
  while ((${#queue[@]})); do
    pid=${queue[0]}
    queue=("${queue[@]:1}")
    for child in $(pgrep -P "$pid" || true); do
      tree+=("$child")
      queue+=("$child")
    done
  done
  kill -TERM "${tree[@]}" 2>/dev/null || true
  for pid in "${tree[@]}"; do
    tb_wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null || true
  done
}

# tb_pid_is PID COMM: true when PID is alive and runs a program named COMM, so a recycled PID
# is never killed by mistake.
tb_pid_is() {
  tb_running "$1" && [[ $(cat "/proc/$1/comm" 2>/dev/null) == "${2:0:15}" ]]
}

# tb_size_bytes SIZE: 512M / 1G / 4096 -> bytes (binary suffixes, like truncate(1)).
tb_size_bytes() {
  local size=$1 number unit
  [[ $size =~ ^([0-9]+)([KkMmGgTt]?)(i?B)?$ ]] || tb_die "bad size: $size"
  number=${BASH_REMATCH[1]}
  unit=${BASH_REMATCH[2]}
  case $unit in
    '') echo "$number" ;;
    [Kk]) echo $((number << 10)) ;;
    [Mm]) echo $((number << 20)) ;;
    [Gg]) echo $((number << 30)) ;;
    [Tt]) echo $((number << 40)) ;;
  esac
}

# tb_emit NAME VALUE...: print `export NAME=VALUE` lines quoted for eval; exported so that a
# later `... stop` (a child process) sees them.
tb_emit() {
  while (($# >= 2)); do
    printf 'export %s=%q\n' "$1" "$2"
    shift 2
  done
}

# tb_watchdog SECONDS WHAT: after SECONDS, say so on stderr and TERM this shell, whose EXIT trap
# then stops what it started (CTest's own timeout would SIGKILL it and leave targets running).
# Sets $watchdog_pid; the trap stops it with tb_kill_tree.
tb_watchdog() {
  local seconds=$1 what=$2 shell=$$
  (
    sleep "$seconds"
    echo "$what: timeout after ${seconds}s" >&2
    kill -TERM "$shell"
  ) &
  watchdog_pid=$!
}

# tb_run_case NAME FUNCTION [ARGS...]: runs FUNCTION in a subshell with errexit, so any failing
# step fails the case without ending the suite, and counts it in $passed or $failed. The
# subshell runs in the background and is waited for: a signal to the suite interrupts the wait
# at once, and the suite's EXIT trap stops the case through $case_pid ($case_name names it).
# Prints "--- NAME" before and "PASS: NAME" or "FAIL: NAME" after.
tb_run_case() {
  local name=$1 rc=0
  shift
  echo "--- $name"
  (
    set -e
    "$@"
  ) &
  case_pid=$!
  case_name=$name
  wait "$case_pid" || rc=$?
  case_pid=''
  if ((rc == 0)); then
    echo "PASS: $name"
    passed=$((passed + 1))
  else
    echo "FAIL: $name"
    failed=$((failed + 1))
  fi
}

# tb_target_dir DIR PREFIX: where a test bed keeps its files. Prints "OWNED PATH": DIR made
# absolute (and created) with OWNED 0, or, with DIR empty, a new mktemp -d /tmp/PREFIX.XXXXXX
# with OWNED 1 (the test bed removes it when it stops). Read it with
# `read -r owned dir`: the path comes last, so spaces in it survive.
tb_target_dir() {
  if [[ -z $1 ]]; then
    echo "1 $(mktemp -d "/tmp/$2.XXXXXX")"
  else
    mkdir -p "$1"
    echo "0 $(cd "$1" && pwd)"
  fi
}

# tb_end_suite STATUS: the last step of a suite's EXIT trap. Removes $work (kept with
# KEEP_WORKDIR=1), prints "$passed passed, $failed failed" unless the suite printed its summary
# itself ($summary_printed), and exits with STATUS, never 0 for a suite cut short.
tb_end_suite() {
  local status=$1
  if [[ ${KEEP_WORKDIR:-0} == 1 ]]; then
    echo "work directory kept: $work"
  else
    rm -rf "$work"
  fi
  if ((!summary_printed)); then
    ((status != 0)) || status=1
    echo "$passed passed, $failed failed"
  fi
  exit "$status"
}

# tb_report NAME OK [DETAIL...]: count a check of a scripted suite in the caller's $passed or
# $failed and print its outcome; a failure prints the details and the end of $report_log
# (default $work/attach.log).
tb_report() {
  local name=$1 ok=$2
  shift 2
  if ((ok)); then
    echo "PASS: $name"
    passed=$((passed + 1))
  else
    echo "FAIL: $name"
    local line
    for line in "$@"; do echo "    $line"; done
    local log=${report_log:-${work:-}/attach.log}
    [[ ! -s $log ]] || tail -n 15 "$log" | sed 's/^/    | /'
    failed=$((failed + 1))
  fi
}

# tb_wait_until SECONDS COMMAND...: true once COMMAND succeeds, false after SECONDS.
tb_wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# tb_stop_child PID: stop a background child of this shell (an attach, a client): TERM, KILL
# after 15 s (time for a clean logout), then reap it. An empty PID is nothing to do.
tb_stop_child() {
  [[ -n $1 ]] || return 0
  if tb_running "$1"; then
    kill -TERM "$1" 2>/dev/null || true
    tb_wait_gone "$1" 15 || kill -KILL "$1" 2>/dev/null || true
  fi
  wait "$1" 2>/dev/null || true
}

# tb_remove_testbed: the end of a scripted suite's EXIT trap: stops the tgtd tgtd-target.sh
# started (when the caller's $tgt_started is 1) and removes $work unless KEEP_WORKDIR=1.
tb_remove_testbed() {
  if ((tgt_started)); then "$(dirname "${BASH_SOURCE[0]}")/tgtd-target.sh" stop >/dev/null 2>&1 || true; fi
  if [[ ${KEEP_WORKDIR:-0} == 1 ]]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}

# Sanitizer reports (ASan, LeakSanitizer, UBSan) of the processes a suite starts. On stderr
# they would be lost: the suites discard the stderr of the short commands (`status --json
# 2>/dev/null`) and overwrite the attach's log with the next attach, and a leak is reported
# when the attach exits, after the checks that read its log.
# tb_sanitizer_route DIR: every sanitized process started from here on writes its report to
# DIR/report.PID instead (log_path; it overrides a caller's). Without options from the caller
# those of tools/run-tests.sh: a report ends the process, leaks are reported at exit. Programs
# built without -fsanitize ignore both variables.
tb_sanitizer_route() {
  mkdir -p "$1"
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}:log_path=$1/report"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}:log_path=$1/report"
}

# The first line of a report: ASan's and LSan's "==PID==ERROR: AddressSanitizer: ..." (and a
# crash's "AddressSanitizer:DEADLYSIGNAL"), UBSan's "FILE:LINE:COL: runtime error: ...".
tb_sanitizer_pattern='ERROR: [A-Za-z]*Sanitizer|[A-Za-z]*Sanitizer:DEADLYSIGNAL|LeakSanitizer|runtime error:'

# tb_sanitizer_reports DIR [LOG...]: prints every report in DIR (tb_sanitizer_route) with the
# line that names it, then the head of the report, and moves it to DIR/seen, so that the next
# call shows only new ones; prints the report lines of each LOG (a process's stderr, for a
# report that did not go to DIR). False when it found any.
tb_sanitizer_reports() {
  local dir=$1 file found=0
  shift
  mkdir -p "$dir/seen"
  for file in "$dir"/report.*; do
    [[ -e $file ]] || continue
    found=1
    echo "SANITIZER REPORT ${file##*/}: $(grep -m 1 -E "$tb_sanitizer_pattern" "$file" || head -n 1 "$file")"
    head -n 40 "$file" | sed 's/^/    | /'
    mv "$file" "$dir/seen/"
  done
  for file in "$@"; do
    [[ -f $file ]] && grep -qE "$tb_sanitizer_pattern" "$file" || continue
    found=1
    echo "SANITIZER REPORT in ${file##*/}:"
    grep -n -m 5 -E "$tb_sanitizer_pattern" "$file" | sed 's/^/    | /'
  done
  ((!found))
}

# tb_sanitizer_count DIR: how many reports tb_sanitizer_reports has shown from DIR so far.
tb_sanitizer_count() {
  find "$1/seen" -mindepth 1 -maxdepth 1 -name 'report.*' 2>/dev/null | wc -l
}
