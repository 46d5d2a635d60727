#!/usr/bin/env bash
# Multipath scenarios under continuous verified I/O (issue "Multipath I/O"): an initiator
# namespace and a target namespace joined by two veth pairs (tools/testbed/topology.sh), tgtd
# listening on both target addresses, iscsi-mpio attached over both paths, nbd_exerciser writing
# and reading random data and checking it through NBD and in tgtd's backing file. Each scenario
# injects a fault, then passes only with zero I/O errors and zero mismatches; it prints the
# longest I/O stall the client saw.
#
#   tests/integration/multipath-suite.sh [SCENARIO...]   (default: all)
#
# Scenarios:
#   link-down      path 1's link down for 5 s, then up; path 1 must come back (failback)
#   blackhole      path 1 black-holed (nftables DROP, no RST) for 8 s, then restored
#   stale-write    like blackhole, then a pause before the final check: a write that was in
#                  flight on the dead path must not land late over newer data
#   all-paths-down both links down for 4 s with no_path_retry queue: I/O waits, no error
#   target-restart tgtd killed (SIGKILL) and started again 4 s later on the same backing file,
#                  with no_path_retry queue: I/O waits, no error, no lost write
#   shutdown-without-path  SIGTERM while every path is down and reads are held (queue): attach
#                  still exits 0 within 15 s, the held requests end with an error
#
# Environment: BUILD (build tree), IM_BIN, EXERCISER, MP_TIME (seconds of I/O per scenario,
# default 16). Needs root (namespaces, tgtd). Everything it creates is removed on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BUILD:-$repo/build}
im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
exerciser=${EXERCISER:-$build/tests/integration/nbd_exerciser}
io_time=${MP_TIME:-16}
topo=mpt$$
topo=${topo:0:12}

[[ -x $im_bin ]] || { echo "iscsi-mpio binary not found: $im_bin"; echo "0 passed, 1 failed"; exit 1; }
[[ -x $exerciser ]] || { echo "nbd_exerciser not found: $exerciser"; echo "0 passed, 1 failed"; exit 1; }

work=$(mktemp -d /tmp/im-multipath.XXXXXX)
im_pid=""
tgt_started=0
passed=0
failed=0

stop_attach() {
  if [[ -n $im_pid ]] && kill -0 "$im_pid" 2>/dev/null; then
    kill -TERM "$im_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$im_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$im_pid" 2>/dev/null || true
  fi
  im_pid=""
}

cleanup() {
  stop_attach
  if ((tgt_started)); then "$repo/tools/testbed/tgtd-target.sh" stop >/dev/null 2>&1 || true; fi
  "$repo/tools/testbed/topology.sh" down "$topo" || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

eval "$("$repo/tools/testbed/topology.sh" up "$topo" 2)"
mkdir -p "$work/tgt"
start_target() {
  local out
  out=$("$repo/tools/testbed/tgtd-target.sh" start --size 256M --netns "$TOPO_TGT_NS" \
    --portal 198.18.1.1 --portal 198.18.2.1 --dir "$work/tgt" ${TGT_PORT:+--port "$TGT_PORT"})
  eval "$out"
  tgt_started=1
}
start_target

# attach NO_PATH_RETRY: start iscsi-mpio in the initiator namespace over both paths.
attach() {
  local no_path_retry=$1
  cat >"$work/mp.yaml" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:multipath-suite}
target: {iqn: $TGT_IQN, lun: $TGT_LUN}
paths:
  - {portal: "198.18.1.1:$TGT_PORT", source: 198.18.1.2}
  - {portal: "198.18.2.1:$TGT_PORT", source: 198.18.2.2}
multipath:
  path_selector: round-robin
  noop_out_interval: 1
  noop_out_timeout: 2
  polling_interval: 1
  no_path_retry: $no_path_retry
nbd: {listen: "unix:$work/lun.sock", export: lun}
control: {socket: "$work/control.sock"}
EOF
  rm -f "$work/lun.sock"
  ip netns exec "$TOPO_INI_NS" "$im_bin" attach "$work/mp.yaml" >"$work/attach.out" 2>"$work/attach.log" &
  im_pid=$!
  for _ in $(seq 100); do
    [[ -S $work/lun.sock ]] && grep -q "198.18.2.1.*active" "$work/attach.log" &&
      grep -q "198.18.1.1.*active" "$work/attach.log" && return 0
    kill -0 "$im_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "attach did not bring both paths up:"
  sed 's/^/    /' "$work/attach.log"
  return 1
}

# status_shows FILE PATTERN...: every pattern is in the saved `iscsi-mpio status` output.
status_shows() {
  local file=$1 pattern
  shift
  for pattern in "$@"; do
    grep -qE "$pattern" "$file" || { echo "    status lacks /$pattern/:"; sed 's/^/      /' "$file"; return 1; }
  done
}

