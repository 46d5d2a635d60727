#!/usr/bin/env bash
# Multipath scenarios under continuous verified I/O (issue "Multipath I/O"): an initiator
# namespace and a target namespace joined by two veth pairs (tests/testbed/topology.sh), tgtd
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
#                  flight on the dead path must not land late over newer data (a hot region
#                  kept rewritten and read back, then checked in the backing file after the
#                  pause, tests/testbed/nbd_probe.py hot)
#   all-paths-down both links down for 4 s with no_path_retry queue: I/O waits, no error
#   target-restart tgtd killed (SIGKILL) and started again 4 s later on the same backing file,
#                  with no_path_retry queue: I/O waits, no error, no lost write
#   shutdown-without-path  SIGTERM while every path is down and reads are held (queue): attach
#                  still exits 0 within 15 s, the held requests end with an error (nbdcopy,
#                  still waiting when SIGTERM came, fails)
#   no-path-retry-n  tgtd killed with no_path_retry 3 (polling_interval 1): a read waits out
#                  the 3 s, then fails with EIO, new requests fail without waiting again; once tgtd is back the
#                  device serves again, and a write lands in the backing file
#   wrong-device   path 2 leads to another tgtd whose LUN is another device (same IQN, other
#                  scsi_id): it is refused, status says why, and its backing file stays untouched
#   failover       path_grouping_policy failover: only path 1 carries I/O until its link goes
#                  down, then only path 2, then path 1 again once it is back (failback)
#   lu-reset-proof like stale-write, against istgt with one portal group per portal: no other
#                  path shares the dead path's portal group, so its held writes are proven dead
#                  by a LOGICAL UNIT RESET through the healthy path
#   many-luns      tgtd with 4 data LUNs (its LUN 0 is the controller), `luns: all`: 4 exports
#                  on the one NBD listener (nbdinfo --list), exactly 2 sessions at the target
#                  (one per path, shared by the LUNs), verified random I/O on every LUN at once
#                  with path 1's link down for 5 s and zero errors, each LUN's writes in its own
#                  backing file only, `status` showing 4 maps; fail-path / reinstate-path on
#                  every LUN, and LUN 2 replaced under its number (another scsi_id) retired;
#                  LUN 3 deleted with tgtadm under verified I/O on LUNs 1, 4, 5: their sessions
#                  stay (same I_T nexus ids, no path event), their I/O goes on (issue 21)
#   reload         under verified I/O, mp.yaml edited and reloaded: path 3 added (it carries
#                  I/O), path 1 removed (drained, its session gone at the target), path_selector
#                  changed by SIGHUP (status shows it); login_timeout, noop_out_timeout and
#                  log.level applied (a black-holed path fails after the new NOP-Out timeout,
#                  its return not logged at warn); a changed target.wwid and a file that does
#                  not parse are refused by name, the attach unchanged
#   load-balance   every path limited to the same rate with tc tbf: reads through 1, 2 and 4
#                  paths (multibus); every path carries commands; prints the ratios to one
#                  path (the benchmark, not this test, judges them)
#   hedged-blackhole  path 1 black-holed for 8 s under verified reads with the default NOP-Out
#                  settings (5 s + 5 s: the path outlives the hole): reads stuck on it are
#                  hedged on path 2 (multipath.hedged_reads, on by default); zero errors, every
#                  read equal to the backing file, hedges counted in status; prints the longest
#                  read stall (a figure, not asserted)
#   flapping       path 1's link down for 1 s every 2 s (5 times) under verified I/O, once
#                  without and once with multipath.marginal_path (san_path_err_threshold 2):
#                  with it, path 1 is shown held out as marginal (status text and --json) from
#                  its third failure until it has stayed up san_path_err_recovery_time, then
#                  reinstated; zero errors both times; prints the stalls of each run (figures)
#
# With a sanitized build (IM_SANITIZE=ON as BUILD or IM_BIN) any report of ASan, LeakSanitizer
# or UBSan fails the scenario it came in: the attach's (a leak at its exit included), its
# commands' and nbd_exerciser's, all routed to files of the work directory (tb_sanitizer_route)
# and shown by the scenario's PASS/FAIL line.
#
# Environment: BUILD (build tree), IM_BIN, EXERCISER, MP_TIME (seconds of I/O per scenario,
# default 16), ASAN_OPTIONS / UBSAN_OPTIONS (default those of tools/run-tests.sh). Needs root
# (namespaces, tgtd). Everything it creates is removed on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"
build=${BUILD:-$repo/build}
im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
exerciser=${EXERCISER:-$build/tests/integration/nbd_exerciser}
io_time=${MP_TIME:-16}
topo=mpt$$
topo=${topo:0:12}

[[ -x $im_bin ]] || { echo "iscsi-mpio binary not found: $im_bin"; echo "0 passed, 1 failed"; exit 1; }
[[ -x $exerciser ]] || { echo "nbd_exerciser not found: $exerciser"; echo "0 passed, 1 failed"; exit 1; }

work=$(mktemp -d /tmp/im-multipath.XXXXXX)
tb_sanitizer_route "$work/sanitizer"
im_pid=""
tgt_started=0
istgt_started=0
passed=0
failed=0

stop_attach() {
  if [[ -n $im_pid ]] && kill -0 "$im_pid" 2>/dev/null; then
    kill -TERM "$im_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$im_pid" 2>/dev/null || break; sleep 0.1; done
    # Said, since a sanitized attach checks for leaks only when it exits by itself.
    if kill -0 "$im_pid" 2>/dev/null; then
      echo "    attach still running 5 s after SIGTERM: killed (no leak check at its exit)"
      kill -KILL "$im_pid" 2>/dev/null || true
    fi
  fi
  im_pid=""
}

