#!/usr/bin/env bash
# R2T and Data-Out under every legal negotiation (issue #3): iscsi-mpio writes against tgtd and
# istgt, one cell per InitialR2T x ImmediateData, the data compared through NBD and in the
# target's backing file, the write data flow checked PDU by PDU against the login.
#
#   tests/integration/r2t-matrix.sh
#
# The values in effect are what the target accepts of our offer (RFC 7143 §13: InitialR2T is an
# OR, ImmediateData an AND, FirstBurstLength / MaxBurstLength / MaxOutstandingR2T the minimum;
# MaxRecvDataSegmentLength is declared by each side for what it receives, §13.12). iscsi-mpio
# offers InitialR2T=No, ImmediateData=Yes, FirstBurstLength=262144, MaxBurstLength=16776192,
# MaxOutstandingR2T=4, so each cell sets the target's side: tgtd through `tgtadm --op update
# --mode target` before the attach, istgt through its [Global] section
# (tests/testbed/istgt-target.sh options). Every cell has FirstBurstLength 64 KiB below
# MaxBurstLength 256 KiB, MaxOutstandingR2T 4 on the target, a MaxRecvDataSegmentLength of its
# own (some not dividing the bursts), and writes of up to 4 MiB.
#
# Each cell: start the target, start tests/integration/iscsi-pdu-trace.py on its port, attach,
# run nbd_exerciser --backing (bounded ops and time), stop all three. A cell passes when the
# data matches, the login settled on the configured values, the trace saw no rule broken by the
# initiator (immediate data, unsolicited Data-Out, FirstBurstLength, segment sizes, R2T
# windows, F bits, data complete at status), and the write path used what was negotiated
# (R2Ts for writes above FirstBurstLength, immediate data and unsolicited Data-Out when allowed).
#
# Facts about the targets (Debian 12), checked on this machine:
# - tgtd 1.0.85 takes `--op update --mode target --tid 1 --name KEY --value V` for InitialR2T,
#   ImmediateData, FirstBurstLength, MaxBurstLength, MaxOutstandingR2T and
#   MaxRecvDataSegmentLength; new logins get them (it declares MaxRecvDataSegmentLength as set).
# - istgt 0.4 refuses to start with [Global] InitialR2T No: its InitialR2T=No cells are skipped.
# - Both answer MaxOutstandingR2T=4, the minimum of our offer and their setting: up to 4 R2Ts
#   of one write are outstanding at once, each answered by its own Data-Out sequence.
#
# Environment (all optional):
#   BUILD        build directory (default: <repo>/build)
#   IM_BIN       iscsi-mpio binary (default: $BUILD/tools/iscsi-mpio/iscsi-mpio)
#   EXERCISER    nbd_exerciser binary (default: $BUILD/tests/integration/nbd_exerciser)
#   R2T_OPS      I/O operations per cell (default 100)   R2T_SEED  exerciser seed (default random)
#   R2T_TARGETS  targets to run (default "tgtd istgt")
#   R2T_TIMEOUT  seconds before the run stops itself (default 170, under CTest's 240)
#   KEEP_WORKDIR=1  keep the work directory (logs, configs, traces)
#
# Prints a table with the values in effect per cell and PASS/FAIL/SKIP; exit status non-zero
# when a cell failed. Needs root (targets, packet capture on lo); only uses 127.0.0.1.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly repo
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"

readonly build=${BUILD:-$repo/build}
readonly im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
readonly exerciser=${EXERCISER:-$build/tests/integration/nbd_exerciser}
readonly tracer=$repo/tests/integration/iscsi-pdu-trace.py
readonly ops=${R2T_OPS:-100}
readonly seed=${R2T_SEED:-$((RANDOM * 32768 + RANDOM))}
readonly targets=${R2T_TARGETS:-tgtd istgt}
readonly lun_size=64M
readonly first_burst=65536 max_burst=262144 target_max_outstanding_r2t=4
# What iscsi-mpio offers (initiator/iscsi/include/iscsi/negotiation.hpp OperationalProposal).
readonly offer_first_burst=262144 offer_max_burst=16776192 offer_max_outstanding_r2t=4
readonly export_name=lun1
# Seconds: login + INQUIRY + READ CAPACITY; the exerciser's own limit and our bound on it.
readonly attach_wait=30 io_time_limit=20 io_deadline=60
# InitialR2T ImmediateData MaxRecvDataSegmentLength. 131072 > FirstBurstLength: immediate data
# carries the whole first burst; 24576 divides neither burst; 16384: the unsolicited burst
# goes as four Data-Out PDUs.
readonly cells=("Yes Yes 131072" "Yes No 24576" "No Yes 24576" "No No 16384")

