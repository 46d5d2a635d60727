#!/usr/bin/env bash
# Integration suite: one iSCSI target on loopback, one NBD provider in front of it, and checks of
# the data through NBD and in the target's backing file.
#
#   tests/integration/run-suite.sh TARGET_KIND NBD_PROVIDER
#     TARGET_KIND   tgtd | istgt
#     NBD_PROVIDER  iscsi-mpio   our initiator: $IM_BIN attach CONFIG (config written here)
#                   qemu-nbd     the peer we are compared with: qemu-nbd over libiscsi (iscsi://)
#
# Environment (all optional):
#   BUILD        build directory (default: <repo>/build)
#   IM_BIN       iscsi-mpio binary (default: $BUILD/tools/iscsi-mpio/iscsi-mpio)
#   EXERCISER    nbd_exerciser binary (default: $BUILD/tests/integration/nbd_exerciser)
#   SUITE_SIZE   LUN size (default 512M)      SUITE_OPS   random I/O operations (default 300)
#   SUITE_SEED   exerciser seed (default: random, printed)
#   SUITE_TIMEOUT  seconds before the suite stops itself (default 720, under CTest's 900)
#   KEEP_WORKDIR=1  keep the work directory (logs, configs) after the run
#
# Every case prints "PASS: name" or "FAIL: name"; the last line is "N passed, N failed" and the
# exit status is non-zero when a case failed. Everything started here is stopped by PID on exit.
# Needs root (the targets) and only uses 127.0.0.1.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly repo
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit 2
}

(($# == 2)) || usage
readonly kind=$1 provider=$2
case $kind in tgtd | istgt) ;; *) usage ;; esac
case $provider in iscsi-mpio | qemu-nbd) ;; *) usage ;; esac

readonly build=${BUILD:-$repo/build}
readonly im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
readonly exerciser=${EXERCISER:-$build/tests/integration/nbd_exerciser}
readonly size=${SUITE_SIZE:-512M}
readonly ops=${SUITE_OPS:-300}
seed_args=()
[[ -z ${SUITE_SEED:-} ]] || seed_args=(--seed "$SUITE_SEED")
readonly seed_args
readonly export_name=lun1
# CHAP credentials: 12+ byte secrets (RFC 7143 §12.1.3 recommends it; istgt's sample says 12-16).
readonly chap_user=im-initiator chap_secret=im-initiator-secret1
readonly mutual_user=im-target mutual_secret=im-target-secret22
# Seconds allowed for a refused login or a dead portal to end `attach` (the config says 10).
readonly login_timeout=10 failure_deadline=30
# Seconds to wait for the NBD socket after starting a provider (login, INQUIRY, READ CAPACITY).
readonly attach_wait=60

work=$(mktemp -d /tmp/im-suite.XXXXXX)
readonly work
passed=0
failed=0
case_pid=''
case_name=''
watchdog_pid=''
summary_printed=0

log() { printf '%s\n' "$*"; }

# --- cleanup: by PID, from files, so that cases running in subshells are covered too ---------



# start_target NAME ARGS...: start a $kind target, keep its environment in $work/NAME.env.
start_target() {
  local name=$1
  shift
  touch "$work/$name.env"  # registered before start, filled after
  "$repo/tests/testbed/$kind-target.sh" start --dir "$work/$name" "$@" >"$work/$name.env"
}

stop_target() {
  local env_file=$1
  [[ -s $env_file ]] || return 0
  (
    # shellcheck disable=SC1090
    source "$env_file"
    "$repo/tests/testbed/$kind-target.sh" stop
  ) || true
}