cleanup() {
  stop_attach
  if ((tgt_started)); then "$repo/tests/testbed/tgtd-target.sh" stop >/dev/null 2>&1 || true; fi
  if ((istgt_started)); then "$repo/tests/testbed/istgt-target.sh" stop >/dev/null 2>&1 || true; fi
  "$repo/tests/testbed/topology.sh" down "$topo" || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

eval "$("$repo/tests/testbed/topology.sh" up "$topo" 4)"
mkdir -p "$work/tgt"
start_target() {
  local out
  out=$("$repo/tests/testbed/tgtd-target.sh" start --size 256M --netns "$TOPO_TGT_NS" \
    --portal 198.18.1.1 --portal 198.18.2.1 --portal 198.18.3.1 --portal 198.18.4.1 \
    --dir "$work/tgt" ${TGT_PORT:+--port "$TGT_PORT"})
  eval "$out"
  tgt_started=1
}
start_target

# path_line I [PORT]: the paths: entry of path I (target 198.18.I.1, source 198.18.I.2).
path_line() { echo "  - {portal: \"198.18.$1.1:${2:-$TGT_PORT}\", source: 198.18.$1.2}"; }
# The NOP-Out keys attach() writes: short, so that the scenarios see a black hole in ~3 s.
noop_keys="  noop_out_interval: 1
  noop_out_timeout: 2"

# attach NO_PATH_RETRY [EXTRA_MULTIPATH_KEYS] [PATHS_YAML] [ACTIVE]: start iscsi-mpio in the
# initiator namespace (default: paths 1 and 2) and wait until ACTIVE paths (default: all) are
# active.
attach() {
  local no_path_retry=$1 extra=${2:-} paths=${3:-} want=${4:-}
  [[ -n $paths ]] || paths="$(path_line 1)"$'\n'"$(path_line 2)"
  [[ -n $want ]] || want=$(grep -c portal <<<"$paths")
  cat >"$work/mp.yaml" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:multipath-suite}
target: {iqn: $TGT_IQN, lun: $TGT_LUN, login_timeout: 5}
paths:
$paths
multipath:
  path_selector: round-robin
$noop_keys
  polling_interval: 1
  no_path_retry: $no_path_retry
$extra
nbd: {listen: "unix:$work/lun.sock", export: lun}
control: {socket: "$work/control.sock"}
EOF
  rm -f "$work/lun.sock"
  ip netns exec "$TOPO_INI_NS" "$im_bin" attach "$work/mp.yaml" >"$work/attach.out" 2>"$work/attach.log" &
  im_pid=$!
  for _ in $(seq 100); do
    if [[ -S $work/lun.sock ]] &&
      (($(status_json | jq '[.paths[] | select(.state == "active")] | length') == want)); then
      return 0
    fi
    kill -0 "$im_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "attach did not bring $want path(s) up:"
  sed 's/^/    /' "$work/attach.log"
  return 1
}

status_json() { "$im_bin" status --json "$work/mp.yaml" 2>/dev/null || echo '{"paths":[]}'; }
# commands I: SCSI commands completed on path I so far.
commands() { status_json | jq ".paths[$(($1 - 1))].commands"; }
# wait_active I SECONDS: until path I is active again.
wait_active() {
  local _
  for _ in $(seq $(($2 * 10))); do
    [[ $(status_json | jq -r ".paths[$(($1 - 1))].state") == active ]] && return 0
    sleep 0.1
  done
  return 1
}
nbd_uri() { echo "nbd+unix:///lun?socket=$work/lun.sock"; }

# report NAME OK [DETAIL]: count and print a scenario's outcome. A sanitizer report since the
# last scenario (every scenario stops its attach before this) fails it.
report() {
  local ok=$2
  tb_sanitizer_reports "$work/sanitizer" "$work/attach.log" || ok=0
  if ((ok)); then
    echo "PASS: $1${3:+ ($3)}"
    passed=$((passed + 1))
  else
    echo "FAIL: $1"
    sed 's/^/    /' "$work/attach.log" | tail -n 20
    failed=$((failed + 1))
  fi
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
    # With a settle time the scenario is about held writes: a writer on a hot region past the
    # exerciser's span keeps 16 writes in flight on every path at the moment of the fault (the
    # exerciser, reading each batch back, often has only reads out). It rewrites the region's
    # 128 blocks in turn, each stamped with its generation and read back before its next
    # rewrite, and checks them all in the backing file after the settle time: a held write
    # that lands late puts an older generation back, which one of those reads finds
    # (nbd_probe.py hot). The exerciser verifies the rest.
    local span=() writer_pid=""
    if [[ $settle != 0 ]]; then
      span=(--span 192M)
      /usr/bin/python3 "$repo/tests/testbed/nbd_probe.py" hot "$(nbd_uri)" "$TGT_BACKING" \
        --offset $((192 << 20)) --size $((8 << 20)) --depth 16 --seconds "$io_time" \
        --settle "$settle" >"$work/writer.log" 2>&1 &
      writer_pid=$!
    fi
    "$exerciser" --uri "nbd+unix:///lun?socket=$work/lun.sock" --backing "$TGT_BACKING" \
      --ops 1000000 --time-limit "$io_time" --max-len 1M --settle "$settle" "${span[@]}" \
      >"$work/exerciser.log" 2>&1 &
    local ex_pid=$!
    sleep 3
    "$fault"
    sleep "$hold"
    "$im_bin" status "$work/mp.yaml" >"$work/status.during" 2>&1 || true
    "$restore"
    local ex_rc=0
    wait "$ex_pid" || ex_rc=$?
    if [[ -n $writer_pid ]]; then
      wait "$writer_pid" || ok=0
      sed 's/^/    hot region: /' "$work/writer.log" | tail -n 6
    fi
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
  report "$name" "$ok" "$(grep -o 'longest I/O stall [0-9]* ms' "$work/exerciser.log" || true)"
}

topo_cmd() { "$repo/tests/testbed/topology.sh" "$@"; }
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
    # Reads are held when SIGTERM comes: nbdcopy is still waiting for them (no_path_retry
    # queue). A copy that already ended would make this a shutdown with nothing held.
    if ! kill -0 "$copy_pid" 2>/dev/null; then
      echo "    nbdcopy ended before SIGTERM: no read was held"
      sed 's/^/      /' "$work/copy.log" | tail -n 3
      ok=0
    fi
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
    # The held reads end with an error, so nbdcopy fails, and it is not left hanging.
    local copy_rc=0
    for _ in $(seq 100); do kill -0 "$copy_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$copy_pid" 2>/dev/null; then
      echo "    nbdcopy still waiting 10 s after the attach exited"
      kill -KILL "$copy_pid" 2>/dev/null || true
      ok=0
    fi
    wait "$copy_pid" 2>/dev/null || copy_rc=$?
    echo "    nbdcopy exited with status $copy_rc: $(tail -n 1 "$work/copy.log")"
    ((copy_rc != 0)) || { echo "    nbdcopy succeeded although its reads were held"; ok=0; }
    links_up
    grep -E "shutting down|stopping for a restart|logged out" "$work/attach.log" | sed 's/^/    /'
  else
    ok=0
  fi
  report shutdown-without-path "$ok"
}

# no_path_retry 3 (polling_interval 1): with every path gone, a request waits 3 intervals and
# then fails with EIO; later requests fail at once; once a path is back the device serves again.
no_path_retry_n() {
  echo "--- no-path-retry-n"
  local ok=1
  if attach 3; then
    kill_target
    # libnbd through /usr/bin/python3 (python3-libnbd): the errno of each failed request.
    /usr/bin/python3 - "$(nbd_uri)" <<'PY' || ok=0
import errno, sys, time
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for attempt in ("first", "second"):
    start = time.monotonic()
    try:
        h.pread(4096, 0)
        print(f"    {attempt} read with no path succeeded")
        sys.exit(1)
    except nbd.Error as e:
        took = time.monotonic() - start
        print(f"    {attempt} read with no path failed after {took:.1f} s: {e.string} (errno {e.errno})")
        # libnbd gives the errno as its symbolic name.
        if e.errno not in ("EIO", errno.EIO):
            sys.exit(1)
        # The first waits out no_path_retry (3 intervals of 1 s); the second does not wait
        # for it again. Bounds by the 3 s hold, not by a deadline: the figures are printed.
        if attempt == "first" and not took >= 2.0:
            sys.exit(1)
        if attempt == "second" and took >= 2.0:
            sys.exit(1)
PY
    restart_target
    if wait_active 1 30 || wait_active 2 1; then
      # Service again: a write through the device lands in the backing file.
      /usr/bin/python3 - "$(nbd_uri)" "$TGT_BACKING" <<'PY' || ok=0
import os, sys
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
data = os.urandom(65536)
h.pwrite(data, 1 << 20)
h.flush()
with open(sys.argv[2], "rb") as f:
    f.seek(1 << 20)
    on_disk = f.read(len(data))
print("    after tgtd came back: write and flush done, backing file",
      "matches" if on_disk == data else "DIFFERS")
sys.exit(0 if on_disk == data else 1)
PY
    else
      echo "    no path came back within 30 s of the restart"
      ok=0
    fi
    grep -E "no usable path|path .* (failed|active)" "$work/attach.log" | sed 's/^/    /' | tail -n 6
  else
    ok=0
  fi
  stop_attach
  report no-path-retry-n "$ok"
}