work=$(mktemp -d /tmp/im-r2t.XXXXXX)
readonly work
watchdog_pid=''
cell_pid=''
failed=0
passed=0
skipped=0
done_ok=0

log() { printf '%s\n' "$*"; }



# stop_target ENV_FILE: stop the target whose start output ENV_FILE holds (tgtd or istgt).
stop_target() {
  local env_file=$1 kind
  [[ -s $env_file ]] || return 0
  kind=$(basename "$env_file" .env)
  kind=${kind%%-*}
  (
    # shellcheck disable=SC1090
    source "$env_file"
    "$repo/tests/testbed/$kind-target.sh" stop
  ) || true
  rm -f "$env_file"
}

# stop_leftovers: whatever a cell started and did not stop itself (it failed half-way).
stop_leftovers() {
  local env_file
  tb_stop_recorded "$work/pids"
  for env_file in "$work"/*.env; do
    if [[ -e $env_file ]]; then stop_target "$env_file"; fi
  done
}

cleanup() {
  local status=$?
  set +e
  [[ -z $watchdog_pid ]] || tb_kill_tree "$watchdog_pid"
  if [[ -n $cell_pid ]]; then
    log "stopping the running cell"
    tb_kill_tree "$cell_pid"
    failed=$((failed + 1))
  fi
  stop_leftovers
  if [[ ${KEEP_WORKDIR:-0} == 1 ]]; then
    log "work directory kept: $work"
  else
    rm -rf "$work"
  fi
  if ((!done_ok)); then
    ((status != 0)) || status=1
    log "$passed passed, $failed failed, $skipped skipped (interrupted)"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Our own bound: CTest's timeout would SIGKILL us and leave targets running.
tb_watchdog "${R2T_TIMEOUT:-170}" r2t-matrix

# --- one cell ------------------------------------------------------------------------------

# start_target KIND NAME INITIAL_R2T IMMEDIATE_DATA MRDSL: the target with the cell's keys;
# its start output goes to $work/KIND-NAME.env.
start_target() {
  local kind=$1 name=$2 initial_r2t=$3 immediate_data=$4 mrdsl=$5
  local env_file=$work/$kind-$name.env
  touch "$env_file"  # registered for cleanup before the start, filled by it
  case $kind in
    tgtd)
      "$repo/tests/testbed/tgtd-target.sh" start --dir "$work/$name" --size "$lun_size" \
        >"$env_file"
      local ctl key value shown
      # shellcheck disable=SC1090
      ctl=$(source "$env_file" && echo "$TGT_CTL")
      # Before the attach: tgtd applies target parameters to the sessions that log in later.
      for key in InitialR2T:"$initial_r2t" ImmediateData:"$immediate_data" \
        FirstBurstLength:$first_burst MaxBurstLength:$max_burst \
        MaxOutstandingR2T:$target_max_outstanding_r2t MaxRecvDataSegmentLength:"$mrdsl"; do
        value=${key#*:}
        key=${key%%:*}
        tgtadm -C "$ctl" --lld iscsi --mode target --op update --tid 1 --name "$key" \
          --value "$value"
        shown=$(tgtadm -C "$ctl" --lld iscsi --mode target --op show --tid 1)
        grep -qx "$key=$value" <<<"$shown" || { log "tgtd did not take $key=$value"; return 1; }
      done
      ;;
    istgt)
      "$repo/tests/testbed/istgt-target.sh" start --dir "$work/$name" --size "$lun_size" \
        --initial-r2t "$initial_r2t" --immediate-data "$immediate_data" \
        --first-burst $first_burst --max-burst $max_burst \
        --max-outstanding-r2t $target_max_outstanding_r2t --max-recv-data-segment "$mrdsl" \
        >"$env_file"
      ;;
  esac
}

# write_config FILE PORTAL IQN LUN SOCKET: the YAML `iscsi-mpio attach` reads.
write_config() {
  cat >"$1" <<EOF
initiator:
  name: iqn.2026-11.org.iscsi-mpio:r2t-matrix
target:
  iqn: $3
  lun: $4
  login_timeout: 10
paths:
  - {portal: "$2"}
# Commands up to 4 MiB, far above MaxBurstLength: without this a command is one burst, and the
# R2T sequences of one large WRITE (several bursts, MaxOutstandingR2T) would go untested.
multipath:
  max_sectors_kb: 4096
nbd:
  listen: unix:$5
  export: $export_name
control:
  socket: ${5%.sock}.control
EOF
}

# wait_for_file FILE SECONDS PID: until FILE is non-empty, or PID exits, or time runs out.
wait_for_file() {
  local file=$1 deadline=$((SECONDS + $2)) pid=$3
  while ((SECONDS < deadline)); do
    [[ -s $file ]] && return 0
    tb_running "$pid" || return 1
    sleep 0.1
  done
  return 1
}

wait_export() {
  local uri=$1 pid=$2 deadline=$((SECONDS + attach_wait))
  while ((SECONDS < deadline)); do
    tb_running "$pid" || return 1
    nbdinfo --size "$uri" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

# run_cell KIND INITIAL_R2T IMMEDIATE_DATA MRDSL: one cell in this (sub)shell; appends its row
# to $work/rows and returns non-zero when it failed.
run_cell() {
  local kind=$1 initial_r2t=$2 immediate_data=$3 mrdsl=$4
  local name=ir2t${initial_r2t}-imm${immediate_data}
  local dir=$work/$kind-$name
  mkdir -p "$dir"
  local -a problems=()
  start_target "$kind" "$name" "$initial_r2t" "$immediate_data" "$mrdsl"
  local port iqn lun backing env_file=$work/$kind-$name.env
  # shellcheck disable=SC1090
  port=$(source "$env_file" && echo "${TGT_PORT:-}${ISTGT_PORT:-}")
  # shellcheck disable=SC1090
  iqn=$(source "$env_file" && echo "${TGT_IQN:-}${ISTGT_IQN:-}")
  # shellcheck disable=SC1090
  lun=$(source "$env_file" && echo "${TGT_LUN:-}${ISTGT_LUN:-}")
  # shellcheck disable=SC1090
  backing=$(source "$env_file" && echo "${TGT_BACKING:-}${ISTGT_BACKING:-}")
  log "target $kind $iqn LUN $lun on 127.0.0.1:$port"

  tb_spawn "$work/pids" "$dir/trace.log" python3 "$tracer" --port "$port" --out "$dir/trace.env" \
    --ready "$dir/trace.ready"
  local trace_pid=$spawned
  wait_for_file "$dir/trace.ready" 10 "$trace_pid" || {
    sed 's/^/    /' "$dir/trace.log"
    log "packet trace did not start"
    return 1
  }

  local socket=$dir/im.sock uri
  uri="nbd+unix:///$export_name?socket=$socket"
  write_config "$dir/im.yaml" "127.0.0.1:$port" "$iqn" "$lun" "$socket"
  tb_spawn "$work/pids" "$dir/im.log" "$im_bin" attach "$dir/im.yaml"
  local im_pid=$spawned
  local io_rc=0 io_ran=0
  if wait_export "$uri" "$im_pid"; then
    io_ran=1
    timeout --kill-after=5 "$io_deadline" "$exerciser" --uri "$uri" --backing "$backing" \
      --ops "$ops" --max-len 4M --queue-depth 8 --time-limit "$io_time_limit" --seed "$seed" \
      >"$dir/exerciser.log" 2>&1 || io_rc=$?
    sed 's/^/    /' "$dir/exerciser.log" | tail -n 5
    ((io_rc == 0)) || problems+=("nbd_exerciser exit status $io_rc")
  else
    log "no export after ${attach_wait}s; iscsi-mpio output:"
    sed 's/^/    /' "$dir/im.log" | tail -n 15
    problems+=("no export")
  fi
  tb_stop_pid "$im_pid"
  tb_stop_pid "$trace_pid"
  stop_target "$env_file"
  sed 's/^/    trace: /' "$dir/trace.log"

  # The trace's findings (trace_* variables, iscsi-pdu-trace.py's output).
  local trace_logins=0 trace_initial_r2t='?' trace_immediate_data='?' trace_first_burst='?'
  local trace_max_burst='?' trace_max_outstanding_r2t='?' trace_target_mrdsl='?'
  local trace_complete=no
  local trace_violations=0 trace_writes=0 trace_large_writes=0 trace_immediate_bytes=0
  local trace_unsolicited_pdus=0 trace_r2ts=0 trace_solicited_pdus=0
  # shellcheck disable=SC1091
  [[ -s $dir/trace.env ]] && source "$dir/trace.env"
  if ((trace_logins != 1)); then
    problems+=("trace saw $trace_logins logins, expected 1")
  fi
  # In effect = the §13 rule applied to our offer and the target's setting.
  local want_first=$((offer_first_burst < first_burst ? offer_first_burst : first_burst))
  local want_max=$((offer_max_burst < max_burst ? offer_max_burst : max_burst))
  local want_r2t=$((offer_max_outstanding_r2t < target_max_outstanding_r2t ?
    offer_max_outstanding_r2t : target_max_outstanding_r2t))
  local got="$trace_initial_r2t $trace_immediate_data $trace_first_burst $trace_max_burst"
  got+=" $trace_max_outstanding_r2t $trace_target_mrdsl"
  local want="$initial_r2t $immediate_data $want_first $want_max $want_r2t $mrdsl"
  [[ $got == "$want" ]] || problems+=("in effect: $got, expected $want")
  ((trace_violations == 0)) || problems+=("$trace_violations initiator rule violations")
  if [[ $trace_complete == yes && $io_ran == 1 && $io_rc == 0 ]]; then
    ((trace_large_writes > 0)) || problems+=("no write above MaxBurstLength was traced")
    ((trace_r2ts > 0)) || problems+=("no R2T traced")
    # iscsi-mpio sends all the unsolicited data it may (initiator/iscsi/src/session.cpp).
    if [[ $trace_immediate_data == Yes ]]; then
      ((trace_immediate_bytes > 0)) || problems+=("ImmediateData=Yes but no immediate data")
    fi
    local unsolicited_expected=0
    [[ $trace_initial_r2t == No ]] &&
      { [[ $trace_immediate_data == No ]] || ((mrdsl < want_first)); } && unsolicited_expected=1
    if ((unsolicited_expected)); then
      ((trace_unsolicited_pdus > 0)) || problems+=("InitialR2T=No but no unsolicited Data-Out")
    fi
  fi

  # A partial trace (the capture lost packets) leaves the protocol checks above unrun: such a
  # cell does not pass on its data alone. Exit status 3 asks the caller to run it once more.
  local partial=0
  if [[ $trace_complete != yes ]]; then
    problems+=("packet trace partial: the R2T and Data-Out checks could not run")
    partial=1
  fi
  local result=PASS
  ((${#problems[@]} == 0)) || result=FAIL
  local trace_mark=''
  [[ $trace_complete == yes ]] || trace_mark=' (trace partial)'
  if ((trace_logins == 0)); then
    # Nothing seen: the table shows what the cell configured instead.
    read -r trace_initial_r2t trace_immediate_data trace_first_burst trace_max_burst \
      trace_max_outstanding_r2t trace_target_mrdsl <<<"$want"
    trace_mark=' (configured values: no login traced)'
  fi
  printf '%-6s %-4s %-4s %7s %8s %4s %7s %8s %9s %7s %6s %8s  %s%s\n' "$kind" \
    "$trace_initial_r2t" "$trace_immediate_data" "$trace_first_burst" "$trace_max_burst" \
    "$trace_max_outstanding_r2t" "$trace_target_mrdsl" "$trace_writes/$trace_large_writes" \
    "$trace_immediate_bytes" "$trace_unsolicited_pdus" "$trace_r2ts" "$trace_solicited_pdus" \
    "$result" "$trace_mark" >>"$work/rows"
  local problem
  for problem in "${problems[@]}"; do log "  problem: $problem"; done
  [[ $result == PASS ]] && return 0
  # Only the partial trace went wrong: worth another run.
  ((partial && ${#problems[@]} == 1)) && return 3
  return 1
}

# --- main ----------------------------------------------------------------------------------

((EUID == 0)) || tb_die "needs root (targets, packet capture on lo)"
for tool in nbdinfo python3 tgtadm timeout; do
  command -v "$tool" >/dev/null || tb_die "missing $tool (run tools/install-deps.sh)"
done
for kind in $targets; do
  case $kind in tgtd | istgt) command -v "$kind" >/dev/null || tb_die "missing $kind" ;;
    *) tb_die "R2T_TARGETS: unknown target $kind" ;; esac
done
[[ -x $im_bin ]] || tb_die "iscsi-mpio binary not found: $im_bin"
[[ -x $exerciser ]] || tb_die "nbd_exerciser not built: $exerciser"

log "r2t-matrix: targets [$targets], FirstBurstLength $first_burst, MaxBurstLength $max_burst," \
  "target MaxOutstandingR2T $target_max_outstanding_r2t, $ops ops of up to 4 MiB per cell," \
  "seed $seed, work dir $work"
started=$SECONDS
: >"$work/rows"
for kind in $targets; do
  for cell in "${cells[@]}"; do
    read -r initial_r2t immediate_data mrdsl <<<"$cell"
    label="$kind InitialR2T=$initial_r2t ImmediateData=$immediate_data MRDSL=$mrdsl"
    if [[ $kind == istgt && $initial_r2t == No ]]; then
      log "--- $label: SKIP (istgt 0.4 refuses InitialR2T No)"
      printf '%-6s %-4s %-4s %7s %8s %4s %7s %8s %9s %7s %6s %8s  %s\n' istgt No \
        "$immediate_data" - - - "$mrdsl" - - - - - "SKIP (istgt 0.4: InitialR2T Yes only)" \
        >>"$work/rows"
      skipped=$((skipped + 1))
      continue
    fi
    log "--- $label"
    cell_started=$SECONDS
    for attempt in 1 2; do
      rows_before=$(wc -l <"$work/rows")
      rc=0
      (
        set -e
        run_cell "$kind" "$initial_r2t" "$immediate_data" "$mrdsl"
      ) &
      cell_pid=$!
      wait "$cell_pid" || rc=$?
      cell_pid=''
      stop_leftovers
      ((rc == 3 && attempt == 1)) || break
      log "    the packet trace was partial: running the cell again"
      head -n "$rows_before" "$work/rows" >"$work/rows.keep" && mv "$work/rows.keep" "$work/rows"
    done
    if ((rc == 0)); then
      log "PASS: $label ($((SECONDS - cell_started)) s)"
      passed=$((passed + 1))
    else
      log "FAIL: $label ($((SECONDS - cell_started)) s)"
      failed=$((failed + 1))
      if (($(wc -l <"$work/rows") == rows_before)); then
        # The cell ended before its table row: the log above says where.
        printf '%-6s %-4s %-4s %7s %8s %4s %7s %8s %9s %7s %6s %8s  %s\n' "$kind" \
          "$initial_r2t" "$immediate_data" - - - "$mrdsl" - - - - - "FAIL (see log)" >>"$work/rows"
      fi
    fi
  done
done

log ""
log "In effect per cell (from the login the trace saw; iscsi-mpio offers InitialR2T=No"
log "ImmediateData=Yes FirstBurstLength=$offer_first_burst MaxBurstLength=$offer_max_burst"
log "MaxOutstandingR2T=$offer_max_outstanding_r2t). writes: all/above MaxBurstLength;"
log "imm: immediate data bytes; unsol: unsolicited Data-Out PDUs; R2T: R2Ts; DO: solicited Data-Out."
printf '%-6s %-4s %-4s %7s %8s %4s %7s %8s %9s %7s %6s %8s  %s\n' target IR2T Imm FBL MBL \
  MOR2 MRDSL writes imm unsol R2T DO result
cat "$work/rows"
log "$passed passed, $failed failed, $skipped skipped, $((SECONDS - started)) s"
done_ok=1
((failed == 0))