cleanup() {
  local status=$? env_file
  set +e
  [[ -z $watchdog_pid ]] || tb_kill_tree "$watchdog_pid"
  if [[ -n $case_pid ]]; then
    log "stopping the running case"
    tb_kill_tree "$case_pid"
    log "FAIL: $case_name (interrupted)"
    failed=$((failed + 1))
  fi
  tb_stop_recorded "$work/pids"
  for env_file in "$work"/*.env; do
    [[ -e $env_file ]] && stop_target "$env_file"
  done
  tb_end_suite "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# A bound of our own: CTest's timeout would SIGKILL us and leave the targets running.
tb_watchdog "${SUITE_TIMEOUT:-720}" suite

# --- providers -----------------------------------------------------------------------------

# write_config FILE PORTAL SOCKET SECRET [MUTUAL_SECRET]: the YAML `iscsi-mpio attach` reads
# (config/example.yaml documents every key).
write_config() {
  local file=$1 portal=$2 socket=$3 secret=$4 mutual=${5:-}
  {
    echo "target:"
    echo "  iqn: $iqn"
    echo "  lun: $lun"
    echo "  login_timeout: $login_timeout"
    echo "  auth:"
    echo "    method: chap"
    echo "    username: $chap_user"
    echo "    secret: \"$secret\""
    if [[ -n $mutual ]]; then
      echo "    mutual: {username: $mutual_user, secret: \"$mutual\"}"
    fi
    echo "paths:"
    echo "  - {portal: \"$portal\"}"
    echo "nbd:"
    echo "  listen: unix:$socket"
    echo "  export: $export_name"
    echo "control:"
    echo "  socket: ${socket%.sock}.control   # one per attach: the suite runs two at once"
  } >"$file"
}

# provider_start NAME PORT SECRET [MUTUAL_SECRET]: start the provider in the background with
# its export on $work/NAME.sock; sets $spawned (its PID). Output goes to $work/NAME.log.
# $provider_prefix, when set, wraps the command (e.g. in timeout(1)).
provider_prefix=()
provider_start() {
  local name=$1 port=$2 secret=$3 mutual=${4:-}
  local socket=$work/$name.sock
  case $provider in
    qemu-nbd)
      # libiscsi takes CHAP from the URL (user%secret@); qemu has no mutual CHAP option.
      tb_spawn "$work/pids" "$work/$name.log" "${provider_prefix[@]}" qemu-nbd --persistent --shared=4 \
        --format=raw --socket="$socket" --export-name="$export_name" --discard=unmap --cache=none \
        "iscsi://$chap_user%$secret@127.0.0.1:$port/$iqn/$lun"
      ;;
    iscsi-mpio)
      [[ -x $im_bin ]] || { log "iscsi-mpio binary not found: $im_bin"; return 1; }
      write_config "$work/$name.yaml" "127.0.0.1:$port" "$socket" "$secret" "$mutual"
      tb_spawn "$work/pids" "$work/$name.log" "${provider_prefix[@]}" "$im_bin" attach "$work/$name.yaml"
      ;;
  esac
}

uri_for() { echo "nbd+unix:///$export_name?socket=$work/$1.sock"; }

# wait_export NAME PID: until the export answers (bounded by $attach_wait) or PID exits.
wait_export() {
  local name=$1 pid=$2 deadline=$((SECONDS + attach_wait))
  while ((SECONDS < deadline)); do
    if ! tb_running "$pid"; then
      log "provider exited early; its output:"
      sed 's/^/    /' "$work/$name.log" | tail -n 20
      return 1
    fi
    if [[ -S $work/$name.sock ]] && nbdinfo --size "$(uri_for "$name")" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  log "no export on $work/$name.sock after ${attach_wait}s; provider output:"
  sed 's/^/    /' "$work/$name.log" | tail -n 20
  return 1
}

# expect_login_failure NAME PORT SECRET PATTERN: the provider must exit non-zero within
# $failure_deadline seconds, saying something matching PATTERN (extended regex, any case).
expect_login_failure() {
  local name=$1 port=$2 secret=$3 pattern=$4 started=$SECONDS rc=0
  provider_prefix=(timeout --kill-after=5 "$failure_deadline")
  provider_start "$name" "$port" "$secret" || return 1
  wait "$spawned" || rc=$?
  log "exit status $rc after $((SECONDS - started))s; output:"
  sed 's/^/    /' "$work/$name.log" | tail -n 10
  if ((rc == 124 || rc == 137)); then
    log "still running after ${failure_deadline}s"
    return 1
  fi
  ((rc != 0)) || { log "exit status 0 on a failed login"; return 1; }
  grep -qiE "$pattern" "$work/$name.log" || { log "no message matching /$pattern/"; return 1; }
}

# --- cases ---------------------------------------------------------------------------------

case_export_size() {
  local got want
  got=$(nbdinfo --size "$uri")
  want=$(stat -c %s "$backing")
  log "export size $got, backing file $want"
  [[ $got == "$want" ]]
}

case_random_io() {
  "$exerciser" --uri "$uri" --backing "$backing" --ops "$ops" --queue-depth 8 \
    --time-limit 240 "${seed_args[@]}"
}

case_nbdcopy() {
  local image=$work/image.in out=$work/image.out copy_size=$((256 << 20))
  head -c "$copy_size" /dev/urandom >"$image"
  nbdcopy --flush "$image" "$uri"
  nbdcopy "$uri" "$out"
  local sum_in sum_out sum_backing
  sum_in=$(sha256sum <"$image" | cut -d' ' -f1)
  sum_out=$(head -c "$copy_size" "$out" | sha256sum | cut -d' ' -f1)
  sum_backing=$(head -c "$copy_size" "$backing" | sha256sum | cut -d' ' -f1)
  log "sha256 image $sum_in"
  log "sha256 read  $sum_out"
  log "sha256 file  $sum_backing"
  [[ $sum_in == "$sum_out" && $sum_in == "$sum_backing" ]]
  # The whole export as read through NBD must equal the whole backing file.
  cmp "$out" "$backing"
  log "whole export read via NBD equals the backing file ($(stat -c %s "$out") bytes)"
  rm -f "$image" "$out"
}

case_flush_trim_zero() {
  local -a trim_args=()
  # tgtd with thin_provisioning=1 punches holes for UNMAP: trimmed blocks must read as zeros,
  # and its LU reports what FUA, TRIM and WRITE_ZEROES need (DPOFUA, LBPU and LBPWS with
  # LBPME, the VPD 0xB0 limits): the export must advertise all three, or the mapping from the
  # LU's answers to the NBD flags broke. istgt 0.4 does not deallocate, so there "old data or
  # zeros" is all NBD promises, and what it advertises is not pinned.
  [[ $kind != tgtd ]] || trim_args=(--trim-must-zero --require fua,trim,zero)
  "$exerciser" --uri "$uri" --backing "$backing" --ops 0 --check flush,trim,zero \
    "${trim_args[@]}" "${seed_args[@]}"
}

# Block status (NBD base:allocation) of a fresh LU with a few extents written through NBD.
# tgtd's thin LU (thin_provisioning=1) reports LBPME, the LBP VPD page and LBPRZ, and answers
# GET LBA STATUS from the backing file's holes (SEEK_DATA/SEEK_HOLE): the map through NBD must
# equal `qemu-img map` of the backing file, holes reading as zeros. istgt's LU is not thin: the
# whole export is one extent of data, as the NBD spec allows for any server. Either way nbdcopy,
# which skips what the map calls zero, must copy the LU exactly.
case_block_status() {
  local -a thin_args=()
  [[ $kind != tgtd ]] || thin_args=(--thin)
  start_target map --size 64M --chap "$chap_user:$chap_secret" "${thin_args[@]}"
  local port2 backing2 map_uri
  # shellcheck disable=SC1091
  port2=$(source "$work/map.env" && echo "${TGT_PORT:-}${ISTGT_PORT:-}")
  # shellcheck disable=SC1091
  backing2=$(source "$work/map.env" && echo "${TGT_BACKING:-}${ISTGT_BACKING:-}")
  provider_start map "$port2" "$chap_secret"
  wait_export map "$spawned"
  map_uri=$(uri_for map)
  # Three extents of data in a 64 MiB LU: 128 KiB at 192 KiB, 1 MiB at 20 MiB, 4 KiB at the end.
  qemu-io -f raw -c 'write -P 0x5a 192k 128k' -c 'write -P 0xa5 20M 1M' \
    -c 'write -P 0x3c 67104768 4k' -c flush "$map_uri" >/dev/null
  nbdinfo --map --json "$map_uri" >"$work/map.nbd.json"
  sed 's/^/    nbd: /' "$work/map.nbd.json"
  if [[ $kind == tgtd ]]; then
    qemu-img map --output=json -f raw "$backing2" >"$work/map.file.json"
    sed 's/^/    file: /' "$work/map.file.json"
  fi
  python3 - "$kind" "$work/map.nbd.json" "$work/map.file.json" "$(stat -c %s "$backing2")" <<'PY'
import json, sys

kind, nbd_file, qemu_file, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def merged(extents):
    out = []
    for start, length, hole, zero in extents:
        if out and out[-1][2:] == (hole, zero) and out[-1][0] + out[-1][1] == start:
            out[-1] = (out[-1][0], out[-1][1] + length, hole, zero)
        else:
            out.append((start, length, hole, zero))
    return out

# NBD_STATE_HOLE = 1, NBD_STATE_ZERO = 2.
nbd = merged([(e["offset"], e["length"], bool(e["type"] & 1), bool(e["type"] & 2))
              for e in json.load(open(nbd_file))])
if kind == "tgtd":
    want = merged([(e["start"], e["length"], not e["data"], e["zero"])
                   for e in json.load(open(qemu_file))])
    assert sum(1 for e in want if not e[2]) == 3, f"expected three data extents in the file: {want}"
else:
    want = [(0, size, False, False)]
print("    nbd :", nbd)
print("    want:", want)
sys.exit(0 if nbd == want else 1)
PY
  local sum_copy sum_backing
  nbdcopy "$map_uri" "$work/map.out"
  sum_copy=$(sha256sum <"$work/map.out" | cut -d' ' -f1)
  sum_backing=$(sha256sum <"$backing2" | cut -d' ' -f1)
  log "sha256 nbdcopy $sum_copy"
  log "sha256 file    $sum_backing"
  [[ $sum_copy == "$sum_backing" ]]
  rm -f "$work/map.out"
  tb_stop_pid "$spawned"
  stop_target "$work/map.env"
  rm -f "$work/map.env"
}

case_wrong_secret() {
  expect_login_failure wrong-secret "$port" "not-the-right-secret" 'authentication'
}

case_unreachable_portal() {
  local closed_port
  # A loopback port nobody listens on: the connect is refused.
  closed_port=$(tb_free_port '' 127.0.0.1)
  log "portal 127.0.0.1:$closed_port (closed)"
  expect_login_failure unreachable "$closed_port" "$chap_secret" \
    'connect|refused|unreachable|timed? ?out'
}

case_mutual_chap() {
  start_target mutual --size 64M --chap "$chap_user:$chap_secret" \
    --mutual-chap "$mutual_user:$mutual_secret"
  local port2 backing2
  # shellcheck disable=SC1091
  port2=$(source "$work/mutual.env" && echo "${TGT_PORT:-}${ISTGT_PORT:-}")
  # shellcheck disable=SC1091
  backing2=$(source "$work/mutual.env" && echo "${TGT_BACKING:-}${ISTGT_BACKING:-}")
  provider_start mutual "$port2" "$chap_secret" "$mutual_secret"
  wait_export mutual "$spawned"
  "$exerciser" --uri "$(uri_for mutual)" --backing "$backing2" --ops 40 --max-len 1M \
    "${seed_args[@]}"
  tb_stop_pid "$spawned"
  stop_target "$work/mutual.env"
  rm -f "$work/mutual.env"
}

# A LUN the target does not have: a clear error that lists the LUNs it does have (REPORT LUNS).
case_wrong_lun() {
  lun=7  # tb_run_case runs this in a subshell: the suite's $lun is untouched
  expect_login_failure wrong-lun "$port" "$chap_secret" \
    'LUN 7 (does not exist|is not ready).*the target has LUN'
}

# SendTargets discovery lists the target and its portal, as iscsiadm -m discovery does.
case_discover() {
  local out
  out=$(timeout 30 "$im_bin" discover "127.0.0.1:$port" 2>&1)
  printf '%s\n' "$out" | sed 's/^/    /'
  grep -qE "^127\.0\.0\.1:$port,[0-9]+ $iqn\$" <<<"$out"
}

# The command size comes from the built-in target table (mpio/src/target_quirks.cpp), looked up
# with the LU's real INQUIRY strings: tgtd's LU is "IET" / "VIRTUAL-DISK" and gets 120 KiB
# commands; istgt's has no entry and gets one MaxBurstLength.
case_command_size() {
  local want
  case $kind in
    tgtd) want='SCSI commands of at most 120 KiB \(built-in default for tgt\)' ;;
    istgt) want='SCSI commands of at most [0-9]+ KiB \(one MaxBurstLength\)' ;;
  esac
  grep -E 'SCSI commands of at most' "$work/main.log" | sed 's/^/    /'
  grep -qE "$want" "$work/main.log" || { log "no log line matching /$want/"; return 1; }
}

# --- main ----------------------------------------------------------------------------------

log "suite: target $kind, provider $provider, LUN size $size, work dir $work"
for tool in nbdinfo nbdcopy qemu-io qemu-img sha256sum python3 "$kind"; do
  command -v "$tool" >/dev/null || tb_die "missing $tool (run tools/install-deps.sh)"
done
[[ -x $exerciser ]] || tb_die "nbd_exerciser not built: $exerciser"
[[ $provider != qemu-nbd ]] || command -v qemu-nbd >/dev/null || tb_die "missing qemu-nbd"

thin_args=()
[[ $kind != tgtd ]] || thin_args=(--thin)
start_target main --size "$size" --chap "$chap_user:$chap_secret" "${thin_args[@]}"
# shellcheck disable=SC1091
source "$work/main.env"
if [[ $kind == tgtd ]]; then
  port=$TGT_PORT iqn=$TGT_IQN lun=$TGT_LUN backing=$TGT_BACKING
else
  port=$ISTGT_PORT iqn=$ISTGT_IQN lun=$ISTGT_LUN backing=$ISTGT_BACKING
fi
log "target $iqn LUN $lun on 127.0.0.1:$port, backing file $backing"
uri=$(uri_for main)

attached=0
log "--- attach"
if provider_start main "$port" "$chap_secret" && main_pid=$spawned &&
  wait_export main "$main_pid"; then
  attached=1
  log "PASS: attach ($uri)"
  passed=$((passed + 1))
else
  log "FAIL: attach"
  failed=$((failed + 1))
fi

data_cases=(export-size:case_export_size random-io:case_random_io
  nbdcopy-256MiB:case_nbdcopy flush-trim-zero:case_flush_trim_zero)
for entry in "${data_cases[@]}"; do
  if ((attached)); then
    tb_run_case "${entry%%:*}" "${entry#*:}"
  else
    log "FAIL: ${entry%%:*} (no export)"
    failed=$((failed + 1))
  fi
done
# On an LU of its own, so it runs with or without the main export.
tb_run_case block-status case_block_status

# Refused logins. The product must fail fast and say why; for the qemu-nbd peer the same cases
# check the harness itself.
tb_run_case chap-wrong-secret case_wrong_secret
tb_run_case unreachable-portal case_unreachable_portal
if [[ $provider == iscsi-mpio ]]; then
  tb_run_case mutual-chap case_mutual_chap
  tb_run_case wrong-lun case_wrong_lun
  tb_run_case discover case_discover
  if ((attached)); then tb_run_case command-size case_command_size; fi
fi

log "$passed passed, $failed failed"
summary_printed=1
((failed == 0))