# Path 2 leads to an impostor: another tgtd on 198.18.2.1 with the same IQN and another device.
wrong_device() {
  echo "--- wrong-device"
  local ok=1 impostor imp_port imp_backing
  mkdir -p "$work/impostor"
  impostor=$("$repo/tests/testbed/tgtd-target.sh" start --size 64M --netns "$TOPO_TGT_NS" \
    --portal 198.18.2.1 --dir "$work/impostor")
  # tgt derives its NAA designator (VPD 0x83) from scsi_id: another scsi_id, another WWID.
  (
    eval "$impostor"
    tgtadm -C "$TGT_CTL" --lld iscsi --mode logicalunit --op update --tid 1 --lun 1 \
      --params scsi_id=impostor-device,scsi_sn=impostor01
  )
  imp_port=$(eval "$impostor"; echo "$TGT_PORT")
  imp_backing=$(eval "$impostor"; echo "$TGT_BACKING")
  if attach queue "" "$(path_line 1)"$'\n'"$(path_line 2 "$imp_port")" 1; then
    "$exerciser" --uri "$(nbd_uri)" --backing "$TGT_BACKING" --ops 1000000 --time-limit 6 \
      --max-len 1M >"$work/exerciser.log" 2>&1 || ok=0
    "$im_bin" status "$work/mp.yaml" >"$work/status.during" 2>&1 || true
    sed 's/^/      /' "$work/status.during"
    status_shows "$work/status.during" "198\\.18\\.2\\.1:$imp_port from [0-9.]+ +failed refused" \
      "presents device" || ok=0
    sed 's/^/    /' "$work/exerciser.log" | tail -n 2
    # Nothing of the exerciser's data reached the impostor's LUN: its file is still all zeros.
    if cmp -s -n "$(stat -c %s "$imp_backing")" "$imp_backing" /dev/zero; then
      echo "    the impostor's backing file is untouched"
    else
      echo "    the impostor's backing file was written"
      ok=0
    fi
  else
    ok=0
  fi
  stop_attach
  (
    eval "$impostor"
    "$repo/tests/testbed/tgtd-target.sh" stop >/dev/null 2>&1 || true
  )
  report wrong-device "$ok"
}

# only_path_busy I LABEL: path I completes commands and the other of paths 1 and 2 none, over
# the time path I takes to complete some (at most 10 s): behaviour, not a rate, so a slow
# moment of the machine does not fail it.
only_path_busy() {
  local busy=$1 idle=$((3 - $1)) b0 i0 b1 i1 started=$SECONDS
  b0=$(commands "$busy") i0=$(commands "$idle")
  b1=$b0
  while ((b1 == b0 && SECONDS - started < 10)); do
    sleep 0.5
    b1=$(commands "$busy")
  done
  i1=$(commands "$idle")
  echo "    $2: path $busy +$((b1 - b0)) commands, path $idle +$((i1 - i0)) in $((SECONDS - started)) s"
  ((b1 > b0 && i1 == i0))
}

# end_exerciser_case NAME OK EX_PID LOG_PATTERN LINES: the end of a case that ran nbd_exerciser
# in the background (EX_PID; empty when the attach failed, OK then 0): waits for it, shows its
# last lines and the last LINES of the attach log matching LOG_PATTERN, stops the attach and
# reports NAME with the exerciser's longest stall. A failed exerciser fails the case.
end_exerciser_case() {
  local name=$1 ok=$2 ex_pid=$3 pattern=$4 lines=$5 ex_rc=0
  if [[ -n $ex_pid ]]; then
    wait "$ex_pid" || ex_rc=$?
    sed 's/^/    /' "$work/exerciser.log" | tail -n 2
    ((ex_rc == 0)) || ok=0
    grep -E "$pattern" "$work/attach.log" | sed 's/^/    /' | tail -n "$lines"
  fi
  stop_attach
  report "$name" "$ok" "$(grep -o 'longest I/O stall [0-9]* ms' "$work/exerciser.log" || true)"
}

# path_grouping_policy failover: one path at a time; failback immediate brings I/O back.
failover_grouping() {
  echo "--- failover"
  local ok=1 ex_pid=''
  if attach queue "  path_grouping_policy: failover"; then
    "$exerciser" --uri "$(nbd_uri)" --backing "$TGT_BACKING" --ops 1000000 --time-limit 16 \
      --max-len 256K >"$work/exerciser.log" 2>&1 &
    ex_pid=$!
    sleep 2
    only_path_busy 1 "path 1 in use" || ok=0
    link1_down
    sleep 2
    "$im_bin" status "$work/mp.yaml" >"$work/status.during" 2>&1 || true
    only_path_busy 2 "path 1 down" || ok=0
    sed 's/^/      /' "$work/status.during"
    # The group of path 2 carries I/O now.
    grep -A1 "status=active" "$work/status.during" | grep -q "198.18.2.1.*active ready" || ok=0
    link1_up
    if wait_active 1 15; then
      sleep 1
      only_path_busy 1 "path 1 back" || ok=0
    else
      echo "    path 1 did not come back"
      ok=0
    fi
  else
    ok=0
  fi
  end_exerciser_case failover "$ok" "$ex_pid" "path .* (failed|active)" 4
}

# The scenario runs against istgt: the suite's TGT_* name the target under test meanwhile.
lu_reset_proof() {
  local saved=("$TGT_IQN" "$TGT_LUN" "$TGT_PORT" "$TGT_BACKING")
  mkdir -p "$work/istgt"
  eval "$("$repo/tests/testbed/istgt-target.sh" start --size 256M --netns "$TOPO_TGT_NS" \
    --portal 198.18.1.1 --portal 198.18.2.1 --group-per-portal --dir "$work/istgt")"
  istgt_started=1
  TGT_IQN=$ISTGT_IQN TGT_LUN=$ISTGT_LUN TGT_PORT=$ISTGT_PORT TGT_BACKING=$ISTGT_BACKING
  scenario lu-reset-proof queue 10 hole1_on hole1_off 8 1 writes_proven_by_lu_reset
  "$repo/tests/testbed/istgt-target.sh" stop >/dev/null 2>&1 || true
  istgt_started=0
  TGT_IQN=${saved[0]} TGT_LUN=${saved[1]} TGT_PORT=${saved[2]} TGT_BACKING=${saved[3]}
}
writes_proven_by_lu_reset() {
  path1_failed_and_returned || return 1
  grep -q "re-issued: LOGICAL UNIT RESET through" "$work/attach.log" ||
    { echo "    no held write was proven dead by a LOGICAL UNIT RESET"; return 1; }
}