# scenario NAME NO_PATH_RETRY SETTLE FAULT_FN RESTORE_FN HOLD FAILED_PATHS [CHECK_FN]
# FAILED_PATHS: the path numbers `status` must show failed at the end of the fault.
scenario() {
  local name=$1 npr=$2 settle=$3 fault=$4 restore=$5 hold=$6 failed_paths=$7 check=${8:-}
  echo "--- $name"
  local ok=1
  if attach "$npr"; then
    "$exerciser" --uri "nbd+unix:///lun?socket=$work/lun.sock" --backing "$TGT_BACKING" \
      --ops 1000000 --time-limit "$io_time" --max-len 1M --settle "$settle" \
      >"$work/exerciser.log" 2>&1 &
    local ex_pid=$!
    sleep 3
    "$fault"
    sleep "$hold"
    "$im_bin" status "$work/mp.yaml" >"$work/status.during" 2>&1 || true
    "$restore"
    local ex_rc=0
    wait "$ex_pid" || ex_rc=$?
    "$im_bin" status "$work/mp.yaml" >"$work/status.after" 2>&1 || true
    echo "    status during the fault:"
    sed 's/^/      /' "$work/status.during"
    local p
    for p in $failed_paths; do
      status_shows "$work/status.during" "198\\.18\\.$p\\.1:[0-9]+ from [0-9.]+ +failed faulty" || ok=0
    done
    # After the fault every path is back at work (failback immediate).
    status_shows "$work/status.after" "198\\.18\\.1\\.1:[0-9]+ from [0-9.]+ +active ready" \
      "198\\.18\\.2\\.1:[0-9]+ from [0-9.]+ +active ready" || ok=0
    sed 's/^/    /' "$work/exerciser.log" | tail -n 3
    ((ex_rc == 0)) || ok=0
    grep -E "path .* (failed|active|refused)" "$work/attach.log" | sed 's/^/    /' | tail -n 8
    if [[ -n $check ]] && ! "$check"; then ok=0; fi
  else
    ok=0
  fi
  stop_attach
  if ((ok)); then
    echo "PASS: $name ($(grep -o 'longest I/O stall [0-9]* ms' "$work/exerciser.log" || true))"
    passed=$((passed + 1))
  else
    echo "FAIL: $name"
    sed 's/^/    /' "$work/attach.log" | tail -n 20
    failed=$((failed + 1))
  fi
}

topo_cmd() { "$repo/tools/testbed/topology.sh" "$@"; }
link1_down() { topo_cmd link "$topo" 1 down; }
link1_up() { topo_cmd link "$topo" 1 up; }
hole1_on() { topo_cmd blackhole "$topo" 1 on; }
hole1_off() { topo_cmd blackhole "$topo" 1 off; }
links_down() { topo_cmd link "$topo" 1 down; topo_cmd link "$topo" 2 down; }
links_up() { topo_cmd link "$topo" 1 up; topo_cmd link "$topo" 2 up; }
# A crash, not a shutdown: no logout, no FIN from an orderly close of the session.
kill_target() { kill -KILL "$TGT_PID"; }
restart_target() { start_target; }

# Path 1 failed and later came back: failback puts it to work again.
path1_failed_and_returned() {
  local failed_line returned
  failed_line=$(grep -n "198.18.1.1.* failed" "$work/attach.log" | head -n 1 | cut -d: -f1)
  [[ -n $failed_line ]] || { echo "    path 1 never failed"; return 1; }
  returned=$(tail -n +"$failed_line" "$work/attach.log" | grep -c "198.18.1.1.* active: path is up" || true)
  ((returned > 0)) || { echo "    path 1 did not come back"; return 1; }
}

shutdown_without_path() {
  echo "--- shutdown-without-path"
  local ok=1
  if attach queue; then
    nbdcopy "nbd+unix:///lun?socket=$work/lun.sock" /dev/null >"$work/copy.log" 2>&1 &
    local copy_pid=$!
    sleep 1
    links_down
    sleep 2
    local started=$SECONDS rc=0
    kill -TERM "$im_pid"
    for _ in $(seq 150); do kill -0 "$im_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$im_pid" 2>/dev/null; then
      echo "    attach still running 15 s after SIGTERM"
      ok=0
    else
      wait "$im_pid" || rc=$?
      echo "    attach exited with status $rc after $((SECONDS - started)) s"
      ((rc == 0)) || ok=0
    fi
    im_pid=""
    wait "$copy_pid" 2>/dev/null || true
    links_up
    grep -E "shutting down|logged out" "$work/attach.log" | sed 's/^/    /'
  else
    ok=0
  fi
  if ((ok)); then
    echo "PASS: shutdown-without-path"
    passed=$((passed + 1))
  else
    echo "FAIL: shutdown-without-path"
    sed 's/^/    /' "$work/attach.log" | tail -n 20
    failed=$((failed + 1))
  fi
}

selected=("$@")
((${#selected[@]})) ||
  selected=(link-down blackhole stale-write all-paths-down target-restart shutdown-without-path)
for s in "${selected[@]}"; do
  case $s in
    link-down) scenario link-down queue 0 link1_down link1_up 5 1 path1_failed_and_returned ;;
    blackhole) scenario blackhole queue 0 hole1_on hole1_off 8 1 path1_failed_and_returned ;;
    stale-write) scenario stale-write queue 10 hole1_on hole1_off 8 1 path1_failed_and_returned ;;
    all-paths-down) scenario all-paths-down queue 0 links_down links_up 4 "1 2" ;;
    target-restart) scenario target-restart queue 0 kill_target restart_target 4 "1 2" ;;
    shutdown-without-path) shutdown_without_path ;;
    *) echo "unknown scenario $s"; failed=$((failed + 1)) ;;
  esac
done

echo "$passed passed, $failed failed"
((failed == 0))