# lun_exercisers_ok PIDS STEM LABEL: waits for the per-LUN exercisers whose pids the array
# named PIDS holds (indexed by LUN), each logging to $work/STEM.N.log; prints each one's last
# line (its summary) and fails if one did.
lun_exercisers_ok() {
  local -n exercisers=$1
  local n rc failed=0
  for n in "${!exercisers[@]}"; do
    rc=0
    wait "${exercisers[n]}" || rc=$?
    echo "    LUN $n$3: $(tail -n 1 "$work/$2.$n.log")"
    ((rc == 0)) || { sed 's/^/      /' "$work/$2.$n.log" | tail -n 5; failed=1; }
  done
  return "$failed"
}

# target.luns: all over 2 paths. LUNs 2..4 join tgtd's LUN 1 for the scenario and leave after.
many_luns() {
  echo "--- many-luns"
  local ok=1 n backing=() uris=() pids=() rc
  backing[1]=$TGT_BACKING
  for n in 2 3 4; do
    backing[n]=$work/tgt/many-lun$n.img
    truncate -s 64M "${backing[n]}"
    tgtadm -C "$TGT_CTL" --lld iscsi --mode logicalunit --op new --tid 1 --lun "$n" \
      -b "${backing[n]}" || ok=0
  done
  # A listed LUN the target lacks ends the attach, naming the LUNs it has.
  cat >"$work/luns-missing.yaml" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:multipath-suite}
target: {iqn: $TGT_IQN, luns: [1, 7], login_timeout: 5}
paths:
$(path_line 1)
nbd: {listen: "unix:$work/missing.sock"}
control: {socket: "$work/missing.control"}
EOF
  rc=0
  timeout 30 ip netns exec "$TOPO_INI_NS" "$im_bin" attach "$work/luns-missing.yaml" \
    >/dev/null 2>"$work/missing.log" || rc=$?
  local expected="target.luns: LUN 7 does not exist on $TGT_IQN (the target has LUNs 0 (type 0x0c), 1, 2, 3, 4)"
  echo "    luns: [1, 7] ends the attach with status $rc: $(grep -o 'target.luns: .*' "$work/missing.log")"
  if ((rc != 1)) || ! grep -qF "$expected" "$work/missing.log"; then
    sed 's/^/      /' "$work/missing.log"
    ok=0
  fi
  cat >"$work/luns.yaml" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:multipath-suite}
target: {iqn: $TGT_IQN, luns: all, login_timeout: 5}
paths:
$(path_line 1)
$(path_line 2)
multipath: {noop_out_interval: 1, noop_out_timeout: 2, polling_interval: 1, no_path_retry: queue}
nbd: {listen: "unix:$work/luns.sock"}
control: {socket: "$work/luns.control"}
EOF
  ip netns exec "$TOPO_INI_NS" "$im_bin" attach "$work/luns.yaml" >"$work/attach.out" 2>"$work/attach.log" &
  im_pid=$!
  # Up: 4 maps with both paths active in each (`status --json` gives an array of maps).
  local maps_json='[]'
  for _ in $(seq 150); do
    maps_json=$("$im_bin" status --json "$work/luns.yaml" 2>/dev/null || echo '[]')
    [[ $(jq '[.[]? | .paths[] | select(.state == "active")] | length' <<<"$maps_json") == 8 ]] && break
    kill -0 "$im_pid" 2>/dev/null || break
    sleep 0.2
  done
  mapfile -t uris < <(grep '^nbd' "$work/attach.out")
  echo "    exports: ${uris[*]}"
  grep -E "not a block device|logging in to" "$work/attach.log" | sed 's/^/    /' | head -n 3
  if ((${#uris[@]} != 4)); then
    echo "    attach printed ${#uris[@]} export URIs, not 4"
    ok=0
  else
    # One NBD listener lists every export.
    local listed
    listed=$(nbdinfo --list --json "nbd+unix://?socket=$work/luns.sock" 2>/dev/null |
      jq '.exports | length' 2>/dev/null || echo 0)
    echo "    nbdinfo --list on $work/luns.sock: $listed exports"
    ((listed == 4)) || ok=0
    # One session per path at the target, whatever the number of LUNs.
    local sessions
    sessions=$(tgtadm -C "$TGT_CTL" --lld iscsi --mode target --op show |
      awk '/^Target 1:/ {t = 1; next} /^Target / {t = 0} t && /I_T nexus:/ {n++} END {print n + 0}')
    echo "    sessions at the target: $sessions"
    ((sessions == 2)) || ok=0

    # Each export's URI names its LUN: nbd+unix:///lunN?socket=...
    for n in 1 2 3 4; do
      local uri
      uri=$(printf '%s\n' "${uris[@]}" | grep "/lun$n?" || true)
      [[ -n $uri ]] || { echo "    no export for LUN $n"; ok=0; continue; }
      "$exerciser" --uri "$uri" --backing "${backing[n]}" --seed "$n" --ops 1000000 \
        --time-limit "$io_time" --max-len 256K --span 32M >"$work/exerciser.$n.log" 2>&1 &
      pids[n]=$!
    done
    sleep 3
    link1_down
    sleep 5
    "$im_bin" status "$work/luns.yaml" >"$work/status.during" 2>&1 || true
    link1_up
    lun_exercisers_ok pids exerciser "" || ok=0
    local maps
    maps=$(grep -cE '^lun[0-9]+ \(' "$work/status.during" || true)
    echo "    status during the fault: $maps maps"
    ((maps == 4)) || { sed 's/^/      /' "$work/status.during"; ok=0; }
    [[ $(grep -cE '198\.18\.1\.1:[0-9]+ from [0-9.]+ +failed faulty' "$work/status.during") == 4 ]] ||
      { echo "    status does not show path 1 failed in every map"; ok=0; }

    # No cross-LUN write: a tag written through each export is in its own backing file only.
    /usr/bin/python3 - "${backing[1]}" "${backing[2]}" "${backing[3]}" "${backing[4]}" \
      "${uris[@]}" <<'PY' || ok=0
import sys
import nbd
files, uris = sys.argv[1:5], sys.argv[5:9]
offset = 48 << 20
tags = {}
for n in range(1, 5):
    uri = next(u for u in uris if f"/lun{n}?" in u)
    tags[n] = (f"iscsi-mpio many-luns tag of LUN {n} ".encode() * 200)[:4096]
    h = nbd.NBD()
    h.connect_uri(uri)
    h.pwrite(tags[n], offset)
    h.flush()
    h.shutdown()
bad = 0
for n in range(1, 5):
    with open(files[n - 1], "rb") as f:
        f.seek(offset)
        got = f.read(4096)
    owner = next((m for m, t in tags.items() if t == got), None)
    if owner != n:
        print(f"    LUN {n}'s backing file holds " + (f"LUN {owner}'s tag" if owner else "no tag"))
        bad = 1
print("    each LUN's tag is in its own backing file" if not bad else "    cross-LUN write")
sys.exit(bad)
PY
    # fail-path and reinstate-path act on the path of every LUN, answering for each. Between
    # them LUN 2 is replaced under its number (another scsi_id, so another VPD 0x83 WWID): the
    # identity check of the reinstated paths refuses it on both, and it is retired while LUNs
    # 1, 3 and 4 go back to work.
    local p answer
    for p in 1 2; do
      answer=$("$im_bin" fail-path "$work/luns.yaml" "$p" 2>&1 || true)
      echo "    fail-path $p: $answer"
      (($(grep -oE 'LUN [1-4]: path [^;]* failed' <<<"$answer" | wc -l) == 4)) || ok=0
    done
    tgtadm -C "$TGT_CTL" --lld iscsi --mode logicalunit --op update --tid 1 --lun 2 \
      --params scsi_id=replaced-lun2,scsi_sn=replaced02 || ok=0
    for p in 1 2; do
      answer=$("$im_bin" reinstate-path "$work/luns.yaml" "$p" 2>&1 || true)
      echo "    reinstate-path $p: $answer"
      (($(grep -oE 'LUN [1-4]: path [^;]* reinstated' <<<"$answer" | wc -l) == 4)) || ok=0
    done
    local retired=0
    for _ in $(seq 100); do
      grep -q "export 'lun2' is retired" "$work/attach.log" && { retired=1; break; }
      sleep 0.1
    done
    grep "is retired" "$work/attach.log" | sed 's/^/    /'
    ((retired)) || { echo "    LUN 2 was not retired"; ok=0; }
    "$im_bin" status "$work/luns.yaml" >"$work/status.after" 2>&1 || true
    local active
    active=$(grep -cE '198\.18\.[12]\.1:[0-9]+ from [0-9.]+ +active ready' "$work/status.after" || true)
    echo "    after the replacement: $active paths active ready (LUNs 1, 3, 4: 6)"
    ((active == 6)) || { sed 's/^/      /' "$work/status.after"; ok=0; }
    if nbdinfo --size "$(printf '%s\n' "${uris[@]}" | grep '/lun2?')" >/dev/null 2>&1; then
      echo "    the retired LUN 2 is still served"
      ok=0
    fi
    nbdinfo --size "$(printf '%s\n' "${uris[@]}" | grep '/lun3?')" >/dev/null || ok=0
    many_luns_rescan || ok=0
  fi
  stop_attach
  for n in 2 3 4 5; do
    tgtadm -C "$TGT_CTL" --lld iscsi --mode logicalunit --op delete --tid 1 --lun "$n" \
      >/dev/null 2>&1 || true
    rm -f "${backing[n]}"
  done
  report many-luns "$ok"
}

# The target's LUN inventory changes under `luns: all`: LUN 5 added with tgtadm appears as an
# export (through REPORTED LUNS DATA HAS CHANGED or the periodic REPORT LUNS), over the same
# two sessions; LUN 3 deleted is retired after `iscsi-mpio rescan`: its new clients are told
# why, LUNs 1 and 4 go on. Uses many_luns' variables.
many_luns_rescan() {
  local ok=1 found=0 listed socket_uri="nbd+unix://?socket=$work/luns.sock"
  backing[5]=$work/tgt/many-lun5.img
  truncate -s 32M "${backing[5]}"
  tgtadm -C "$TGT_CTL" --lld iscsi --mode logicalunit --op new --tid 1 --lun 5 \
    -b "${backing[5]}" || return 1
  for _ in $(seq 100); do
    listed=$(nbdinfo --list --json "$socket_uri" 2>/dev/null | jq -r '[.exports[]."export-name"] | join(" ")' 2>/dev/null || true)
    [[ " $listed " == *" lun5 "* ]] && { found=1; break; }
    sleep 0.2
  done
  echo "    LUN 5 added on the target: exports now $listed"
  grep -E "LUN 5 appeared|serving export 'lun5'" "$work/attach.log" | sed 's/^/    /'
  ((found)) || return 1
  local uri5="nbd+unix:///lun5?socket=$work/luns.sock" tag
  tag=$(/usr/bin/python3 - "$uri5" "${backing[5]}" <<'PY'
import sys
import nbd
data = (b"iscsi-mpio rescan tag of LUN 5 " * 200)[:4096]
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(data, 1 << 20)
h.flush()
h.shutdown()
with open(sys.argv[2], "rb") as f:
    f.seek(1 << 20)
    print("in its backing file" if f.read(4096) == data else "NOT in its backing file")
PY
)
  echo "    a tag written through lun5 is $tag"
  [[ $tag == "in its backing file" ]] || ok=0
  local sessions
  sessions=$(tgtadm -C "$TGT_CTL" --lld iscsi --mode target --op show |
    awk '/^Target 1:/ {t = 1; next} /^Target / {t = 0} t && /I_T nexus:/ {n++} END {print n + 0}')
  echo "    sessions at the target with LUN 5 served: $sessions"
  ((sessions == 2)) || ok=0

  # Issue 21: LUN 3 is deleted while LUNs 1, 4 and 5 carry verified I/O over the same two
  # sessions. LUN 3's commands are answered LOGICAL UNIT NOT SUPPORTED (25/00): its paths fail
  # for LUN 3 alone, which lets go of the shared sessions instead of closing them, so the other
  # LUNs keep their sessions (the same I_T nexus ids at the target), log no path failure or
  # return, and their I/O goes on.
  local n ex_pids=() nexus_before nexus_after log_mark
  for n in 1 4 5; do
    "$exerciser" --uri "nbd+unix:///lun$n?socket=$work/luns.sock" --backing "${backing[n]}" \
      --seed "$((n + 20))" --ops 1000000 --time-limit 8 --max-len 256K --span 16M \
      >"$work/shared.$n.log" 2>&1 &
    ex_pids[n]=$!
  done
  # LUN 3 busy too: the target's 3F/0E retires it at once, so only commands it has in flight
  # at the delete are answered 25/00. Its own errors are expected.
  "$exerciser" --uri "nbd+unix:///lun3?socket=$work/luns.sock" --backing "${backing[3]}" \
    --seed 23 --ops 1000000 --time-limit 8 --max-len 256K --span 16M >"$work/shared.3.log" 2>&1 &
  local lun3_pid=$!
  nexus_before=$(nexus_ids)
  log_mark=$(wc -l <"$work/attach.log")
  sleep 2
  local deleted=0 answer
  for _ in $(seq 20); do
    tgtadm -C "$TGT_CTL" --lld iscsi --mode logicalunit --op delete --tid 1 --lun 3 \
      >/dev/null 2>&1 && { deleted=1; break; }
    sleep 0.5
  done
  ((deleted)) || { echo "    tgtadm could not delete LUN 3"; return 1; }
  lun_exercisers_ok ex_pids shared " during the delete of LUN 3" || ok=0
  wait "$lun3_pid" || true
  nexus_after=$(nexus_ids)
  echo "    I_T nexus ids at the target before the delete: $nexus_before; after: $nexus_after"
  [[ -n $nexus_before && $nexus_before == "$nexus_after" ]] ||
    { echo "    the sessions were re-established"; ok=0; }
  local lun3_failed
  lun3_failed=$(tail -n +$((log_mark + 1)) "$work/attach.log" | grep -m 1 -E "LUN 3: path .* failed" || true)
  # Without LUN 3's paths failing for its answer, the check above proves nothing.
  [[ -n $lun3_failed ]] || { echo "    LUN 3's paths never failed after its delete"; ok=0; }
  echo "    $lun3_failed"
  if tail -n +$((log_mark + 1)) "$work/attach.log" | grep -E "LUN [145]: path .* (failed|active)"; then
    echo "    the other LUNs' paths failed or logged in again after LUN 3 was deleted"
    ok=0
  fi
  answer=$("$im_bin" rescan "$work/luns.yaml" 2>&1 || true)
  echo "    LUN 3 deleted on the target; iscsi-mpio rescan: $answer"
  local retired=0
  for _ in $(seq 100); do
    grep -q "LUN 3 went away on the target" "$work/attach.log" && { retired=1; break; }
    sleep 0.1
  done
  grep "LUN 3 went away" "$work/attach.log" | head -n 1 | sed 's/^/    /'
  ((retired)) || { echo "    LUN 3 was not retired"; return 1; }
  local refusal
  # libnbd keeps the server's message out of its error; its debug log has it.
  refusal=$(LIBNBD_DEBUG=1 nbdinfo --size "nbd+unix:///lun3?socket=$work/luns.sock" 2>&1 || true)
  if [[ $refusal != *"went away on the target"* ]]; then
    echo "    a new client of lun3 was not told why: $refusal"
    ok=0
  else
    echo "    a new client of lun3 is refused: $(grep -o 'export lun3 was removed.*went away on the target' <<<"$refusal" | head -n 1)"
  fi
  for n in 1 4 5; do
    nbdinfo --size "nbd+unix:///lun$n?socket=$work/luns.sock" >/dev/null 2>&1 ||
      { echo "    lun$n is no longer served"; ok=0; }
  done
  ((ok))
}

# reload (multipathd reconfigure) under verified I/O: mp.yaml edited and applied to the running
# attach. Path 3 added (`iscsi-mpio reload`: it logs in and carries I/O), path 1 removed (it
# drains, its session logs out at the target), path_selector changed by SIGHUP (status shows
# it), the timeouts and log.level applied (reload_timeouts_and_level), a key that cannot change
# (target.wwid) and a file that does not parse refused by name with nothing applied. The
# exerciser checks every read and the backing file.
# The target's I_T nexus (session) ids, in order: a re-established session gets a new one.
nexus_ids() {
  tgtadm -C "$TGT_CTL" --lld iscsi --mode target --op show |
    awk '/^Target 1:/ {t = 1; next} /^Target / {t = 0} t && /I_T nexus:/ {print $3}' |
    sort -n | tr '\n' ' '
}
nexus_from() {
  tgtadm -C "$TGT_CTL" --lld iscsi --mode target --op show | grep -c "IP Address: $1\$" || true
}
reload_answer() {
  local rc=0
  "$im_bin" reload "$work/mp.yaml" "$@" >"$work/reload.out" 2>&1 || rc=$?
  sed 's/^/      /' "$work/reload.out"
  return "$rc"
}
# Issue 22: the timeouts and the log level by reload, under the reload case's verified I/O.
# noop_out_timeout 2 -> 3 reaches the sessions logged in before the reload: path 3 black-holed
# fails for "no answer ... to a NOP-Out ping within 3000 ms". log.level warn: the path's failure
# is logged, its return (info) is not.
reload_timeouts_and_level() {
  echo "    login_timeout 5 -> 6, noop_out_timeout 2 -> 3, log.level warn:"
  sed -i "s/login_timeout: 5/login_timeout: 6/; s/noop_out_timeout: 2/noop_out_timeout: 3/" \
    "$work/mp.yaml"
  printf 'log: {level: warn}\n' >>"$work/mp.yaml"
  reload_answer || return 1
  local answer
  for answer in "target.login_timeout (the next logins): 5 s -> 6 s" \
    "multipath.noop_out_timeout (the running sessions too): 2 s -> 3 s" "log.level: info -> warn"; do
    grep -qF "$answer" "$work/reload.out" || { echo "    the answer lacks '$answer'"; return 1; }
  done
  local mark failed=0
  mark=$(wc -l <"$work/attach.log")
  topo_cmd blackhole "$topo" 3 on
  for _ in $(seq 100); do
    tail -n +$((mark + 1)) "$work/attach.log" | grep -q "198.18.3.1.* failed" && { failed=1; break; }
    sleep 0.1
  done
  topo_cmd blackhole "$topo" 3 off
  tail -n +$((mark + 1)) "$work/attach.log" | grep -m 1 "198.18.3.1.* failed" | sed 's/^/      /'
  ((failed)) || { echo "    path 3 did not fail while black-holed"; return 1; }
  tail -n +$((mark + 1)) "$work/attach.log" |
    grep -q "198.18.3.1.* to a NOP-Out ping within 3000 ms" ||
    { echo "    the running session did not take noop_out_timeout 3"; return 1; }
  wait_active 2 15 || { echo "    path 3 did not come back"; return 1; }
  if tail -n +$((mark + 1)) "$work/attach.log" | grep -E "198.18.3.1.* active"; then
    echo "    an info line was logged at log.level warn"
    return 1
  fi
  echo "    path 3 failed after the new NOP-Out timeout and came back; its return, at info, not logged"
}

reload_paths() {
  echo "--- reload"
  local ok=1 ex_pid=''
  if attach queue; then
    "$exerciser" --uri "$(nbd_uri)" --backing "$TGT_BACKING" --ops 1000000 --time-limit 24 \
      --max-len 256K >"$work/exerciser.log" 2>&1 &
    ex_pid=$!
    sleep 2
    echo "    path 3 added:"
    sed -i "/198\.18\.2\.1/a\\$(path_line 3)" "$work/mp.yaml"
    reload_answer || ok=0
    grep -q "paths\[2\] added: 198.18.3.1" "$work/reload.out" || ok=0
    if wait_active 3 10; then
      local c0 c1
      c0=$(commands 3)
      sleep 1
      c1=$(commands 3)
      echo "    path 3 active, +$((c1 - c0)) commands in 1 s"
      ((c1 > c0)) || ok=0
    else
      echo "    path 3 did not become active"
      ok=0
    fi
    echo "    path 1 removed:"
    sed -i "/198\.18\.1\.1/d" "$work/mp.yaml"
    reload_answer || ok=0
    grep -q "path 198.18.1.1:$TGT_PORT from 198.18.1.2 removed" "$work/reload.out" || ok=0
    local gone=0
    for _ in $(seq 100); do
      (($(nexus_from 198.18.1.2) == 0)) && { gone=1; break; }
      sleep 0.1
    done
    echo "    sessions from 198.18.1.2 at the target: $(nexus_from 198.18.1.2), from .2.2 and .3.2: $(nexus_from 198.18.2.2) $(nexus_from 198.18.3.2)"
    ((gone)) || ok=0
    (($(status_json | jq '.paths | length') == 2)) || { echo "    status does not show 2 paths"; ok=0; }
    echo "    path_selector queue-length by SIGHUP:"
    sed -i "s/path_selector: round-robin/path_selector: queue-length/" "$work/mp.yaml"
    kill -HUP "$im_pid"
    local shown=0
    for _ in $(seq 50); do
      "$im_bin" status "$work/mp.yaml" >"$work/status.after" 2>&1 || true
      grep -q "policy='queue-length" "$work/status.after" && { shown=1; break; }
      sleep 0.1
    done
    grep "policy=" "$work/status.after" | head -n 1 | sed 's/^/      /'
    ((shown)) || ok=0
    reload_timeouts_and_level || ok=0
    echo "    target.wwid changed (refused):"
    cp "$work/mp.yaml" "$work/mp.good"
    sed -i "s/login_timeout: 6/login_timeout: 6, wwid: naa.6000000000000000000000000000000a/; s/path_selector: queue-length/path_selector: service-time/" "$work/mp.yaml"
    if reload_answer; then ok=0; fi
    grep -q "mp.yaml:2: target.wwid: " "$work/reload.out" || ok=0
    echo "    a file that does not parse (refused):"
    printf 'paths: [\n' >"$work/mp.yaml"
    if reload_answer; then ok=0; fi
    grep -q "has errors, nothing applied" "$work/reload.out" || ok=0
    kill -HUP "$im_pid"  # the attach reads it itself
    local told=0
    for _ in $(seq 50); do
      grep -q "reload refused.*mp.yaml has errors, nothing applied" "$work/attach.log" && { told=1; break; }
      sleep 0.1
    done
    ((told)) || { echo "    SIGHUP with a file that does not parse: no refusal logged"; ok=0; }
    cp "$work/mp.good" "$work/mp.yaml"
    "$im_bin" status "$work/mp.yaml" >"$work/status.after" 2>&1 || true
    status_shows "$work/status.after" "policy='queue-length" \
      "198\\.18\\.2\\.1:[0-9]+ from [0-9.]+ +active ready" \
      "198\\.18\\.3\\.1:[0-9]+ from [0-9.]+ +active ready" || ok=0
  else
    ok=0
  fi
  end_exerciser_case reload "$ok" "$ex_pid" "reload|removed by a reload|added: logging in" 12
}

# read_rate: MiB/s of 1 MiB sequential reads at queue depth 16 for 4 s (fio, nbd engine).
read_rate() {
  fio --name=lb --ioengine=nbd --uri="$(nbd_uri)" --rw=read --bs=1M --iodepth=16 \
    --size=256M --runtime=4 --time_based --output-format=json --output="$work/fio.json" \
    >/dev/null 2>&1 || { echo 0; return; }
  jq '.jobs[0].read.bw_bytes / 1048576 | floor' "$work/fio.json"
}

# multibus over paths limited to the same rate: throughput grows with the number of paths.
load_balance() {
  echo "--- load-balance"
  local ok=1 rate=400mbit i one=0 two=0 four=0
  for i in 1 2 3 4; do topo_cmd rate "$topo" "$i" "$rate"; done
  if attach queue "" "$(path_line 1)"; then one=$(read_rate); else ok=0; fi
  stop_attach
  if attach queue "" "$(path_line 1)"$'\n'"$(path_line 2)"; then two=$(read_rate); else ok=0; fi
  stop_attach
  if attach queue "" "$(for i in 1 2 3 4; do path_line "$i"; done)"; then
    four=$(read_rate)
    "$im_bin" status "$work/mp.yaml" 2>&1 | sed 's/^/      /'
    "$im_bin" status --json "$work/mp.yaml" >"$work/lb4.json" 2>/dev/null || true
  else
    ok=0
  fi
  stop_attach
  for i in 1 2 3 4; do topo_cmd rate "$topo" "$i" off; done
  local summary
  summary=$(awk -v r="$rate" -v a="$one" -v b="$two" -v c="$four" 'BEGIN {
    if (a == 0) { print "no rate measured"; exit }
    printf "%s per path: 1 path %d MiB/s, 2 paths %d MiB/s (%.2fx), 4 paths %d MiB/s (%.2fx)",
      r, a, b, b / a, c, c / a }')
  echo "    $summary (figures only: tools/bench --only multipath measures the scaling)"
  # Behaviour: with 4 paths (multibus, round-robin) every path carried commands.
  local idle
  idle=$(jq '[.paths[] | select(.commands == 0)] | length' "$work/lb4.json" 2>/dev/null || echo x)
  [[ $idle == 0 ]] || { echo "    with 4 paths, $idle path(s) carried no command"; ok=0; }
  ((one > 0 && two > 0 && four > 0)) || ok=0
  report load-balance "$ok" "$summary"
}

# flap_link1 COUNT: path 1's link down for 1 s every 2 s, COUNT times (a flaky cable or port).
flap_link1() {
  local i
  for ((i = 0; i < $1; i++)); do
    link1_down
    sleep 1
    link1_up
    sleep 1
  done
}

# flapping_run LABEL EXTRA_MULTIPATH_KEYS CHECK_FN: attach, 18 s of verified I/O while path 1
# flaps 5 times (seconds 2 to 12), CHECK_FN right after the last flap; sets run_ok and
# run_stalls (how often path 1 went back to work, the exerciser's stall figures). Both runs
# last as long, so their figures compare.
flap_count=5
# Reads stuck on a black-holed path, with the default NOP-Out settings (the path is judged dead
# only after ~10 s of silence, longer than the hole): hedged reads answer them through path 2.
hedged_blackhole() {
  echo "--- hedged-blackhole"
  local ok=1 saved_noop=$noop_keys
  noop_keys=""
  if attach queue; then
    "$exerciser" --uri "$(nbd_uri)" --backing "$TGT_BACKING" --reads-only --queue-depth 16 \
      --ops 1000000 --time-limit 14 --max-len 256K --stall-ms 300 >"$work/exerciser.log" 2>&1 &
    local ex_pid=$!
    sleep 3
    hole1_on
    sleep 8
    "$im_bin" status "$work/mp.yaml" >"$work/status.during" 2>&1 || true
    hole1_off
    local ex_rc=0
    wait "$ex_pid" || ex_rc=$?
    sed 's/^/    /' "$work/exerciser.log" | tail -n 2
    ((ex_rc == 0)) || ok=0
    local sent won
    sent=$(status_json | jq '[.paths[].hedges_sent] | add')
    won=$(status_json | jq '[.paths[].hedges_won] | add')
    echo "    hedges sent $sent, won $won"
    ((sent > 0 && won > 0)) || { echo "    no read was hedged"; ok=0; }
    grep -E "path .* (failed|active)" "$work/attach.log" | sed 's/^/    /' | tail -n 4
  else
    ok=0
  fi
  noop_keys=$saved_noop
  stop_attach
  echo "    longest read stall during the 8 s black hole (figure, not asserted):" \
    "$(grep -o 'longest I/O stall [0-9]* ms' "$work/exerciser.log" || echo unknown)"
  report hedged-blackhole "$ok"
}

flapping_run() {
  local label=$1 extra=$2 check=$3 seconds=18
  run_ok=1 run_stalls="no figures"
  if ! attach queue "$extra"; then
    run_ok=0
    stop_attach
    return
  fi
  "$exerciser" --uri "$(nbd_uri)" --backing "$TGT_BACKING" --ops 1000000 --time-limit "$seconds" \
    --max-len 256K --stall-ms 200 >"$work/exerciser.$label.log" 2>&1 &
  local ex_pid=$!
  sleep 2
  flap_link1 "$flap_count"
  "$check" || run_ok=0
  local ex_rc=0
  wait "$ex_pid" || ex_rc=$?
  sed 's/^/    /' "$work/exerciser.$label.log" | tail -n 2
  ((ex_rc == 0)) || run_ok=0
  # Each return to work put I/O on the flaky path again, for the next flap to disrupt.
  run_stalls="path 1 put back to work $(grep -cE "198\.18\.1\.1.* active: path is up" \
    "$work/attach.log" || true) times, $(grep -oE \
    'longest I/O stall [0-9]+ ms, [0-9]+ stalls of [0-9]+ ms or more \([0-9]+ ms in all\)' \
    "$work/exerciser.$label.log" || echo "no stall figures")"
  stop_attach
}

# Without the setting path 1 is reinstated on every return: it is active after the last flap.
flapping_plain_check() {
  wait_active 1 5 || { echo "    without marginal_path, path 1 did not come back"; return 1; }
}

# With it: held out as marginal, the time left shown, then reinstated once it stayed up.
flapping_marginal_check() {
  local ok=1 state="" left="" _
  for _ in $(seq 30); do
    state=$(status_json | jq -r '.paths[0].state')
    [[ $state == marginal ]] && break
    sleep 0.1
  done
  "$im_bin" status "$work/mp.yaml" >"$work/status.during" 2>&1 || true
  echo "    status after the last flap:"
  sed 's/^/      /' "$work/status.during"
  left=$(status_json | jq -r '.paths[0].marginal_ms_left')
  echo "    --json: path 1 state $state, marginal_ms_left $left"
  [[ $state == marginal ]] && jq -ne "$left > 0" >/dev/null || ok=0
  status_shows "$work/status.during" \
    "198\\.18\\.1\\.1:[0-9]+ from [0-9.]+ +failed marginal .* marginal: held out, reinstated in [0-9.]+ s" \
    "198\\.18\\.2\\.1:[0-9]+ from [0-9.]+ +active ready" || ok=0
  # Prometheus sees it too: state marginal, and the seconds left.
  ip netns exec "$TOPO_INI_NS" curl -s "http://127.0.0.1:$flap_metrics_port/metrics" >"$work/metrics.flap" || true
  grep -E '^iscsi_mpio_path_(state\{index="1",[^}]*state="marginal"\}|marginal_seconds_left\{index="1")' \
    "$work/metrics.flap" | sed 's/^/    metrics: /'
  grep -qE '^iscsi_mpio_path_state\{index="1",[^}]*state="marginal"\} 1$' "$work/metrics.flap" &&
    grep -qE '^iscsi_mpio_path_marginal_seconds_left\{index="1",[^}]*\} [0-9.]*[1-9]' "$work/metrics.flap" ||
    { echo "    metrics do not show path 1 marginal with time left"; ok=0; }
  local held_at=$SECONDS
  if wait_active 1 20; then
    echo "    path 1 reinstated $((SECONDS - held_at)) s after the last flap"
  else
    echo "    path 1 was not reinstated after its recovery time"
    ok=0
  fi
  grep -E "198\.18\.1\.1.* (marginal|active): path is up" "$work/attach.log" | sed 's/^/    /' | tail -n 3
  grep -q "held out for" "$work/attach.log" || { echo "    no 'held out' in the log"; ok=0; }
  ((ok))
}

flapping() {
  echo "--- flapping"
  local ok=1 plain marginal
  flapping_run without "" flapping_plain_check
  ((run_ok)) || ok=0
  plain=$run_stalls
  flap_metrics_port=$((20000 + $$ % 20000))
  flapping_run with "  marginal_path: {san_path_err_threshold: 2, san_path_err_forget_rate: 30, san_path_err_recovery_time: 5}
metrics: {listen: \"127.0.0.1:$flap_metrics_port\"}" flapping_marginal_check
  ((run_ok)) || ok=0
  marginal=$run_stalls
  echo "    stalls while path 1 flapped $flap_count times (figures, not asserted):"
  echo "      without marginal_path: $plain"
  echo "      with marginal_path:    $marginal"
  report flapping "$ok"
}

selected=("$@")
((${#selected[@]})) ||
  selected=(link-down blackhole stale-write all-paths-down target-restart shutdown-without-path
    no-path-retry-n wrong-device failover lu-reset-proof many-luns reload load-balance flapping
    hedged-blackhole)
for s in "${selected[@]}"; do
  case $s in
    link-down) scenario link-down queue 0 link1_down link1_up 5 1 path1_failed_and_returned ;;
    blackhole) scenario blackhole queue 0 hole1_on hole1_off 8 1 path1_failed_and_returned ;;
    stale-write) scenario stale-write queue 10 hole1_on hole1_off 8 1 path1_failed_and_returned ;;
    all-paths-down) scenario all-paths-down queue 0 links_down links_up 4 "1 2" ;;
    target-restart) scenario target-restart queue 0 kill_target restart_target 4 "1 2" ;;
    shutdown-without-path) shutdown_without_path ;;
    no-path-retry-n) no_path_retry_n ;;
    wrong-device) wrong_device ;;
    failover) failover_grouping ;;
    lu-reset-proof) lu_reset_proof ;;
    many-luns) many_luns ;;
    reload) reload_paths ;;
    load-balance) load_balance ;;
    flapping) flapping ;;
    hedged-blackhole) hedged_blackhole ;;
    *) echo "unknown scenario $s"; failed=$((failed + 1)) ;;
  esac
done

# Reports outside any scenario (none expected: each stops what it started before its report).
if ! tb_sanitizer_reports "$work/sanitizer"; then
  echo "FAIL: sanitizer reports outside the scenarios"
  failed=$((failed + 1))
fi
echo "sanitizer reports: $(tb_sanitizer_count "$work/sanitizer")"
echo "$passed passed, $failed failed"
((failed == 0))
